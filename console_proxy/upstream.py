"""The connection to the admin API: a UNIX socket, or TLS with the proxy's client certificate.

:class:`Upstream` sends one request (the body is already in memory: it was
hashed into the assertion) and returns the response as soon as its headers
arrive; :class:`Relay` then streams the body to the admin as it comes, with
back-pressure (the upstream connection is paused while the admin's TLS
buffer is full) and cancels it when the admin goes away.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.internet import ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer, IResponse
from twisted.web.server import Request
from zope.interface import implementer  # type: ignore[import-untyped]

from console_proxy.config import UpstreamConfig

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection"})


def end_to_end(headers: Headers, drop: frozenset[bytes] = frozenset()) -> list[
        tuple[bytes, list[bytes]]]:
    """The headers minus hop-by-hop ones (and those the Connection header names) and ``drop``."""
    named = {token.strip().lower() for value in headers.getRawHeaders(b"connection", [])
             for token in value.split(b",")}
    skip = HOP_BY_HOP | named | drop
    return [(name, list(values)) for name, values in headers.getAllRawHeaders()
            if name.lower() not in skip]


@implementer(IBodyProducer)
class BytesProducer:
    """A request body already in memory."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # noqa: N802
        """Write it all."""
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        """Nothing to pause."""

    def resumeProducing(self) -> None:  # noqa: N802
        """Nothing to resume."""

    def stopProducing(self) -> None:  # noqa: N802
        """Nothing to stop."""


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, reactor: Any, config: UpstreamConfig) -> None:
        self.reactor = reactor
        self.config = config

    def endpointForURI(self, uri: Any) -> Any:  # noqa: N802
        config = self.config
        if config.socket is not None:
            return UNIXClientEndpoint(self.reactor, str(config.socket),
                                      timeout=config.connect_timeout_s)
        assert config.url and config.ca and config.cert and config.key
        parts = urlsplit(config.url)
        host, port = parts.hostname or "", parts.port or 443
        options = ssl.optionsForClientTLS(
            host, trustRoot=ssl.Certificate.loadPEM(config.ca.read_bytes()),
            clientCertificate=ssl.PrivateCertificate.loadPEM(
                config.key.read_bytes() + config.cert.read_bytes()))
        tcp: Any = HostnameEndpoint(self.reactor, host, port, timeout=config.connect_timeout_s)
        return wrapClientTLS(options, tcp)


class Upstream:
    """Sends requests to the admin API over a pool of persistent connections."""

    def __init__(self, reactor: Any, config: UpstreamConfig) -> None:
        self.reactor = reactor
        self.config = config
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 16
        self.agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor, config),
                                                pool=self.pool)
        if config.url:
            parts = urlsplit(config.url)
            self.base = f"http://{parts.netloc}".encode("ascii")
        else:
            self.base = b"http://mepl-admin"

    def request(self, method: str, target: str, headers: Headers,
                body: bytes) -> Deferred[IResponse]:
        """Send ``method target``; fires with the response once its headers arrived."""
        producer = BytesProducer(body) if body else None
        d: Deferred[IResponse] = self.agent.request(
            method.encode("ascii"), self.base + target.encode("ascii"), headers, producer)
        d.addTimeout(self.config.response_timeout_s, self.reactor)
        return d

    def close(self) -> Deferred[None]:
        """Close the idle pooled connections."""
        result: Deferred[None] = self.pool.closeCachedConnections()
        return result


class _Collect(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.parts: list[bytes] = []
        self.done = done

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.parts.append(data)

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]  # noqa: N802
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


def read_all(response: IResponse) -> Deferred[bytes]:
    """The whole (small) body of ``response``."""
    done: Deferred[bytes] = Deferred()
    deliver: Any = response.deliverBody
    deliver(_Collect(done))
    return done


class Relay(Protocol):
    """Streams an upstream response body to an admin's request, paced by the admin."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.gone = False
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        """Pause the upstream while the admin's connection cannot take more."""
        if not self.gone:
            self.request.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Pass a piece of the body on at once (server-sent events stay live)."""
        if not self.gone:
            self.request.write(data)

    def client_gone(self) -> None:
        """The admin went away: stop reading the upstream (closes that connection)."""
        self.gone = True
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]  # noqa: N802
        """Finish the admin's response; a body cut short cuts the admin's connection too."""
        if not self.gone:
            self.gone = True
            self.request.unregisterProducer()
            if reason.check(ResponseDone, PotentialDataLoss):
                self.request.finish()
            else:
                self.request.loseConnection()
        self.done.callback(None)
