"""The proxy's TLS server side: mutual TLS against the admin CA and its CRL.

:class:`TlsFront` builds a pyOpenSSL context (TLS 1.2 minimum, 1.3 preferred,
no session resumption, a client certificate required and verified with
``CRL_CHECK`` during the handshake) and hands a connection of the *current*
context to every new TLS connection; :meth:`TlsFront.reload` swaps in a new
context built from the files, so a new CRL or CA applies from the next
handshake without a restart.  A broken file keeps the previous context.

Every connection has :class:`HandshakeNotes` (:meth:`TlsFront.notes_for`):
what the verify callback saw (subject, fingerprint, the first failure) so
that a refused handshake can be audited with whatever the proxy learnt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer  # type: ignore[import-untyped]

from console_proxy.identity import AdminIdentity, cert_fingerprint, identity_from_cert

_VERIFY_REASONS = {
    3: "crl_missing",            # X509_V_ERR_UNABLE_TO_GET_CRL
    9: "not_yet_valid",          # X509_V_ERR_CERT_NOT_YET_VALID
    10: "expired",               # X509_V_ERR_CERT_HAS_EXPIRED
    12: "crl_expired",           # X509_V_ERR_CRL_HAS_EXPIRED
    18: "unknown_ca",            # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "unknown_ca",            # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: "unknown_ca",            # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "unknown_ca",            # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    23: "revoked",               # X509_V_ERR_CERT_REVOKED
    26: "wrong_usage",           # X509_V_ERR_INVALID_PURPOSE
}
_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class TlsFiles:
    """The files the TLS front is built from (watched for changes)."""

    server_cert: Path
    server_key: Path
    client_ca: Path
    crl: Path

    def paths(self) -> tuple[Path, ...]:
        """All of them."""
        return (self.server_cert, self.server_key, self.client_ca, self.crl)


@dataclass
class HandshakeNotes:
    """What the verify callback saw on one connection."""

    subject: str | None = None
    fingerprint: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class TlsState:
    """One loaded generation of the TLS files."""

    context: SSL.Context
    revoked: frozenset[int]
    crl_next_update: datetime | None
    ca_subject: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class TlsLoadError(Exception):
    """The TLS files cannot be used; the message names the file."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsLoadError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _verify(notes: HandshakeNotes | None, cert: crypto.X509, errno: int, depth: int,
            ok: int) -> bool:
    if notes is None:
        return bool(ok)
    if depth == 0:
        leaf = cert.to_cryptography()
        notes.subject = leaf.subject.rfc4514_string()
        notes.fingerprint = cert_fingerprint(leaf)
    if not ok:
        notes.reason = notes.reason or _VERIFY_REASONS.get(errno, f"verify_error_{errno}")
        return False
    if depth == 0:
        found = identity_from_cert(cert.to_cryptography())
        if isinstance(found, str):
            notes.reason = notes.reason or found
            return False
    return True


def load_state(files: TlsFiles, verify: Callable[..., bool]) -> TlsState:
    """Build a server context from ``files`` (raises :class:`TlsLoadError`)."""
    try:
        cert = x509.load_pem_x509_certificate(_read(files.server_cert, "server certificate"))
        key = load_pem_private_key(_read(files.server_key, "server key"), None)
        ca = x509.load_pem_x509_certificate(_read(files.client_ca, "admin CA"))
        crl = x509.load_pem_x509_crl(_read(files.crl, "CRL"))
    except (ValueError, TypeError) as exc:
        raise TlsLoadError(f"a TLS file is not valid PEM: {exc}") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise TlsLoadError(f"the CRL {files.crl} is not signed by the admin CA {files.client_ca}")
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                    | getattr(SSL, "OP_NO_RENEGOTIATION", 0))
    ctx.set_cipher_list(_CIPHERS)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_session_id(b"mepl-console-proxy")
    try:
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)  # type: ignore[arg-type]
        ctx.check_privatekey()
    except SSL.Error:
        raise TlsLoadError(f"the server key {files.server_key} does not match "
                           f"{files.server_cert}") from None
    store = ctx.get_cert_store()
    assert store is not None
    store.add_cert(crypto.X509.from_cryptography(ca))
    store.add_crl(crl)
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
    ctx.add_client_ca(ca)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE,
                   verify)
    return TlsState(context=ctx, revoked=frozenset(r.serial_number for r in crl),
                    crl_next_update=crl.next_update_utc, ca_subject=ca.subject.rfc4514_string())


@implementer(IOpenSSLServerConnectionCreator)
class TlsFront:
    """Hands out server connections of the current TLS state; reloadable."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._notes: WeakKeyDictionary[SSL.Connection, HandshakeNotes] = WeakKeyDictionary()
        self.state = load_state(files, self._verify)

    def reload(self) -> None:
        """Rebuild from the files; on error the previous state stays (and the error is raised)."""
        self.state = load_state(self.files, self._verify)

    def _verify(self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int,
                ok: int) -> bool:
        return _verify(self._notes.get(conn), cert, errno, depth, ok)

    def notes_for(self, connection: SSL.Connection | None) -> HandshakeNotes | None:
        """What the verify callback saw on ``connection``."""
        return None if connection is None else self._notes.get(connection)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802, N803
        """A connection of the current context, with fresh :class:`HandshakeNotes`."""
        connection = SSL.Connection(self.state.context, None)
        self._notes[connection] = HandshakeNotes()
        return connection

    def still_valid(self, identity: AdminIdentity, now: datetime) -> str | None:
        """Why an identity verified earlier is no longer valid (revoked since, expired), or None."""
        if identity.serial in self.state.revoked:
            return "revoked"
        if now >= identity.not_after:
            return "expired"
        return None
