"""A throw-away admin PKI for the proxy and PKI tests."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console_proxy import pki

PASS = b"Correct-horse-42"


def tmpdir(prefix: str = "mepl-pki-") -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    return path


@dataclass
class Pki:
    """A CA directory and helpers to issue into it."""

    dir: Path

    @classmethod
    def create(cls, root: Path, name: str = "acme", now: datetime | None = None) -> Pki:
        directory = root / f"pki-{name}"
        pki.init_ca(directory, deployment=name, passphrase=None,
                    now=now or datetime.now(UTC))
        return cls(directory)

    def admin(self, name: str, role: str, *, now: datetime | None = None,
              days: int = 30) -> tuple[Path, Path]:
        """Issue ``name``; returns (cert PEM, unencrypted key PEM) for a test client."""
        from cryptography.hazmat.primitives import serialization
        issued = pki.issue_admin(self.dir, name, role, ca_passphrase=None,
                                 bundle_passphrase=PASS, now=now or datetime.now(UTC),
                                 days=days)
        key = serialization.load_pem_private_key(issued.files[2].read_bytes(), PASS)
        plain = self.dir / "issued" / f"{name}.plain.key"
        plain.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        return issued.files[1], plain

    def expired_admin(self, name: str, role: str) -> tuple[Path, Path]:
        return self.admin(name, role, now=datetime.now(UTC) - timedelta(days=10), days=2)

    def server(self, host: str = "127.0.0.1") -> tuple[Path, Path]:
        issued = pki.issue_server(self.dir, [host, "localhost"], ca_passphrase=None,
                                  now=datetime.now(UTC))
        return issued.files[1], issued.files[0]

    def revoke(self, name: str) -> None:
        pki.revoke(self.dir, passphrase=None, now=datetime.now(UTC), name=name)

    @property
    def ca(self) -> Path:
        return self.dir / pki.CA_CERT

    @property
    def crl(self) -> Path:
        return self.dir / pki.CRL_FILE


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
