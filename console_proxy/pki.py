"""The admin PKI: the deployment's admin CA, server and admin certificates, revocation.

Layout of the PKI directory (mode 0700)::

    ca.pem  ca.key          the admin CA (key 0600, encrypted when a passphrase is given)
    crl.pem                 the certificate revocation list (regenerate before next-update)
    assertion.key / .pub    the proxy's Ed25519 assertion key pair (key 0600)
    index.json              every issued certificate (serial, name, role, revocation)
    issued/                 server, proxy and admin certificates, keys, PKCS#12 bundles

Admin certificates carry ``CN=<name>, OU=<role>, O=<deployment>`` and the
clientAuth extended key usage; server certificates carry the hosts as
subjectAltName and serverAuth.  Every function takes ``now``: the caller owns
the clock.  Nothing here logs or prints a key or a passphrase.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from console_proxy.pkifiles import (
    PkiError,
    ensure_private_dir,
    read_file,
    replace_public,
    write_new_public,
    write_private,
)
from console_proxy.pkiindex import Index, IssuedCert, load_index, save_index

ROLES = ("viewer", "operator", "admin")
CA_CERT, CA_KEY, CRL_FILE = "ca.pem", "ca.key", "crl.pem"
ASSERTION_KEY, ASSERTION_PUB = "assertion.key", "assertion.pub"
ISSUED_DIR = "issued"
DEFAULT_CA_DAYS, DEFAULT_SERVER_DAYS, DEFAULT_ADMIN_DAYS, DEFAULT_CRL_DAYS = 3650, 397, 365, 7
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class Ca:
    """The loaded admin CA."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def deployment(self) -> str:
        """The deployment name (the CA subject's O)."""
        values = self.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(values[0].value) if values else ""


@dataclass(frozen=True)
class Issued:
    """A certificate just issued and the files written for it."""

    entry: IssuedCert
    files: tuple[Path, ...]


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER (the admin's fingerprint)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def check_passphrase(passphrase: bytes, what: str) -> None:
    """Refuse a passphrase shorter than 12 characters or of a single character class."""
    text = passphrase.decode("utf-8", "replace")
    classes = sum(any(test(ch) for ch in text) for test in (
        str.islower, str.isupper, str.isdigit, lambda ch: not ch.isalnum()))
    if len(text) < 12 or classes < 2:
        raise PkiError(f"the {what} passphrase is too weak: use at least 12 characters mixing "
                       "two of lowercase, uppercase, digits, other")


def check_name(name: str) -> str:
    """An admin name usable as CN and in file names, else :class:`PkiError`."""
    if not _NAME.match(name):
        raise PkiError(f"invalid name {name!r}: 1-64 characters of letters, digits, '.', '_', "
                       "'@', '-', starting with a letter or digit")
    return name


def _encryption(passphrase: bytes | None) -> serialization.KeySerializationEncryption:
    if passphrase is None:
        return serialization.NoEncryption()
    return serialization.BestAvailableEncryption(passphrase)


def _key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
             passphrase: bytes | None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             _encryption(passphrase))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def init_ca(directory: Path, *, deployment: str, passphrase: bytes | None, now: datetime,
            days: int = DEFAULT_CA_DAYS, crl_days: int = DEFAULT_CRL_DAYS) -> list[Path]:
    """Create the admin CA, its first (empty) CRL and the assertion key pair in ``directory``.

    An existing CA is never overwritten.  Returns the files written."""
    if passphrase is not None:
        check_passphrase(passphrase, "CA key")
    ensure_private_dir(directory)
    if (directory / CA_KEY).exists() or (directory / CA_CERT).exists():
        raise PkiError(f"{directory} already holds a CA; refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, deployment),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{deployment} admin CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    write_private(directory / CA_KEY, _key_pem(key, passphrase))
    write_new_public(directory / CA_CERT, _cert_pem(cert))
    assertion = ed25519.Ed25519PrivateKey.generate()
    write_private(directory / ASSERTION_KEY, _key_pem(assertion, None))
    write_new_public(directory / ASSERTION_PUB, assertion.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    save_index(directory, Index())
    crl = make_crl(directory, passphrase=passphrase, now=now, days=crl_days)
    return [directory / n for n in (CA_KEY, CA_CERT, ASSERTION_KEY, ASSERTION_PUB)] + [crl]


def ca_key_encrypted(directory: Path) -> bool:
    """Whether the CA key file is encrypted (so a passphrase is needed to use it)."""
    return b"ENCRYPTED" in read_file(directory / CA_KEY, "CA key").split(b"\n", 1)[0]


def load_ca(directory: Path, passphrase: bytes | None) -> Ca:
    """Load the CA certificate and key of ``directory``."""
    cert = x509.load_pem_x509_certificate(read_file(directory / CA_CERT, "CA certificate"))
    data = read_file(directory / CA_KEY, "CA key")
    try:
        key = serialization.load_pem_private_key(
            data, passphrase if b"ENCRYPTED" in data.split(b"\n", 1)[0] else None)
    except (ValueError, TypeError):
        raise PkiError("cannot decrypt the CA key: wrong passphrase?") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{directory / CA_KEY} is not an EC key")
    return Ca(cert, key)


def _leaf(ca: Ca, subject: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime,
          days: int, usages: Sequence[x509.ObjectIdentifier]) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False))


