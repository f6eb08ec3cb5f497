"""The callback endpoint's logic, independent of twisted.web.

:meth:`CallbackHandler.handle` takes a :class:`CallbackRequest` for
``/gateways/<name>/<endpoint>`` and returns a Deferred :class:`Reply`:

1. unknown gateway or endpoint: 404; method the format does not use: 405;
2. source outside the allow-list: 403; a source locked out after too many
   failed authentications (:mod:`sms_gateway.http.ratelimit`): 429 with
   ``Retry-After``, credentials not checked; bad or missing credentials: 401;
3. oversized body: 413 (stored as malformed, truncated, when the credentials
   do not cover the body and are good);
4. unparseable: stored as ``malformed`` with the error, then 400; so is input
   that makes a parser raise RecursionError or UnicodeError (:data:`INPUT_ERRORS`).
   A parser bug, rather than bad input, is stored the same way and answered
   500 so the gateway tries again later;
5. parsed: stored (``mo``/``dlr``), and only once the store's Deferred fires
   is the success reply given; a store failure answers 503 so the gateway
   retries.  A duplicate (same gateway, kind and external id) is acknowledged
   the same way but not handed on.  Otherwise the event goes to
   ``on_inbound``/``on_receipt`` *after* the reply is decided: the reply does
   not wait for processing (the stored row is the record to resume from).

Kannel sends any reply body back to the phone as an SMS, so every Kannel
reply has an empty body; Jasmin's success body is exactly ``ACK/Jasmin``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from sms_gateway.addresses import mask_msisdn
from sms_gateway.events import DeliveryReceipt, InboundMessage
from sms_gateway.http import jasmin, jsonformat, kannel
from sms_gateway.http.auth import (
    AuthFailure,
    GatewayAuth,
    redact_form,
    redact_target,
    relevant_headers,
)
from sms_gateway.http.callback import (
    CallbackKind,
    CallbackRequest,
    CallbackStore,
    Endpoint,
    MalformedCallbackError,
    ParsedCallback,
    RawCallback,
    StoredCallback,
    request_from_wire,
)
from sms_gateway.http.config import HttpConfig, HttpGatewayConfig
from sms_gateway.http.fields import FORM_TYPE
from sms_gateway.http.metrics import HttpMetrics
from sms_gateway.http.ratelimit import AuthFailureLimiter

log = Logger()

Parser = Callable[..., ParsedCallback]
OnInbound = Callable[[InboundMessage, StoredCallback], Any]
OnReceipt = Callable[[DeliveryReceipt, StoredCallback], Any]

PARSERS: dict[tuple[str, str], Parser] = {
    ("kannel", "inbound"): kannel.parse_inbound,
    ("kannel", "receipt"): kannel.parse_receipt,
    ("jasmin", "inbound"): jasmin.parse_inbound,
    ("jasmin", "receipt"): jasmin.parse_receipt,
    ("json", "inbound"): jsonformat.parse_inbound,
    ("json", "receipt"): jsonformat.parse_receipt,
}
# The endpoints whose parser reads a POST body as a form: its secret fields are redacted too.
FORM_BODIES = frozenset({("jasmin", "inbound"), ("jasmin", "receipt"), ("kannel", "receipt")})
METHODS: dict[str, tuple[str, ...]] = {
    "kannel": ("GET", "POST"),
    "jasmin": ("GET", "POST"),
    "json": ("POST",),
}


class Clock(Protocol):
    """The part of ``IReactorTime`` the handler uses (a reactor or ``task.Clock``)."""

    def seconds(self) -> float:
        """The current time, in seconds since the epoch."""
        ...


_KINDS: dict[str, CallbackKind] = {"inbound": "mo", "receipt": "dlr"}
# Exceptions that only bad input raises while parsing (a string nested too deeply for
# the JSON decoder, bytes no codec takes): answered 400 like MalformedCallbackError
# even when a parser lets one escape.  Anything else is a bug: 500.
INPUT_ERRORS = (RecursionError, UnicodeError)
MAX_ERROR_CHARS = 500


def storable_error(error: str) -> str:
    """``error`` as PostgreSQL text takes it: no NUL, no unpaired surrogate, bounded."""
    if not error.isascii() or "\0" in error:
        error = error.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS - 3] + "..."
    return error


@dataclass(frozen=True)
class Reply:
    """The HTTP answer to a callback."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


