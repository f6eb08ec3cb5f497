"""The twisted.web layer: a capped request, the ``/gateways/...`` resource, the Site.

Only moves bytes: it turns a twisted.web request into a
:class:`CallbackRequest`, asks the :class:`CallbackHandler`, and writes the
:class:`Reply`.  Bodies beyond the listener's cap are counted but not kept,
so an oversized request costs no memory.
"""

from __future__ import annotations

from typing import Any

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


class CachingHTTPChannel(http.HTTPChannel):
    """An HTTP/1.1 channel that asks the socket for its addresses once, not per request."""

    _peer: Any = None
    _host: Any = None

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


class CallbackSite(server.Site):
    """The Site for the callback listener: HTTP/1.1, no access log lines, no tracebacks."""

    displayTracebacks = False  # noqa: N815 (Twisted API)
    protocol = CachingHTTPChannel  # type: ignore[assignment]

    def log(self, request: Any) -> None:
        """Access logging is off: every callback is counted and stored instead."""


def build_site(handler: CallbackHandler, *, max_body_bytes: int,
               reactor: Any = None) -> server.Site:
    """The Site serving ``/gateways/...`` with the request body capped at ``max_body_bytes``."""
    root: Any = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"gateways", GatewayCallbackResource(handler))
    kwargs: dict[str, Any] = {"requestFactory": capped_request_factory(max_body_bytes)}
    if reactor is not None:
        kwargs["reactor"] = reactor
    site: server.Site = CallbackSite(root, **kwargs)  # type: ignore[no-untyped-call]
    return site