def _record(directory: Path, cert: x509.Certificate, kind: str, name: str,
            role: str | None) -> IssuedCert:
    entry = IssuedCert(serial=f"{cert.serial_number:x}", kind=kind, name=name, role=role,
                       not_after=cert.not_valid_after_utc.isoformat(),
                       fingerprint=fingerprint(cert))
    index = load_index(directory)
    index.certs.append(entry)
    save_index(directory, index)
    return entry


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_server(directory: Path, hosts: Sequence[str], *, ca_passphrase: bytes | None,
                 now: datetime, days: int = DEFAULT_SERVER_DAYS,
                 client_auth: bool = False) -> Issued:
    """Issue the proxy's TLS server certificate for ``hosts`` (DNS names or IP addresses).

    Writes ``issued/server-<first host>.pem`` and ``.key`` (0600, unencrypted: the
    proxy reads it unattended).  ``client_auth`` adds the clientAuth usage, for a
    proxy that presents the same certificate to a remote admin API."""
    if not hosts:
        raise PkiError("give at least one --host")
    ca = load_ca(directory, ca_passphrase)
    stem = check_name(hosts[0].replace(":", "_"))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca.deployment),
                         x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])
    cert = (_leaf(ca, subject, key, now, days, usages)
            .add_extension(x509.SubjectAlternativeName([_host_name(h) for h in hosts]),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    out = directory / ISSUED_DIR
    ensure_private_dir(out)
    files = (out / f"server-{stem}.key", out / f"server-{stem}.pem")
    write_private(files[0], _key_pem(key, None))
    write_new_public(files[1], _cert_pem(cert))
    return Issued(_record(directory, cert, "server", hosts[0], None), files)


PROXY_ROLE = "proxy"
"""The OU of a proxy's client certificate: the only one a remote admin API accepts."""


def issue_proxy(directory: Path, name: str, *, ca_passphrase: bytes | None, now: datetime,
                days: int = DEFAULT_SERVER_DAYS) -> Issued:
    """Issue the proxy's client certificate for a remote admin API.

    Subject ``CN=<name>, OU=proxy, O=<deployment>``, clientAuth only (an admin
    certificate of the same CA, whose OU is a role, is refused by the API).
    Writes ``issued/proxy-<name>.pem`` and ``issued/proxy-<name>.key`` (0600,
    unencrypted: the proxy reads it unattended); an existing one is never
    overwritten."""
    check_name(name)
    out = directory / ISSUED_DIR
    files = (out / f"proxy-{name}.key", out / f"proxy-{name}.pem")
    for path in files:
        if path.exists():
            raise PkiError(f"{path} already exists: move the old certificate away first")
    ca = load_ca(directory, ca_passphrase)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca.deployment),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, PROXY_ROLE),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = _leaf(ca, subject, key, now, days, [ExtendedKeyUsageOID.CLIENT_AUTH]).sign(
        ca.key, hashes.SHA256())
    ensure_private_dir(out)
    write_private(files[0], _key_pem(key, None))
    write_new_public(files[1], _cert_pem(cert))
    return Issued(_record(directory, cert, "proxy", name, PROXY_ROLE), files)


