"""The proxy's decision and forwarding for one admin request.

In order: the certificate still valid (a CRL reloaded since the handshake, an
expiry), a well-formed target, the admin's rate limit, the role the
operation needs (from the API's OpenAPI document), then the request is
forwarded with a signed assertion and the answer streamed back.  A refusal is
answered only after ``POST /v1/proxy/audit`` confirmed it (else 503
``audit_unavailable``); nothing is forwarded for a refused request.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from console_proxy.apiclient import ApiClient, Refusal
from console_proxy.assertion import HEADER, AssertionSigner, Subject
from console_proxy.errors import STATUS, error_body
from console_proxy.identity import AdminIdentity
from console_proxy.policy import Policy, allows
from console_proxy.ratelimit import RateLimiter
from console_proxy.tlsfront import TlsFront
from console_proxy.upstream import Relay, Upstream, end_to_end

log = Logger(namespace="console_proxy.proxy")

_DROP = frozenset({b"host", b"content-length", HEADER.lower().encode(), b"x-request-id"})
_HINTS = {
    "rate_limited": "slow down and retry after the Retry-After seconds",
    "forbidden": "ask an administrator with the required role",
    "not_found": "see GET /v1/openapi.json for the operations",
    "unauthenticated": "your certificate is no longer valid: ask for a new one",
    "audit_unavailable": "the refusal could not be audited; retry later",
    "upstream_unavailable": "the admin API is not reachable; retry later or check mepl run",
    "invalid_request": "send an origin-form target such as /v1/devices",
    "internal": "retry; if it persists, report the request id",
}


def source_of(request: Request) -> str:
    """``ip:port`` of the admin as the proxy saw it (``[v6]:port`` for IPv6)."""
    peer = request.getClientAddress()
    host, port = getattr(peer, "host", "?"), getattr(peer, "port", 0)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bad_target(target: str) -> bool:
    """Not an origin-form target, or one with empty, ``.`` or ``..`` segments."""
    path = target.split("?", 1)[0]
    if not path.startswith("/") or "\\" in path or "#" in target:
        return True
    return any(seg in ("", ".", "..") for seg in path[1:].split("/"))


class Proxy:
    """Checks and forwards admin requests."""

    def __init__(self, *, tls: TlsFront, limiter: RateLimiter, api: ApiClient,
                 upstream: Upstream, signer: AssertionSigner,
                 seconds: Callable[[], float]) -> None:
        self.tls = tls
        self.policy: Policy | None = None
        self.limiter = limiter
        self.api = api
        self.upstream = upstream
        self.signer = signer
        self.seconds = seconds

    async def handle(self, request: Request, identity: AdminIdentity) -> None:
        """Answer ``request`` from ``identity`` (never raises)."""
        rid = uuid.uuid4().hex
        try:
            await self._handle(request, identity, rid)
        except Exception:
            log.failure("request {request_id} failed", Failure(), request_id=rid)
            _answer(request, "internal", "the proxy failed on this request", rid)

    async def _handle(self, request: Request, identity: AdminIdentity, rid: str) -> None:
        method = (request.method or b"").decode("ascii", "replace")
        target = (request.uri or b"").decode("ascii", "replace")
        path, source = target.split("?", 1)[0], source_of(request)
        refusal = Refusal(event="", reason="", source=source, subject=identity.subject,
                          fingerprint=identity.fingerprint, method=method, path=path)

        async def refuse(event: str, reason: str, code: str, message: str) -> None:
            log.warn("refused {method} {path} from {admin} ({role}): {reason}",
                     method=method, path=path, admin=identity.name, role=identity.role,
                     fingerprint=identity.fingerprint, source=source, reason=reason,
                     refusal=event, request_id=rid)
            recorded = await self.api.record_refusal(
                replace(refusal, event=event, reason=reason))
            if not recorded:
                _answer(request, "audit_unavailable", "the refusal could not be audited, so "
                        "the request is refused without an answer", rid)
            else:
                _answer(request, code, message, rid, close=(code == "unauthenticated"),
                        retry_after=self.limiter.retry_after(identity.fingerprint)
                        if code == "rate_limited" else None)

        why = self.tls.still_valid(identity, datetime.fromtimestamp(self.seconds(), UTC))
        if why is not None:
            return await refuse("tls_refused", why, "unauthenticated",
                                f"your certificate is {why}")
        if bad_target(target):
            return _answer(request, "invalid_request", f"invalid request target {target!r}",
                           rid, field="path")
        if not self.limiter.allow(identity.fingerprint):
            return await refuse("rate_limited", "rate limit", "rate_limited",
                                "too many requests from your certificate")
        if self.policy is None:
            return _answer(request, "upstream_unavailable",
                           "the proxy has not yet read the API's operations", rid)
        body = request.content.read() if request.content is not None else b""
        operation = self.policy.find(method, path)
        if operation is None:
            return await refuse("role_refused", "unknown operation", "not_found",
                                f"no operation {method} {path}")
        need = operation.role_for(body)
        if not allows(identity.role, need):
            return await refuse("role_refused", f"requires {need}", "forbidden",
                                f"{method} {operation.template} needs the {need} role; your "
                                f"certificate has {identity.role}")
        await self._forward(request, identity, method, target, body, rid)

    async def _forward(self, request: Request, identity: AdminIdentity, method: str,
                       target: str, body: bytes, rid: str) -> None:
        signed = self.signer.sign(Subject(identity.name, identity.role, identity.fingerprint),
                                  method, target, body, source_of(request), rid)
        headers = Headers(dict(end_to_end(request.requestHeaders, _DROP)))
        headers.setRawHeaders(HEADER, [signed.header])
        headers.setRawHeaders("X-Request-Id", [rid])
        pending = self.upstream.request(method, target, headers, body)
        relay = Relay(request)

        def client_gone(_: Failure) -> None:
            if relay.transport is not None:
                relay.client_gone()
            else:
                relay.gone = True
                pending.cancel()

        request.notifyFinish().addErrback(client_gone)
        try:
            response = await pending
        except CancelledError:
            if relay.gone:
                return
            _answer(request, "upstream_unavailable", "the admin API did not answer in time", rid)
            return
        except Exception as exc:
            log.error("upstream failed for {request_id}: {error}", request_id=rid,
                      error=f"{exc.__class__.__name__}: {exc}")
            _answer(request, "upstream_unavailable", "the admin API is not reachable", rid)
            return
        if relay.gone:
            return
        request.setResponseCode(response.code, response.phrase)
        for name, values in end_to_end(response.headers):
            request.responseHeaders.setRawHeaders(name, values)
        request.responseHeaders.setRawHeaders(b"x-request-id", [rid.encode()])
        deliver: Any = response.deliverBody
        deliver(relay)
        await relay.done


def _answer(request: Request, code: str, message: str, rid: str, *, field: str | None = None,
            close: bool = False, retry_after: float | None = None) -> None:
    """Answer with the contract's error body (unless the admin already went away)."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    body = error_body(code, message, _HINTS[code], field)
    request.setResponseCode(STATUS[code])
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", str(len(body)).encode())
    request.setHeader(b"x-request-id", rid.encode())
    if retry_after is not None:
        request.setHeader(b"retry-after", str(max(1, math.ceil(retry_after))).encode())
    if close:
        request.setHeader(b"connection", b"close")
    request.write(body)
    request.finish()
