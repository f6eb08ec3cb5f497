"""X.509 for the deployment: a self-signed Ed25519 CA that certifies server signing keys.

The server identity that every signature covers is :func:`server_id_of`:
SHA-256 of the CA certificate's SubjectPublicKeyInfo (DER), so a bundle's CA
and the frames it verifies are tied together.  No file I/O here.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from signing.errors import BundleError
from signing.keys import SigningKey, VerifyKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MEPL deployment"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def make_ca(ca_key: SigningKey, common_name: str, now: datetime,
            days: int = 3650) -> x509.Certificate:
    """A self-signed CA certificate for ``ca_key`` (path length 0)."""
    public = ca_key.private_key.public_key()
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(ca_key.private_key, None)


def issue_signing_cert(ca_key: SigningKey, ca_cert: x509.Certificate, key: VerifyKey,
                       now: datetime, days: int = 730) -> x509.Certificate:
    """A certificate for server signing key ``key``, issued by the CA."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"MEPL command signing key {key.key_id}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                       critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.private_key.public_key()), critical=False)
    )
    return builder.sign(ca_key.private_key, None)


def server_id_of(ca_cert: x509.Certificate) -> bytes:
    """SHA-256 of the CA's SubjectPublicKeyInfo DER: the server identity in signatures."""
    spki = ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def cert_to_pem(cert: x509.Certificate) -> str:
    """PEM text of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def cert_from_pem(text: str) -> x509.Certificate:
    """Parse a PEM certificate (raises :class:`BundleError`)."""
    try:
        return x509.load_pem_x509_certificate(text.encode("ascii"))
    except ValueError:
        raise BundleError("not a PEM certificate") from None


def verify_signing_cert(ca_cert: x509.Certificate, cert: x509.Certificate,
                        key: VerifyKey, now: datetime | None = None) -> None:
    """Check that ``cert`` is issued by ``ca_cert`` and certifies ``key``."""
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, Ed25519PublicKey):
        raise BundleError("the CA key is not Ed25519")
    if cert.issuer != ca_cert.subject:
        raise BundleError(f"certificate of key {key.key_id} is not issued by the CA")
    try:
        ca_public.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature:
        raise BundleError(f"certificate of key {key.key_id} has a bad CA signature") from None
    public = cert.public_key()
    if not isinstance(public, Ed25519PublicKey) or public.public_bytes_raw() != key.raw:
        raise BundleError(f"certificate of key {key.key_id} is for another key")
    if now is not None and not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise BundleError(f"certificate of key {key.key_id} is not valid now")
