"""Key-file I/O: the only module of :mod:`signing` (with :mod:`signing.keystore`) that
touches the file system.

Private keys are written with ``os.open(..., O_CREAT | O_EXCL, 0o600)`` (never
chmod after writing, never overwritten) as PKCS#8 PEM, encrypted when a
passphrase is given (which must pass :func:`signing.keys.check_passphrase`).
A private key file readable by group or others is refused unless it is
encrypted.

Warnings (``twisted.logger``, namespace ``signing.keyfiles``, level warn,
fields ``path`` and ``kdf``): a private key written or read unencrypted, and
an encrypted one read whose key derivation is weaker than new files get
(the 2,048-iteration files of earlier releases), with how to re-encrypt it.
The command line prints them on stderr.  No key or passphrase is ever logged.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from signing import pkcs8
from signing.errors import KeyFileError
from signing.keys import SigningKey, is_encrypted_pem, load_private_pem

PASSPHRASE_ENV = "MEPL_KEY_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)

log = Logger(namespace="signing.keyfiles")

_UNENCRYPTED = ("private key {path} is stored unencrypted (protected only by its 0600 file "
                "mode): set MEPL_KEY_PASSPHRASE or a passphrase file so keys are encrypted")
_WEAK_KDF = ("private key {path} is encrypted with a weak key derivation ({kdf}): re-encrypt "
             "it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter "
             "600000` (docs/operator-guide.md, Keys)")


def passphrase_from(environ: Mapping[str, str], path: Path | None = None) -> bytes | None:
    """The key passphrase: the first line of ``path`` if given, else ``$MEPL_KEY_PASSPHRASE``."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise KeyFileError(f"cannot read passphrase file {path}: {exc.strerror}") from None
        if not text or not text[0]:
            raise KeyFileError(f"passphrase file {path} is empty")
        return text[0].encode("utf-8")
    value = environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; an existing file is an error."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_private_key(path: Path, key: SigningKey, passphrase: bytes | None) -> None:
    """Write ``key`` as PKCS#8 PEM (encrypted when ``passphrase``) to a new 0600 file.

    A weak passphrase raises :class:`KeyFileError` before anything is written;
    an unencrypted key is written with a warning."""
    write_private(path, key.to_pem(passphrase))
    if not passphrase:
        log.warn(_UNENCRYPTED, path=str(path))


def read_private_key(path: Path, key_id: int, passphrase: bytes | None) -> SigningKey:
    """Load a private key, refusing an unencrypted file readable by group or others."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    encrypted = is_encrypted_pem(data)
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not encrypted:
        raise KeyFileError(f"{path} is readable by group or others and not encrypted "
                           "(chmod 600 it, or encrypt it)")
    key = load_private_pem(key_id, data, passphrase)
    if not encrypted:
        log.warn(_UNENCRYPTED, path=str(path))
    else:
        kdf = pkcs8.kdf_of(data)
        if kdf.weak:
            log.warn(_WEAK_KDF, path=str(path), kdf=kdf.describe())
    return key


def write_public(path: Path, data: bytes) -> None:
    """Write public material (certificates, public keys), replacing atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    """Write JSON atomically through a temporary file created with ``mode``."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file (raises :class:`KeyFileError` if missing or invalid)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
