"""The HTTP side of the proxy's listener: channel, request and site.

:class:`ProxyChannel` learns the admin's identity when the TLS handshake
completes and reports a handshake that failed (no certificate, expired,
revoked, foreign CA...) with what the verify callback saw: the request was
never read.  :class:`ProxyRequest` enforces the body size limit while the
body arrives (413 and the connection closed).  :class:`ProxySite` keeps the
live connections so that a reload can drop those whose certificate is no
longer valid.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer  # type: ignore[import-untyped]

from console_proxy.apiclient import Refusal
from console_proxy.errors import error_body
from console_proxy.identity import AdminIdentity, identity_from_cert
from console_proxy.proxy import Proxy
from console_proxy.tlsfront import HandshakeNotes

log = Logger(namespace="console_proxy.front")


def _peer(transport: Any) -> str:
    peer = transport.getPeer()
    host, port = getattr(peer, "host", "?"), getattr(peer, "port", 0)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_reason(notes: HandshakeNotes, reason: Failure) -> str | None:
    if notes.reason is not None:
        return notes.reason
    if not reason.check(SSL.Error):
        return None  # the client hung up or never spoke TLS: nothing was refused
    text = str(reason.value).lower()
    if "did not return a certificate" in text or "certificate required" in text:
        return "no_certificate"
    return "handshake_failed"


@implementer(IHandshakeListener)
class ProxyChannel(HTTPChannel):
    """An admin's connection: identity from the verified certificate."""

    site: ProxySite
    identity: AdminIdentity | None = None
    handshake_done = False

    def handshakeCompleted(self) -> None:  # noqa: N802
        """Map the verified certificate to the admin."""
        self.handshake_done = True
        transport: Any = self.transport
        cert = transport.getPeerCertificate()
        found = identity_from_cert(cert.to_cryptography()) if cert is not None else "none"
        if isinstance(found, str):  # the verify callback refuses these; belt and braces
            transport.abortConnection()
            return
        self.identity = found
        self.site.live.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]  # noqa: N802
        """Report a refused handshake; forget the connection."""
        self.site.live.discard(self)
        if not self.handshake_done:
            self.site.handshake_failed(self.transport, reason)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class ProxyRequest(Request):
    """A request whose body may not exceed the site's limit."""

    channel: ProxyChannel
    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:  # noqa: N802
        """Refuse an announced body over the limit before reading it."""
        super().gotLength(length)  # type: ignore[no-untyped-call]
        if length is not None and length > self.channel.site.max_body:
            self._too_large()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        """Count the body; refuse it once it passes the limit."""
        self._received += len(data)
        if self._refused or self._received > self.channel.site.max_body:
            self._too_large()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def process(self) -> None:
        """Render, unless the body was refused."""
        if not self._refused:
            super().process()  # type: ignore[no-untyped-call]

    def _too_large(self) -> None:
        if self._refused:
            return
        self._refused = True
        limit = self.channel.site.max_body
        body = error_body("payload_too_large", f"the request body exceeds {limit} bytes",
                          "send a smaller body", "body")
        head = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        transport: Any = self.channel.transport
        transport.write(head + body)
        transport.loseConnection()


class _Forward(Resource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, proxy: Proxy) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.proxy = proxy

    def render(self, request: Any) -> Any:
        identity = request.channel.identity
        if identity is None:
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        Deferred.fromCoroutine(self.proxy.handle(request, identity))
        return NOT_DONE_YET


class ProxySite(Site):
    """The proxy's HTTP site behind the TLS front."""

    protocol = ProxyChannel  # type: ignore[assignment]
    requestFactory = ProxyRequest  # noqa: N815 (Twisted's name)
    displayTracebacks = False  # noqa: N815 (Twisted's name)

    def __init__(self, proxy: Proxy, *, max_body: int, reactor: Any,
                 on_tls_refused: Callable[[Refusal], object] | None = None) -> None:
        super().__init__(_Forward(proxy), reactor=reactor)  # type: ignore[no-untyped-call]
        self.proxy = proxy
        self.max_body = max_body
        self.live: set[ProxyChannel] = set()
        self.tls_refusals: list[Deferred[bool]] = []
        self.noisy = False

    def log(self, request: Any) -> None:
        """No access log lines: the audit and the refusal lines say who did what."""

    def handshake_failed(self, transport: Any, failure: Failure) -> None:
        """Log and audit (best effort) a handshake the TLS front refused."""
        notes = self.proxy.tls.notes_for(transport.getHandle())
        if notes is None:
            return
        reason = _tls_reason(notes, failure)
        if reason is None:
            return
        refusal = Refusal(event="tls_refused", reason=reason, source=_peer(transport),
                          subject=notes.subject, fingerprint=notes.fingerprint)
        log.warn("TLS handshake refused from {source}: {reason}", source=refusal.source,
                 reason=reason, subject=notes.subject, fingerprint=notes.fingerprint)
        d = Deferred.fromCoroutine(self.proxy.api.record_refusal(refusal))
        self.tls_refusals.append(d)

        def settled(result: bool) -> bool:
            self.tls_refusals.remove(d)
            return result

        d.addCallback(settled)

    def drop_invalid(self, seconds: float) -> int:
        """Close the connections whose certificate is now revoked or expired."""
        now = datetime.fromtimestamp(seconds, UTC)
        dropped = 0
        for channel in list(self.live):
            identity = channel.identity
            if identity is None:
                continue
            why = self.proxy.tls.still_valid(identity, now)
            if why is not None:
                log.warn("closing {admin}'s connection: certificate {reason}",
                         admin=identity.name, fingerprint=identity.fingerprint, reason=why)
                transport: Any = channel.transport
                transport.abortConnection()
                dropped += 1
        return dropped