class CallbackHandler:
    """Authenticate, parse, store, acknowledge, then hand on: one callback at a time."""

    def __init__(self, config: HttpConfig, store: CallbackStore, *, clock: Clock,
                 metrics: HttpMetrics, on_inbound: OnInbound | None = None,
                 on_receipt: OnReceipt | None = None) -> None:
        self._config = config
        self._gateways = dict(config.gateways)
        self._auth = {name: GatewayAuth(gw) for name, gw in self._gateways.items()}
        self._limiter = AuthFailureLimiter(
            per_source=config.auth_failures_per_source,
            per_gateway=config.auth_failures_per_gateway,
            window_seconds=config.auth_failure_window_seconds,
            lockout_seconds=config.auth_lockout_seconds)
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._on_inbound = on_inbound
        self._on_receipt = on_receipt

    @property
    def config(self) -> HttpConfig:
        """The ``[http]`` configuration this handler serves."""
        return self._config

    @property
    def metrics(self) -> HttpMetrics:
        """The counters this handler updates (the listener adds its own to them)."""
        return self._metrics

    def max_body_bytes(self, gateway: str) -> int | None:
        """The body cap of ``gateway``, or None when it is not configured."""
        gw = self._gateways.get(gateway)
        return gw.max_body_bytes if gw else None

    def handle(self, gateway: str, endpoint: str, request: CallbackRequest, *,
               body_overflow: bool = False) -> Deferred[Reply]:
        """Answer one callback (see the module docstring for the order of checks)."""
        gw = self._gateways.get(gateway)
        if gw is None or endpoint not in _KINDS:
            self._metrics.outcome("" if gw is None else gateway, "", "not_found")
            return succeed(Reply(404, b"" if gw and gw.format == "kannel"
                                 else b"unknown gateway or endpoint\n"))
        ep: Endpoint = "inbound" if endpoint == "inbound" else "receipt"
        if request.method not in METHODS[gw.format]:
            self._metrics.outcome(gateway, ep, "method_not_allowed")
            allow = ", ".join(METHODS[gw.format])
            return succeed(self._error(gw, 405, f"method not allowed (use {allow})",
                                       (("Allow", allow),)))
        auth = self._auth[gateway]
        now = self._clock.seconds()
        failure = auth.check_source(request.remote)
        if failure is None:
            wait = self._limiter.retry_after(gateway, request.remote, now)
            if wait is not None:
                return succeed(self._rate_limited(gw, ep, wait))
            if not (body_overflow and auth.needs_body):
                failure = auth.check(request, now)
                if failure is None:
                    self._limiter.record_success(gateway, request.remote)
        if failure is not None:
            return succeed(self._refuse(gw, ep, request, failure))
        if body_overflow:
            error = f"body exceeds max_body_bytes ({gw.max_body_bytes})"
            if auth.needs_body:
                self._metrics.outcome(gateway, ep, "too_large")
                return succeed(self._error(gw, 413, error))
            return self._store_malformed(gw, ep, request, now, error, 413, "too_large")
        when = datetime.fromtimestamp(now, UTC)
        try:
            parsed = PARSERS[(gw.format, ep)](request, link=gw.name, region=gw.default_region,
                                              now=when)
        except MalformedCallbackError as exc:
            return self._store_malformed(gw, ep, request, now, str(exc), 400, "malformed")
        except INPUT_ERRORS as exc:  # bad input that a parser failed to name: still a 400
            return self._store_malformed(
                gw, ep, request, now, f"unparseable input ({type(exc).__name__}): {exc}", 400,
                "malformed")
        except Exception as exc:  # a parser bug: keep the request, let the gateway retry
            log.failure("parsing a {endpoint} callback from {gateway} failed", endpoint=ep,
                        gateway=gateway)
            return self._store_malformed(gw, ep, request, now,
                                         f"parser failed: {type(exc).__name__}: {exc}", 500,
                                         "parser_error")
        raw = self._raw(gw, ep, _KINDS[ep], request, when, parsed.external_id, None)
        d: Deferred[StoredCallback] = maybeDeferred(self._store.store, raw)
        return d.addCallbacks(self._stored, self._store_failed,
                              callbackArgs=(gw, ep, parsed), errbackArgs=(gw, ep))

    def reparse(self, gateway: str, kind: str, wire: bytes,
                received_at: datetime) -> InboundMessage | DeliveryReceipt:
        """Parse a stored callback again (``kind`` ``mo`` or ``dlr``), for recovery after a
        restart; raises :class:`MalformedCallbackError` (or KeyError for a gateway no
        longer configured)."""
        gw = self._gateways[gateway]
        ep: Endpoint = "inbound" if kind == "mo" else "receipt"
        request = request_from_wire(wire)
        parsed = PARSERS[(gw.format, ep)](request, link=gw.name, region=gw.default_region,
                                          now=received_at)
        return parsed.event

    def _stored(self, stored: StoredCallback, gw: HttpGatewayConfig, ep: str,
                parsed: ParsedCallback) -> Reply:
        event = parsed.event
        if stored.duplicate:
            self._metrics.outcome(gw.name, ep, "duplicate")
            log.info("duplicate {endpoint} callback from {gateway} ({external_id}) acknowledged",
                     endpoint=ep, gateway=gw.name, external_id=parsed.external_id)
        else:
            self._metrics.outcome(gw.name, ep, "stored")
            self._hand_on(gw, event, stored)
        return self._success(gw, stored)

    def _hand_on(self, gw: HttpGatewayConfig,
                 event: InboundMessage | DeliveryReceipt, stored: StoredCallback) -> None:
        if isinstance(event, InboundMessage):
            if self._on_inbound is None:
                return
            d = maybeDeferred(self._on_inbound, event, stored)
            who = mask_msisdn(event.sender)
        else:
            if self._on_receipt is None:
                return
            d = maybeDeferred(self._on_receipt, event, stored)
            who = event.message_id

        def failed(failure: Failure) -> None:
            self._metrics.processing_failures.labels(gw.name).inc()
            log.failure("processing stored callback {row} from {gateway} ({who}) failed",
                        failure, row=stored.message_id, gateway=gw.name, who=who)

        d.addErrback(failed)

    def _store_failed(self, failure: Failure, gw: HttpGatewayConfig, ep: str) -> Reply:
        self._metrics.outcome(gw.name, ep, "store_unavailable")
        log.warn("callback store unavailable for {gateway}: {error}; answered 503",
                 gateway=gw.name, error=failure.getErrorMessage())
        return self._error(gw, 503, "store unavailable, retry later", (("Retry-After", "5"),))

    def _store_malformed(self, gw: HttpGatewayConfig, ep: Endpoint, request: CallbackRequest,
                         now: float, error: str, status: int, outcome: str) -> Deferred[Reply]:
        error = storable_error(error)
        raw = self._raw(gw, ep, "malformed", request, datetime.fromtimestamp(now, UTC), None,
                        error)
        log.warn("malformed {endpoint} callback from {gateway}: {error}", endpoint=ep,
                 gateway=gw.name, error=error)

        def stored(_: StoredCallback) -> Reply:
            self._metrics.outcome(gw.name, ep, outcome)
            return self._error(gw, status, error)

        d: Deferred[StoredCallback] = maybeDeferred(self._store.store, raw)
        return d.addCallbacks(stored, self._store_failed, errbackArgs=(gw, ep))

    def _refuse(self, gw: HttpGatewayConfig, ep: str, request: CallbackRequest,
                failure: AuthFailure) -> Reply:
        self._metrics.outcome(gw.name, ep, "forbidden" if failure.status == 403
                              else "unauthorized")
        self._metrics.auth_failures.labels(gw.name, failure.reason).inc()
        log.warn("callback to {gateway}/{endpoint} from {remote} refused: {reason}",
                 gateway=gw.name, endpoint=ep, remote=request.remote, reason=failure.reason)
        if failure.status == 401:
            self._count_failure(gw, request.remote)
        headers: tuple[tuple[str, str], ...] = ()
        if failure.status == 401 and gw.auth == "basic":
            headers = (("WWW-Authenticate", 'Basic realm="mepl"'),)
        return self._error(gw, failure.status, failure.message, headers)

    def _count_failure(self, gw: HttpGatewayConfig, remote: str) -> None:
        event = self._limiter.record_failure(gw.name, remote, self._clock.seconds())
        config = self._config
        if event == "source":
            log.warn("{remote} locked out of {gateway} for {lockout}s after {count} failed "
                     "authentications in {window}s", remote=remote, gateway=gw.name,
                     lockout=config.auth_lockout_seconds, count=config.auth_failures_per_source,
                     window=config.auth_failure_window_seconds)
        elif event == "gateway":
            log.warn("{gateway}: {count} failed authentications in {window}s; sources with a "
                     "recent failure are refused for {lockout}s", gateway=gw.name,
                     count=config.auth_failures_per_gateway,
                     window=config.auth_failure_window_seconds,
                     lockout=config.auth_lockout_seconds)

    def _rate_limited(self, gw: HttpGatewayConfig, ep: str, wait: float) -> Reply:
        # Not logged per request (the lockout was logged once); counted instead.
        self._metrics.outcome(gw.name, ep, "rate_limited")
        self._metrics.auth_failures.labels(gw.name, "rate_limited").inc()
        return self._error(gw, 429, "too many failed authentications, retry later",
                           (("Retry-After", str(max(1, math.ceil(wait)))),))

    @staticmethod
    def _raw(gw: HttpGatewayConfig, ep: Endpoint, kind: CallbackKind, request: CallbackRequest,
             when: datetime, external_id: str | None, error: str | None) -> RawCallback:
        body = request.body
        if (body and request.method == "POST" and (gw.format, ep) in FORM_BODIES
                and request.content_type in (FORM_TYPE, "")):
            body = redact_form(body)
        return RawCallback(
            gateway=gw.name, kind=kind, endpoint=ep, method=request.method,
            target=redact_target(request.target), headers=relevant_headers(request.headers),
            body=body, remote=request.remote, received_at=when,
            external_id=external_id, error=error)

    @staticmethod
    def _success(gw: HttpGatewayConfig, stored: StoredCallback) -> Reply:
        if gw.format == "kannel":
            return Reply(200, b"", (("Content-Type", "text/plain"),))
        if gw.format == "jasmin":
            return Reply(200, jasmin.ACK_BODY, (("Content-Type", "text/plain"),))
        body = json.dumps({"status": "duplicate" if stored.duplicate else "stored",
                           "message_id": stored.message_id}).encode("ascii")
        return Reply(200, body, (("Content-Type", "application/json"),))

    @staticmethod
    def _error(gw: HttpGatewayConfig, status: int, message: str,
               headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        if gw.format == "kannel":
            return Reply(status, b"", (("Content-Type", "text/plain"), *headers))
        body = (message + "\n").encode("utf-8", "replace")
        return Reply(status, body, (("Content-Type", "text/plain; charset=utf-8"), *headers))
