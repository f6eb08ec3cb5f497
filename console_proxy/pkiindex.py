"""The index of issued certificates (``index.json`` in the PKI directory).

One entry per certificate the CA issued: serial (lowercase hex), kind
(``admin`` or ``server``), name (admin name or first host), role (admins
only), not_after, fingerprint (SHA-256 of the DER, lowercase hex) and
revoked_at (ISO 8601 or null).  It also keeps the CRL number, so every CRL
carries a larger one than the last.  ``revoke --name`` and ``list`` read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from console_proxy.pkifiles import PkiError, replace_public

INDEX_FILE = "index.json"


@dataclass(frozen=True)
class IssuedCert:
    """One certificate the CA issued."""

    serial: str
    kind: str
    name: str
    role: str | None
    not_after: str
    fingerprint: str
    revoked_at: str | None = None

    @property
    def serial_number(self) -> int:
        """The serial as an integer."""
        return int(self.serial, 16)


@dataclass
class Index:
    """The issued certificates and the last CRL number."""

    certs: list[IssuedCert] = field(default_factory=list)
    crl_number: int = 0

    def find_serial(self, serial: int) -> IssuedCert | None:
        """The entry with this serial, if any."""
        return next((c for c in self.certs if c.serial_number == serial), None)

    def by_name(self, name: str) -> list[IssuedCert]:
        """The entries issued to ``name`` (every kind)."""
        return [c for c in self.certs if c.name == name]

    def mark_revoked(self, serial: int, when: str) -> IssuedCert:
        """Set ``revoked_at`` on the entry with ``serial`` (kept if already revoked)."""
        for i, cert in enumerate(self.certs):
            if cert.serial_number == serial:
                if cert.revoked_at is None:
                    self.certs[i] = replace(cert, revoked_at=when)
                return self.certs[i]
        raise PkiError(f"no certificate with serial {serial:x} in the index")

    def revoked(self) -> list[IssuedCert]:
        """The revoked entries, oldest revocation first."""
        return sorted((c for c in self.certs if c.revoked_at), key=lambda c: str(c.revoked_at))


def load_index(directory: Path) -> Index:
    """Read the index of ``directory`` (an empty one if the file does not exist yet)."""
    path = directory / INDEX_FILE
    if not path.exists():
        return Index()
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        certs = [IssuedCert(**entry) for entry in raw.get("certs", [])]
        return Index(certs=certs, crl_number=int(raw.get("crl_number", 0)))
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"the index {path} is unreadable ({exc}); restore it from a backup"
                       ) from None


def save_index(directory: Path, index: Index) -> None:
    """Atomically write the index of ``directory``."""
    body = {"certs": [asdict(c) for c in index.certs], "crl_number": index.crl_number}
    replace_public(directory / INDEX_FILE,
                   (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8"))
