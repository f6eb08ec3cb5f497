"""File I/O of the PKI directory: modes, exclusive creation, atomic replacement.

Private material (keys, PKCS#12 bundles) is created with ``O_CREAT | O_EXCL``
and mode 0600 (never chmod after writing, never overwritten); public files
(certificates, the CRL, the index) are replaced atomically (write a temporary
file in the same directory, then ``os.replace``) so a reader such as the proxy
never sees half a file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class PkiError(Exception):
    """A PKI operation that cannot proceed; the message says what to do."""


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700 (or tighten an existing one to 0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; an existing file is an error."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PkiError(f"{path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_new_public(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0644) and write ``data``; an existing file is an error."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise PkiError(f"{path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def replace_public(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` (mode 0644) with ``data``."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_file(path: Path, what: str) -> bytes:
    """Read ``path``; a missing or unreadable file is a :class:`PkiError` naming ``what``."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read the {what} {path}: {exc.strerror}") from None
