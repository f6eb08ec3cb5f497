"""The server's signing identity as the MEPL uses it: load keys once, seal frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mepl.runtime.outbound_txn import ClaimedCommand
from signing.commands import Command
from signing.frames import seal_command
from signing.keyfiles import passphrase_from
from signing.keys import SigningKey, VerifyKey
from signing.keystore import ServerKeyStore


@dataclass(frozen=True)
class ServerSigner:
    """The active server signing key and the server identity the frames are bound to."""

    server_id: bytes
    key: SigningKey
    keys: tuple[VerifyKey, ...]

    @property
    def key_id(self) -> int:
        """The id of the key new frames are sealed under."""
        return self.key.key_id

    @classmethod
    def load(cls, key_dir: Path, environ: dict[str, str],
             passphrase_file: Path | None = None) -> ServerSigner:
        """Load the active key from ``key_dir`` (``mepl keys init`` made it)."""
        store = ServerKeyStore(key_dir)
        index = store.load()
        passphrase = passphrase_from(environ, passphrase_file)
        return cls(index.server_id, store.signing_key(None, passphrase), index.keys)

    def seal(self, claimed: ClaimedCommand) -> bytes:
        """Seal a claimed command (raises ValueError if its arguments do not encode)."""
        args = json.dumps(dict(claimed.arguments), sort_keys=True, separators=(",", ":"))
        return seal_command(_command(claimed.opcode, args), key=self.key, server_id=self.server_id,
                            imei=claimed.imei, counter=claimed.counter,
                            not_after=claimed.not_after)


@lru_cache(maxsize=4096)
def _command(opcode: str, args_json: str) -> Command:
    """The checked command for ``opcode`` and its JSON arguments, built once: a fan-out
    to a whole group seals the same command for every device."""
    return Command.from_json({"opcode": opcode, "args": json.loads(args_json)})