def issue_admin(directory: Path, name: str, role: str, *, ca_passphrase: bytes | None,
                bundle_passphrase: bytes, now: datetime,
                days: int = DEFAULT_ADMIN_DAYS) -> Issued:
    """Issue an admin's client certificate (``CN=name, OU=role, O=deployment``).

    Writes ``issued/<name>.p12`` (PKCS#12: key, certificate and the CA, encrypted
    with ``bundle_passphrase``), ``issued/<name>.pem`` (the certificate) and
    ``issued/<name>.key`` (the key, PKCS#8 encrypted with the same passphrase);
    private files are mode 0600."""
    check_name(name)
    if role not in ROLES:
        raise PkiError(f"invalid role {role!r}: one of {', '.join(ROLES)}")
    check_passphrase(bundle_passphrase, "bundle")
    out = directory / ISSUED_DIR
    files = (out / f"{name}.p12", out / f"{name}.pem", out / f"{name}.key")
    for path in files:
        if path.exists():
            raise PkiError(f"{path} already exists: move the old identity away first")
    ca = load_ca(directory, ca_passphrase)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca.deployment),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = _leaf(ca, subject, key, now, days, [ExtendedKeyUsageOID.CLIENT_AUTH]).sign(
        ca.key, hashes.SHA256())
    bundle = pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), key, cert, [ca.cert],
        serialization.BestAvailableEncryption(bundle_passphrase))
    ensure_private_dir(out)
    write_private(files[0], bundle)
    write_new_public(files[1], _cert_pem(cert))
    write_private(files[2], _key_pem(key, bundle_passphrase))
    return Issued(_record(directory, cert, "admin", name, role), files)


def make_crl(directory: Path, *, passphrase: bytes | None, now: datetime,
             days: int = DEFAULT_CRL_DAYS) -> Path:
    """(Re)generate ``crl.pem`` from the index: every revoked serial, next-update in ``days``.

    The CRL must be regenerated before its next-update: the proxy refuses every
    client once it has expired."""
    ca = load_ca(directory, passphrase)
    index = load_index(directory)
    index.crl_number += 1
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - _BACKDATE).next_update(now + timedelta(days=days))
               .add_extension(x509.CRLNumber(index.crl_number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    for entry in index.revoked():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(entry.serial_number)
            .revocation_date(datetime.fromisoformat(str(entry.revoked_at))).build())
    crl = builder.sign(ca.key, hashes.SHA256())
    replace_public(directory / CRL_FILE, crl.public_bytes(serialization.Encoding.PEM))
    save_index(directory, index)
    return directory / CRL_FILE


def revoke(directory: Path, *, passphrase: bytes | None, now: datetime,
           serial: str | None = None, cert_file: Path | None = None, name: str | None = None,
           crl_days: int = DEFAULT_CRL_DAYS) -> list[IssuedCert]:
    """Revoke by serial (hex), certificate file or name (every certificate of that name),
    then regenerate the CRL.  Returns the revoked entries."""
    index = load_index(directory)
    serials: list[int] = []
    if serial is not None:
        try:
            serials.append(int(serial.lower().removeprefix("0x").replace(":", ""), 16))
        except ValueError:
            raise PkiError(f"invalid serial {serial!r}: hexadecimal expected") from None
    if cert_file is not None:
        cert = x509.load_pem_x509_certificate(read_file(cert_file, "certificate"))
        serials.append(cert.serial_number)
    if name is not None:
        serials.extend(c.serial_number for c in index.by_name(name) if c.revoked_at is None)
        if not index.by_name(name):
            raise PkiError(f"no certificate issued to {name!r} in the index")
    if not serials:
        raise PkiError("give --serial, --cert or --name")
    load_ca(directory, passphrase)  # a wrong passphrase fails before the index changes
    when = now.isoformat()
    entries = [index.mark_revoked(s, when) for s in serials]
    save_index(directory, index)
    make_crl(directory, passphrase=passphrase, now=now, days=crl_days)
    return entries


def list_certs(directory: Path) -> list[IssuedCert]:
    """Every certificate in the index, in issue order."""
    return list(load_index(directory).certs)
