"""The server's key directory (``<state_dir>/keys/``): CA, signing keys, index.

Layout: ``ca.key.pem`` / ``ca.cert.pem`` (unless an external CA was given),
``server-NNNN.key.pem`` / ``server-NNNN.cert.pem`` per signing key, and
``keys.json`` (the index: server id, active key id, every key's public half
and status, trusted server numbers).  Private keys never leave their files
except as :class:`SigningKey` objects; nothing here prints or logs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509

from signing.certs import cert_from_pem, cert_to_pem, issue_signing_cert, make_ca, server_id_of
from signing.errors import KeyFileError
from signing.keyfiles import (
    read_json,
    read_private_key,
    write_json,
    write_private_key,
    write_public,
)
from signing.keys import SigningKey, VerifyKey, check_passphrase
from signing.provisioning import ProvisioningBundle

INDEX_FORMAT: Final = "mepl-keys/1"


@dataclass(frozen=True)
class KeyIndex:
    """The public content of ``keys.json``."""

    server_id: bytes
    active_key_id: int
    keys: tuple[VerifyKey, ...]
    trusted_numbers: tuple[str, ...]
    ca_key_path: Path

    def key(self, key_id: int) -> VerifyKey:
        """The public key ``key_id`` (raises :class:`KeyFileError` when unknown)."""
        for key in self.keys:
            if key.key_id == key_id:
                return key
        raise KeyFileError(f"no server key with id {key_id}")


class ServerKeyStore:
    """Create, rotate and load the deployment's keys in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def index_path(self) -> Path:
        """Path of ``keys.json``."""
        return self.directory / "keys.json"

    def exists(self) -> bool:
        """Whether ``keys.json`` exists."""
        return self.index_path.exists()

    def init(self, *, now: datetime, passphrase: bytes | None,
             trusted_numbers: tuple[str, ...] = (), ca_cert_path: Path | None = None,
             ca_key_path: Path | None = None) -> KeyIndex:
        """Create the CA (unless given) and signing key 1 with its certificate
        (a weak ``passphrase`` is refused before anything is created)."""
        if self.exists():
            raise KeyFileError(f"{self.index_path} exists: keys are already initialised")
        if passphrase:
            check_passphrase(passphrase)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (ca_cert_path is None) != (ca_key_path is None):
            raise KeyFileError("give both the CA certificate and the CA key, or neither")
        if ca_cert_path is not None and ca_key_path is not None:
            ca_cert = cert_from_pem(ca_cert_path.read_text(encoding="ascii"))
            ca_key = read_private_key(ca_key_path, 1, passphrase)
            stored_key_path = ca_key_path.resolve()
        else:
            ca_key = SigningKey.generate(1)
            stored_key_path = self.directory / "ca.key.pem"
            write_private_key(stored_key_path, ca_key, passphrase)
            ca_cert = make_ca(ca_key, "MEPL deployment CA", now)
        write_public(self.directory / "ca.cert.pem", cert_to_pem(ca_cert).encode("ascii"))
        key = self._new_key(1, ca_key, ca_cert, now, passphrase)
        index = KeyIndex(server_id_of(ca_cert), 1, (key,), trusted_numbers, stored_key_path)
        self._save(index)
        return index

    def _new_key(self, key_id: int, ca_key: SigningKey, ca_cert: x509.Certificate,
                 now: datetime, passphrase: bytes | None) -> VerifyKey:
        key = SigningKey.generate(key_id)
        write_private_key(self._key_path(key_id), key, passphrase)
        cert = issue_signing_cert(ca_key, ca_cert, key.public, now)
        write_public(self._cert_path(key_id), cert_to_pem(cert).encode("ascii"))
        return key.public

    def rotate(self, *, now: datetime, passphrase: bytes | None) -> VerifyKey:
        """Create the next signing key and make it active; older keys stay (overlap).
        The new key is encrypted with ``passphrase``, so it must not be weak."""
        if passphrase:
            check_passphrase(passphrase)
        index = self.load()
        ca_key = read_private_key(index.ca_key_path, 1, passphrase)
        next_id = max(k.key_id for k in index.keys) + 1
        key = self._new_key(next_id, ca_key, self.ca_cert(), now, passphrase)
        self._save(KeyIndex(index.server_id, next_id, (*index.keys, key),
                            index.trusted_numbers, index.ca_key_path))
        return key

    def load(self) -> KeyIndex:
        """Read ``keys.json``."""
        data = read_json(self.index_path)
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
            raise KeyFileError(f"{self.index_path} is not a {INDEX_FORMAT} document")
        keys = tuple(VerifyKey.from_raw(int(k["key_id"]), bytes.fromhex(k["public_key"]))
                     for k in data["keys"])
        return KeyIndex(bytes.fromhex(data["server_id"]), int(data["active_key_id"]), keys,
                        tuple(data.get("trusted_numbers", ())), Path(data["ca_key_path"]))

    def signing_key(self, key_id: int | None, passphrase: bytes | None) -> SigningKey:
        """Load private signing key ``key_id`` (the active one when ``None``)."""
        index = self.load()
        wanted = index.active_key_id if key_id is None else key_id
        public = index.key(wanted)
        key = read_private_key(self._key_path(wanted), wanted, passphrase)
        if key.public.raw != public.raw:
            raise KeyFileError(f"key file of key {wanted} does not match keys.json")
        return key

    def ca_cert(self) -> x509.Certificate:
        """The deployment CA certificate."""
        return cert_from_pem((self.directory / "ca.cert.pem").read_text(encoding="ascii"))

    def bundle(self, imei: str) -> ProvisioningBundle:
        """The provisioning bundle for device ``imei`` (every key still listed)."""
        index = self.load()
        certs = {k.key_id: self._cert_path(k.key_id).read_text(encoding="ascii")
                 for k in index.keys}
        return ProvisioningBundle(index.server_id, imei, index.keys, index.trusted_numbers,
                                  cert_to_pem(self.ca_cert()), certs)

    def _save(self, index: KeyIndex) -> None:
        write_json(self.index_path, {
            "format": INDEX_FORMAT,
            "server_id": index.server_id.hex(),
            "active_key_id": index.active_key_id,
            "keys": [{"key_id": k.key_id, "public_key": k.raw.hex(),
                      "status": "active" if k.key_id == index.active_key_id else "previous"}
                     for k in index.keys],
            "trusted_numbers": list(index.trusted_numbers),
            "ca_key_path": str(index.ca_key_path),
        }, mode=0o644)

    def _key_path(self, key_id: int) -> Path:
        return self.directory / f"server-{key_id:04d}.key.pem"

    def _cert_path(self, key_id: int) -> Path:
        return self.directory / f"server-{key_id:04d}.cert.pem"
