"""The twisted.web layer: a capped request, the ``/gateways/...`` resource, the Site.

Only moves bytes: it turns a twisted.web request into a
:class:`CallbackRequest`, asks the :class:`CallbackHandler`, and writes the
:class:`Reply`.  Bodies beyond the listener's cap are counted but not kept,
so an oversized request costs no memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from sms_gateway.http.callback import CallbackRequest
from sms_gateway.http.config import DEFAULT_MAX_BODY_BYTES
from sms_gateway.http.handler import CallbackHandler, Reply

log = Logger()


class CappedRequest(server.Request):
    """A request that keeps at most ``body_cap`` body octets and counts the rest.

    It does not fill ``request.args`` (the callback parsers read the raw query
    and body themselves, binary-safe), which saves parsing every request twice.
    """

    body_cap = DEFAULT_MAX_BODY_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.body_received = 0

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        """Keep the chunk while under the cap; only count it beyond."""
        room = self.body_cap - self.body_received
        self.body_received += len(data)
        if room > 0:
            super().handleContentChunk(data[:room])  # type: ignore[no-untyped-call]


    def requestReceived(self, command: bytes, path: bytes,  # noqa: N802 (Twisted API)
                        version: bytes) -> None:
        """Twisted's ``requestReceived`` without the query/form parsing into ``args``."""
        assert self.content is not None
        self.content.seek(0, 0)
        self.args = {}
        self.method, self.uri = command, path
        self.clientproto = version
        self.path = path.split(b"?", 1)[0]
        self.process()  # type: ignore[no-untyped-call]


def capped_request_factory(cap: int) -> type[CappedRequest]:
    """A :class:`CappedRequest` subclass with ``body_cap = cap``."""
    return type("CappedRequest", (CappedRequest,), {"body_cap": cap})


class GatewayCallbackResource(Resource):
    """``/gateways/<name>/inbound`` and ``/gateways/<name>/receipt``, any method."""

    isLeaf = True  # noqa: N815 (Twisted API)

    def __init__(self, handler: CallbackHandler) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._handler = handler

    def render(self, request: Any) -> bytes | int:
        """Answer asynchronously once the handler's Deferred fires."""
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        if parts and parts[-1] == "":
            parts.pop()
        if len(parts) != 2:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"unknown gateway or endpoint\n"
        gateway, endpoint = parts
        callback = _to_callback_request(request)
        received = getattr(request, "body_received", len(callback.body))
        cap = self._handler.max_body_bytes(gateway)
        overflow = cap is not None and received > cap
        if overflow and cap is not None:
            callback = CallbackRequest(callback.method, callback.target, callback.headers,
                                       callback.body[:cap], callback.remote)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def write(reply: Reply) -> None:
            if gone:
                return
            request.setResponseCode(reply.status)
            for name, value in reply.headers:
                request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
            request.setHeader(b"content-length", str(len(reply.body)).encode("ascii"))
            request.write(reply.body)
            request.finish()

        def crashed(failure: Failure) -> None:
            log.failure("callback handler failed for {gateway}", failure, gateway=gateway)
            write(Reply(500, b""))

        d = self._handler.handle(gateway, endpoint, callback, body_overflow=overflow)
        d.addCallback(write).addErrback(crashed)
        return server.NOT_DONE_YET


def _to_callback_request(request: Any) -> CallbackRequest:
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        headers[name.decode("latin-1").lower()] = ", ".join(
            v.decode("latin-1") for v in values)
    request.content.seek(0)
    body: bytes = request.content.read()
    address = request.getClientAddress()
    method: str = request.method.decode("ascii", "replace")
    return CallbackRequest(method=method, target=request.uri.decode("latin-1"),
                           headers=headers, body=body, remote=str(getattr(address, "host", "")))


TimeoutPhase = Literal["headers", "body"]
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                     b"Content-Length: 0\r\n\r\n")


