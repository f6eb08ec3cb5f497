"""Slow clients cannot hold callback connections: header and body deadlines.

Real TCP on 127.0.0.1 (the global reactor moves the bytes); the Site's
timers run on an injected ``task.Clock``, so the tests wait for no real time.
Each step waits until the server has read what the client sent, then moves
the clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from mepl.config import ConfigError, build
from sms_gateway.http import (
    CallbackHandler,
    HttpConfig,
    HttpMetrics,
    MemoryCallbackStore,
    RawCallback,
    StoredCallback,
    build_site,
)
from tests.http.helpers import TOKEN, async_test, gateways

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
REQUEST_LINE = (f"GET /gateways/kannel1/inbound?token={TOKEN}&id=m1&from=447700900123"
                "&to=1234&text=hi HTTP/1.1\r\n").encode()
POST_HEAD = (f"POST /gateways/kannel1/inbound?token={TOKEN}&id=p1 HTTP/1.1\r\n"
             "Host: mepl\r\nContent-Type: text/plain\r\nX-Kannel-From: 447700900123\r\n"
             "X-Kannel-To: 1234\r\nContent-Length: 100\r\n\r\n").encode()


class Peer(Protocol):
    """A raw TCP client: records what it reads and when the server closes."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[None] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for marker, d in list(self._waiting):
            if marker in self.received:
                self._waiting.remove((marker, d))
                d.callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)

    def read_until(self, marker: bytes) -> Deferred[None]:
        if marker in self.received:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((marker, d))
        return d


