"""The admin's identity: a client certificate and its key, from PKCS#12 or PEM files.

The proxy maps the certificate to an admin: the name is the subject's CN, the
role its OU (``viewer``, ``operator`` or ``admin``).  :class:`Identity` shows
both, with the fingerprint (lowercase hex SHA-256 of the DER) and the
validity period, so a console can say who it is before it connects.

Python's :mod:`ssl` loads a client key from files only.  A key that is not
already a PEM file of its own (a PKCS#12 bundle, or a key decrypted in
memory) is handed over without ever being written in clear: it is written
*encrypted* under a random one-time password, in a private directory (mode
0700) that is removed right after :meth:`ssl.SSLContext.load_cert_chain`
has read it.  The passphrase is never logged or kept.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from console_proxy.client.errors import (
    CertificateExpired,
    ConsoleError,
    IdentityProblem,
    WrongPassphrase,
)

ClientKey = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
             | ed448.Ed448PrivateKey)
"""The private key types TLS client authentication can use."""

ROLES = ("viewer", "operator", "admin")
"""The admin roles, lowest first; the proxy takes the role from the certificate's OU."""

_NEW_IDENTITY_HINT = ("ask the deployment's administrator for a new identity "
                      "(mepl pki issue-admin --name NAME --role ROLE)")


def _secret(passphrase: str | bytes | None) -> bytes | None:
    if passphrase is None:
        return None
    return passphrase.encode() if isinstance(passphrase, str) else passphrase


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityProblem(f"cannot read the {what} {path}: {exc.strerror or exc}",
                              "check the path given with --identity, --cert or --key "
                              "(or in the configuration)") from None


