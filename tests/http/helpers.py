"""Shared fixtures for the HTTP gateway tests: a real listener on 127.0.0.1:0 and a client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from sms_gateway.events import DeliveryReceipt, InboundMessage
from sms_gateway.http import (
    CallbackHandler,
    CallbackStore,
    HttpConfig,
    HttpGatewayConfig,
    HttpMetrics,
    StoredCallback,
    build_site,
)
from sms_gateway.http.send import _BytesProducer, read_body

TOKEN = "kannel-token-0123456789"
JASMIN_USER = "jasmin"
JASMIN_PASSWORD = "jasmin-password-xyz"
HMAC_SECRET = "json-hmac-secret-0123456789abcdef"


def gateways(**overrides: Any) -> dict[str, HttpGatewayConfig]:
    """Three gateways, one per format, with test credentials (``name={field: value}`` overrides)."""
    base: dict[str, dict[str, Any]] = {
        "kannel1": {"format": "kannel", "auth": "token", "secret": TOKEN,
                    "default_region": "GB"},
        "jasmin1": {"format": "jasmin", "auth": "basic", "username": JASMIN_USER,
                    "password": JASMIN_PASSWORD, "default_region": "GB"},
        "json1": {"format": "json", "auth": "hmac", "secret": HMAC_SECRET,
                  "replay_window_seconds": 300},
    }
    return {name: HttpGatewayConfig(name=name, **{**fields, **overrides.get(name, {})})
            for name, fields in base.items()}


@dataclass
class Seen:
    """Events handed on to processing."""

    inbound: list[tuple[InboundMessage, StoredCallback]] = field(default_factory=list)
    receipts: list[tuple[DeliveryReceipt, StoredCallback]] = field(default_factory=list)


class Listener:
    """The callback site on a real loopback port, plus a client for it."""

    def __init__(self, case: TestCase, store: CallbackStore,
                 config: HttpConfig | None = None) -> None:
        self.config = config or HttpConfig(port=0, gateways=gateways())
        self.registry = CollectorRegistry()
        self.seen = Seen()
        self.handler = CallbackHandler(
            self.config, store, clock=reactor, metrics=HttpMetrics(self.registry),
            on_inbound=lambda m, s: self.seen.inbound.append((m, s)),
            on_receipt=lambda r, s: self.seen.receipts.append((r, s)))
        site = build_site(self.handler, max_body_bytes=self.config.max_body_bytes,
                          reactor=reactor)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        case.addCleanup(self.port.stopListening)
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.client = Client(case)

    def url(self, gateway: str, endpoint: str, query: str = "") -> str:
        return f"{self.base}/gateways/{gateway}/{endpoint}" + (f"?{query}" if query else "")

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


class Client:
    """A plain Agent client that sends the URL bytes exactly as given."""

    def __init__(self, case: TestCase) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        case.addCleanup(self.pool.closeCachedConnections)

    async def fetch(self, method: str, url: str, body: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        hdrs = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
        producer = _BytesProducer(body) if body is not None else None
        response = await self.agent.request(method.encode(), url.encode("latin-1"), hdrs,
                                            producer)
        content = await read_body(response)
        return response.code, response.headers, content


def async_test(fn: Any) -> Any:
    """Run an ``async def`` test method as a Deferred (trial waits for it)."""
    import functools

    from twisted.internet.defer import Deferred

    @functools.wraps(fn)
    def wrapper(self: Any) -> Any:
        return Deferred.fromCoroutine(fn(self))

    return wrapper
