"""An admin's identity from the client certificate: name (CN), role (OU), fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

ADMIN_ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class AdminIdentity:
    """Who is on the other end of a verified TLS connection."""

    name: str
    role: str
    fingerprint: str
    serial: int
    not_after: datetime
    subject: str


def cert_fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _single(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if len(values) == 1 else None


def identity_from_cert(cert: x509.Certificate) -> AdminIdentity | str:
    """The identity, or the reason the certificate does not name an admin and a role."""
    name = _single(cert, NameOID.COMMON_NAME)
    role = _single(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not name:
        return "no_admin_name"
    if role not in ADMIN_ROLES:
        return "bad_role"
    return AdminIdentity(name=name, role=role, fingerprint=cert_fingerprint(cert),
                         serial=cert.serial_number, not_after=cert.not_valid_after_utc,
                         subject=cert.subject.rfc4514_string())