class CachingHTTPChannel(http.HTTPChannel):
    """An HTTP/1.1 channel with request deadlines that asks the socket for its addresses once.

    Twisted's own timeout is an *idle* timeout, reset by every byte, so a
    client sending one header byte every few seconds would hold the
    connection for ever.  This channel adds two deadlines, on the Site's
    reactor (the injected clock): the request line and headers must be
    complete within ``header_timeout`` seconds of the connection opening or of
    the request's first byte (for the next request on a kept-alive
    connection), and the body within ``body_timeout`` seconds of the end of
    the headers.  A request past its deadline gets ``408 Request Timeout`` and
    the connection is closed (aborted if the client does not read).  No
    deadline runs while a request is being answered: a slow store is not a
    slow client.
    """

    _peer: Any = None
    _host: Any = None
    _deadline: Any = None
    _abort_call: Any = None

    def getPeer(self) -> Any:  # noqa: N802 (Twisted API)
        """The remote address (cached for the connection)."""
        if self._peer is None:
            self._peer = super().getPeer()  # type: ignore[no-untyped-call]
        return self._peer

    def getHost(self) -> Any:  # noqa: N802 (Twisted API)
        """The local address (cached for the connection)."""
        if self._host is None:
            self._host = super().getHost()  # type: ignore[no-untyped-call]
        return self._host

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        """Start the first request's header deadline."""
        super().connectionMade()  # type: ignore[no-untyped-call]
        self._start_deadline("headers")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        """The first byte of a request (between requests) starts its header deadline."""
        if data and self._deadline is None and not self._handlingRequest:
            self._start_deadline("headers")
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def allHeadersReceived(self) -> None:  # noqa: N802 (Twisted API)
        """Headers complete: the body deadline replaces the header deadline."""
        if self.length == 0:  # no body: allContentReceived follows at once
            self._stop_deadline()
        else:
            self._start_deadline("body")
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def allContentReceived(self) -> None:  # noqa: N802 (Twisted API)
        """The request is complete: no deadline while it is answered."""
        self._stop_deadline()
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Cancel the deadline and any pending abort."""
        self._stop_deadline()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _start_deadline(self, phase: TimeoutPhase) -> None:
        site = getattr(self, "site", None)
        seconds = (getattr(site, "header_timeout", None) if phase == "headers"
                   else getattr(site, "body_timeout", None))
        self._stop_deadline()
        if seconds is None:
            return
        call_later: Any = self.callLater  # the Site's reactor (HTTPFactory.buildProtocol)
        self._deadline = call_later(seconds, self._deadline_passed, phase, seconds)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self, phase: TimeoutPhase, seconds: float) -> None:
        self._deadline = None
        site = getattr(self, "site", None)
        on_timeout = getattr(site, "on_timeout", None)
        if on_timeout is not None:
            on_timeout(phase)
        log.info("closing callback connection from {peer}: {phase} not complete within "
                 "{seconds}s", peer=str(getattr(self.getPeer(), "host", "")), phase=phase,
                 seconds=seconds)
        transport: Any = self.transport
        call_later: Any = self.callLater
        transport.write(_TIMEOUT_RESPONSE)
        # As Twisted's idle timeout does: abort if the client does not read the answer.
        self._abort_call = call_later(self.abortTimeout, transport.abortConnection)
        self.loseConnection()  # type: ignore[no-untyped-call]


class CallbackSite(server.Site):
    """The Site for the callback listener: HTTP/1.1, no access log lines, no tracebacks.

    ``header_timeout`` and ``body_timeout`` are the request deadlines of
    :class:`CachingHTTPChannel` (None: no deadline); ``on_timeout`` is told
    the phase of each request cut off.
    """

    displayTracebacks = False  # noqa: N815 (Twisted API)
    protocol = CachingHTTPChannel  # type: ignore[assignment]
    header_timeout: float | None = None
    body_timeout: float | None = None
    on_timeout: Callable[[TimeoutPhase], None] | None = None

    def log(self, request: Any) -> None:
        """Access logging is off: every callback is counted and stored instead."""


def build_site(handler: CallbackHandler, *, max_body_bytes: int, reactor: Any = None,
               header_timeout_seconds: float | None = None,
               body_timeout_seconds: float | None = None) -> server.Site:
    """The Site serving ``/gateways/...`` with the request body capped at ``max_body_bytes``.

    The request deadlines default to the handler's ``http`` configuration
    (``header_timeout_seconds``, ``body_timeout_seconds``) and run on
    ``reactor`` (the global reactor when None); cut-off requests are counted
    in the handler's metrics (``mepl_http_connection_timeouts_total``).
    """
    root: Any = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"gateways", GatewayCallbackResource(handler))
    kwargs: dict[str, Any] = {"requestFactory": capped_request_factory(max_body_bytes)}
    if reactor is not None:
        kwargs["reactor"] = reactor
    site = CallbackSite(root, **kwargs)  # type: ignore[no-untyped-call]
    config = handler.config
    site.header_timeout = (config.header_timeout_seconds if header_timeout_seconds is None
                            else header_timeout_seconds)
    site.body_timeout = (config.body_timeout_seconds if body_timeout_seconds is None
                         else body_timeout_seconds)
    timeouts = handler.metrics.connection_timeouts
    site.on_timeout = lambda phase: timeouts.labels(phase).inc()
    return site