class SlowStore(MemoryCallbackStore):
    """Commits only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[RawCallback, Deferred[StoredCallback]]] = []

    def store(self, raw: RawCallback) -> Deferred[StoredCallback]:
        d: Deferred[StoredCallback] = Deferred()
        self.pending.append((raw, d))
        return d

    def commit_all(self) -> None:
        for raw, d in self.pending:
            d.callback(self._insert(raw))
        self.pending = []


class TimeoutTest(TestCase):
    timeout = 15  # trial's limit per test: a connection never closed fails fast, not at 120 s

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.store = MemoryCallbackStore()
        self.server_read = 0
        self._read_waiters: list[tuple[int, Deferred[None]]] = []
        self.accepted: Deferred[None] = Deferred()

    def listen(self, store: MemoryCallbackStore | None = None) -> int:
        config = HttpConfig(port=0, gateways=gateways(), header_timeout_seconds=HEADER_TIMEOUT,
                            body_timeout_seconds=BODY_TIMEOUT)
        handler = CallbackHandler(config, store or self.store, clock=self.clock,
                                  metrics=HttpMetrics(self.registry))
        site: Any = build_site(handler, max_body_bytes=config.max_body_bytes, reactor=self.clock)
        build = site.buildProtocol

        def build_counting(addr: Any) -> Any:
            channel = build(addr)
            received, made = channel.dataReceived, channel.connectionMade

            def connected() -> None:
                made()
                self.accepted.callback(None)

            def counting(data: bytes) -> None:
                received(data)  # the server has handled the bytes before the test goes on
                self.server_read += len(data)
                for want, d in list(self._read_waiters):
                    if self.server_read >= want:
                        self._read_waiters.remove((want, d))
                        d.callback(None)

            channel.dataReceived = counting
            channel.connectionMade = connected
            return channel

        site.buildProtocol = build_counting
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def connect(self, port: int) -> Peer:
        peer = Peer()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)
        await self.accepted  # the server's channel exists: its header deadline is running
        self.addCleanup(lambda: peer.transport.abortConnection()  # type: ignore[union-attr]
                        if peer.transport.connected else None)  # type: ignore[union-attr]
        self.sent = 0
        return peer

    async def send(self, peer: Peer, data: bytes) -> None:
        """Send ``data`` and wait until the server has read it."""
        self.sent += len(data)
        d: Deferred[None] = Deferred()
        self._read_waiters.append((self.sent, d))
        peer.transport.write(data)  # type: ignore[union-attr]
        if self.server_read >= self.sent:
            self._read_waiters.remove((self.sent, d))
            return
        await d

    def timeouts(self, phase: str) -> float:
        return self.registry.get_sample_value("mepl_http_connection_timeouts_total",
                                              {"phase": phase}) or 0.0

    @async_test
    async def test_headers_sent_slowly_are_cut_off_at_the_header_deadline(self) -> None:
        peer = await self.connect(self.listen())
        # One header byte every 2 s: an idle timeout would never fire, the deadline does.
        await self.send(peer, REQUEST_LINE)
        for byte in b"Host":  # at 2, 4, 6 and 8 s
            self.clock.advance(2)
            await self.send(peer, bytes([byte]))
        self.assertFalse(peer.closed.called)  # 10 s have not passed yet
        self.clock.advance(2)
        await peer.closed
        self.assertTrue(peer.received.startswith(b"HTTP/1.1 408 "))
        self.assertEqual(self.timeouts("headers"), 1)
        self.assertEqual(self.store.rows, [])

    @async_test
    async def test_a_body_that_stalls_is_cut_off_at_the_body_deadline(self) -> None:
        peer = await self.connect(self.listen())
        await self.send(peer, POST_HEAD)  # the headers in time
        await self.send(peer, b"x" * 10)  # then 10 of the 100 body octets, then nothing
        self.clock.advance(BODY_TIMEOUT - 1)
        self.assertFalse(peer.closed.called)
        self.clock.advance(1)
        await peer.closed
        self.assertTrue(peer.received.startswith(b"HTTP/1.1 408 "))
        self.assertEqual((self.timeouts("body"), self.timeouts("headers")), (1, 0))
        self.assertEqual(self.store.rows, [])

    @async_test
    async def test_keep_alive_survives_the_deadlines_and_each_request_gets_its_own(self) -> None:
        peer = await self.connect(self.listen())
        await self.send(peer, REQUEST_LINE + b"Host: mepl\r\n\r\n")
        await peer.read_until(b"\r\n\r\n")
        self.assertTrue(peer.received.startswith(b"HTTP/1.1 200 "))
        # Idle between requests for longer than both deadlines (under the 60 s idle timeout).
        self.clock.advance(HEADER_TIMEOUT + BODY_TIMEOUT + 1)
        self.assertFalse(peer.closed.called)
        await self.send(peer, REQUEST_LINE.replace(b"id=m1", b"id=m2") + b"Host: mepl\r\n\r\n")
        await peer.read_until(b"\r\n\r\nHTTP/1.1 200 ")
        self.assertEqual(peer.received.count(b"HTTP/1.1 200 "), 2)
        # The next request starts its own header deadline with its first byte.
        await self.send(peer, b"GET /gateways/kannel1/inbound")
        self.clock.advance(HEADER_TIMEOUT)
        await peer.closed
        self.assertEqual(self.timeouts("headers"), 1)
        self.assertEqual(len(self.store.rows), 2)

    @async_test
    async def test_a_slow_store_is_not_a_slow_client(self) -> None:
        store = SlowStore()
        peer = await self.connect(self.listen(store))
        await self.send(peer, POST_HEAD + b"y" * 100)
        self.clock.advance(HEADER_TIMEOUT + BODY_TIMEOUT + 1)  # the body arrived in time
        self.assertFalse(peer.closed.called)
        store.commit_all()
        await peer.read_until(b"\r\n\r\n")
        self.assertTrue(peer.received.startswith(b"HTTP/1.1 200 "))
        self.assertEqual((self.timeouts("headers"), self.timeouts("body")), (0, 0))

    @async_test
    async def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
            self) -> None:
        peer = await self.connect(self.listen())
        self.clock.advance(HEADER_TIMEOUT)
        await peer.closed
        self.assertEqual(self.timeouts("headers"), 1)


@pytest.mark.parametrize("key", ["header_timeout_seconds", "body_timeout_seconds"])
def test_deadlines_must_be_positive_and_are_named_in_the_error(key: str) -> None:
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ConfigError, match=f"{key} must be positive"):
            build(HttpConfig, {key: bad}, "http")
    assert getattr(build(HttpConfig, {key: "2.5"}, "http"), key) == 2.5