@dataclass(frozen=True)
class Identity:
    """An admin's client certificate, its private key and any CA certificates bundled with it.

    Build one with :meth:`from_pkcs12` or :meth:`from_pem`; the key is not
    shown in ``repr``.
    """

    certificate: x509.Certificate
    private_key: ClientKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()
    source: str = ""

    @classmethod
    def from_pkcs12(cls, path: str | os.PathLike[str],
                    passphrase: str | bytes | None) -> Identity:
        """Open the PKCS#12 bundle at ``path`` with ``passphrase``.

        Raises :class:`WrongPassphrase` when the passphrase does not open it
        (or the file is not PKCS#12), :class:`IdentityProblem` when it cannot
        be read or holds no certificate and key.
        """
        file = Path(path)
        data = _read(file, "identity")
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, _secret(passphrase))
        except (ValueError, TypeError):
            raise WrongPassphrase(
                f"cannot open the identity {file}: wrong passphrase, or not a PKCS#12 file",
                "check the passphrase (prompted, --passphrase-file or "
                "MDM_CONSOLE_PASSPHRASE); give a PEM certificate and key with --cert/--key "
                "instead of --identity") from None
        if cert is None or key is None:
            raise IdentityProblem(f"the identity {file} holds no certificate and key",
                                  _NEW_IDENTITY_HINT)
        return cls._checked(cert, key, tuple(extra), str(file))

    @classmethod
    def from_pem(cls, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
                 passphrase: str | bytes | None = None) -> Identity:
        """Load a PEM certificate (optionally followed by its chain) and its PEM key.

        ``passphrase`` opens an encrypted key.  Raises :class:`WrongPassphrase`
        when it is wrong or missing for an encrypted key, and
        :class:`IdentityProblem` for unreadable files.
        """
        cert_file, key_file = Path(cert_path), Path(key_path)
        try:
            certs = x509.load_pem_x509_certificates(_read(cert_file, "certificate"))
        except ValueError:
            raise IdentityProblem(f"{cert_file} holds no PEM certificate",
                                  "give the certificate file with --cert") from None
        try:
            key = serialization.load_pem_private_key(_read(key_file, "key"),
                                                     _secret(passphrase))
        except TypeError:
            raise WrongPassphrase(
                f"the key {key_file} is encrypted and no passphrase was given"
                if passphrase is None else f"the key {key_file} is not encrypted, but a "
                "passphrase was given",
                "give the passphrase with --passphrase-file or MDM_CONSOLE_PASSPHRASE, or "
                "run in a terminal to be asked") from None
        except ValueError:
            raise WrongPassphrase(f"cannot open the key {key_file}: wrong passphrase, or "
                                  "not a PEM private key",
                                  "check the passphrase and the file given with --key") from None
        return cls._checked(certs[0], key, tuple(certs[1:]), str(cert_file))

    @classmethod
    def _checked(cls, cert: x509.Certificate, key: object,
                 chain: tuple[x509.Certificate, ...], source: str) -> Identity:
        if not isinstance(key, ClientKey):
            raise IdentityProblem(f"the key of {source} cannot be used for TLS "
                                  f"({type(key).__name__})", _NEW_IDENTITY_HINT)
        public = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        own = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        if public != own:
            raise IdentityProblem(f"the key does not belong to the certificate of {source}",
                                  "give the key that was issued with this certificate")
        return cls(cert, key, chain, source)

    def _attribute(self, oid: x509.ObjectIdentifier) -> str:
        values = self.certificate.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else ""

    @property
    def name(self) -> str:
        """The admin's name: the certificate subject's CN."""
        return self._attribute(NameOID.COMMON_NAME)

    @property
    def role(self) -> str:
        """The role the certificate claims: its subject's OU (the proxy decides)."""
        return self._attribute(NameOID.ORGANIZATIONAL_UNIT_NAME)

    @property
    def organisation(self) -> str:
        """The deployment's name: the subject's O."""
        return self._attribute(NameOID.ORGANIZATION_NAME)

    @property
    def fingerprint(self) -> str:
        """Lowercase hex SHA-256 of the certificate's DER (as the proxy and the audit show)."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()

    @property
    def not_before(self) -> datetime:
        """Start of the validity period (timezone-aware UTC)."""
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        """End of the validity period (timezone-aware UTC)."""
        return self.certificate.not_valid_after_utc

    def check_valid(self, now: datetime) -> None:
        """Raise :class:`CertificateExpired` if ``now`` (aware) is outside the validity period."""
        if now > self.not_after:
            raise CertificateExpired(
                f"your certificate ({self.name}, {self.role}) expired on "
                f"{self.not_after:%Y-%m-%d %H:%M} UTC: the proxy will refuse it",
                _NEW_IDENTITY_HINT)
        if now < self.not_before:
            raise CertificateExpired(
                f"your certificate ({self.name}) is not valid before "
                f"{self.not_before:%Y-%m-%d %H:%M} UTC: check this computer's clock",
                "set the clock right, or wait until the certificate becomes valid")

    def load_into(self, context: ssl.SSLContext) -> None:
        """Make ``context`` present this identity (see the module docstring for how)."""
        token = secrets.token_urlsafe(32).encode()
        pem_key = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(token))
        pem_certs = b"".join(c.public_bytes(serialization.Encoding.PEM)
                             for c in (self.certificate, *self.chain))
        private_dir = tempfile.mkdtemp(prefix="mdm-console-")  # mode 0700
        try:
            cert_file = os.path.join(private_dir, "cert.pem")
            key_file = os.path.join(private_dir, "key.pem")
            for name, data in ((cert_file, pem_certs), (key_file, pem_key)):
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
            context.load_cert_chain(cert_file, key_file, password=token)
        finally:
            shutil.rmtree(private_dir, ignore_errors=True)


def client_context(identity: Identity, ca_file: str | os.PathLike[str] | None = None, *,
                   ca_pem: str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context presenting ``identity`` and trusting the proxy's CA.

    ``ca_file`` (or ``ca_pem``, the CA certificates as PEM text) is the CA
    that signed the proxy's server certificate; with neither, the system's
    trust store is used.  The proxy's host name is checked.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if ca_file is not None:
            context.load_verify_locations(cafile=os.fspath(ca_file))
        elif ca_pem is not None:
            context.load_verify_locations(cadata=ca_pem)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise ConsoleError(f"cannot load the proxy's CA {ca_file or '(PEM text)'}: {exc}",
                           "give the deployment's CA certificate (PEM) with --ca") from None
    identity.load_into(context)
    return context
