"""The server's signing identity as the MEPL uses it: every key it needs, by id, and sealing.

Each command is sealed with the key its device has accepted (the key id the
claim gives, from ``device_server_keys``), not simply the newest one.  Keys are
loaded on first use and kept.  A key id the signer has not loaded (a
``mepl keys rotate`` run while ``mepl run`` runs) makes it read the key
store's index again and load that key with the passphrase it was started
with, so a running process picks up a rotation without a restart.  The
active key id (the dispatcher's default for devices never pinned) follows
the store's index too.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

from twisted.logger import Logger

from mepl.runtime.outbound_txn import ClaimedCommand
from signing.commands import Command
from signing.errors import SigningError
from signing.frames import seal_command
from signing.keyfiles import passphrase_from
from signing.keys import SigningKey, VerifyKey
from signing.keystore import KeyIndex, ServerKeyStore

log = Logger()

IndexStamp = tuple[int, int, int] | None


class ServerKeyUnavailable(ValueError):  # noqa: N818 - reads as what it reports
    """A command is sealed for a server key this process cannot load.

    It is a :class:`ValueError`, so the claim fails that one command with the
    reason and goes on with the others.
    """


class ServerSigner:
    """The server identity the frames are bound to and the signing keys loaded so far.

    Built by :meth:`load` from a key directory (the store is then followed
    while running), or directly from one key (tests; nothing else is loaded).
    """

    def __init__(self, server_id: bytes, key: SigningKey, keys: tuple[VerifyKey, ...] = (),
                 *, store: ServerKeyStore | None = None,
                 passphrase: bytes | None = None) -> None:
        self.server_id = server_id
        self.keys = keys or (key.public,)
        self._store = store
        self._passphrase = passphrase
        self._loaded: dict[int, SigningKey] = {key.key_id: key}
        self._active = key.key_id
        self._stamp: IndexStamp = _stamp_of(store)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, key_dir: Path, environ: dict[str, str],
             passphrase_file: Path | None = None) -> ServerSigner:
        """Load the active key from ``key_dir`` (``mepl keys init`` made it) and keep
        the passphrase for keys added to the store later."""
        store = ServerKeyStore(key_dir)
        passphrase = passphrase_from(environ, passphrase_file)
        stamp = _stamp_of(store)  # before reading: a rotation meanwhile is seen later
        index = store.load()
        key = store.signing_key(index.active_key_id, passphrase)
        signer = cls(index.server_id, key, index.keys, store=store, passphrase=passphrase)
        signer._stamp = stamp
        return signer

    @property
    def key_id(self) -> int:
        """The store's active key id: the key for devices that have none on record."""
        with self._lock:
            if _stamp_of(self._store) != self._stamp:
                self._reload()
            return self._active

    @property
    def key(self) -> SigningKey:
        """The active signing key (loaded if needed)."""
        return self.signing_key(self.key_id)

    def signing_key(self, key_id: int) -> SigningKey:
        """Signing key ``key_id``; one not loaded yet is loaded from the store (whose
        index is read again first).  Raises :class:`ServerKeyUnavailable`."""
        with self._lock:
            key = self._loaded.get(key_id)
            if key is not None:
                return key
            if self._store is None:
                raise ServerKeyUnavailable(f"server key {key_id} is not loaded")
            index = self._reload()
            if index is None or all(k.key_id != key_id for k in index.keys):
                raise ServerKeyUnavailable(
                    f"server key {key_id} is not in {self._store.index_path}")
            try:
                key = self._store.signing_key(key_id, self._passphrase)
            except (SigningError, OSError) as exc:
                log.error("cannot load server key {key_id}: {error}", key_id=key_id,
                          error=str(exc))
                raise ServerKeyUnavailable(f"server key {key_id} cannot be loaded: {exc}") \
                    from None
            self._loaded[key_id] = key
            log.info("server key {key_id} loaded from {directory}", key_id=key_id,
                     directory=str(self._store.directory))
            return key

    def seal(self, claimed: ClaimedCommand) -> bytes:
        """Seal a claimed command under its ``key_id`` (raises ValueError if its
        arguments do not encode or that key is unavailable)."""
        key = self.signing_key(claimed.key_id)
        args = json.dumps(dict(claimed.arguments), sort_keys=True, separators=(",", ":"))
        return seal_command(_command(claimed.opcode, args), key=key, server_id=self.server_id,
                            imei=claimed.imei, counter=claimed.counter,
                            not_after=claimed.not_after)

    def _reload(self) -> KeyIndex | None:
        """Read the index again (the lock is held); keep what we had if it cannot be read."""
        assert self._store is not None
        stamp = _stamp_of(self._store)
        try:
            index = self._store.load()
        except (SigningError, OSError, KeyError, ValueError) as exc:
            log.warn("cannot read the server key index {path}: {error}",
                     path=str(self._store.index_path), error=str(exc))
            return None
        if index.server_id != self.server_id:
            log.error("the key store {path} now holds another server identity; "
                      "keeping the one this process started with",
                      path=str(self._store.index_path))
            return None
        if index.active_key_id != self._active:
            log.info("server key {key_id} is now active", key_id=index.active_key_id)
        self._stamp = stamp
        self._active = index.active_key_id
        self.keys = index.keys
        return index


def _stamp_of(store: ServerKeyStore | None) -> IndexStamp:
    """What tells a changed ``keys.json`` (it is replaced atomically on every change)."""
    if store is None:
        return None
    try:
        st = store.index_path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@lru_cache(maxsize=4096)
def _command(opcode: str, args_json: str) -> Command:
    """The checked command for ``opcode`` and its JSON arguments, built once: a fan-out
    to a whole group seals the same command for every device."""
    return Command.from_json({"opcode": opcode, "args": json.loads(args_json)})
