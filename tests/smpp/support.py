"""Helpers for SMPP tests: a bind wired to the simulator, in memory or over loopback."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter, IOPump

from sms_gateway.events import DeliveryReceipt, InboundMessage
from sms_gateway.smpp.bind import SmppBind
from sms_gateway.smpp.config import SmppLinkConfig
from sms_gateway.smpp.records import PduRecord
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator, SubmittedMessage

PORT = 2775


@dataclass
class Harness:
    """A bind, the simulator and what they saw."""

    bind: SmppBind
    sim: SmscSimulator
    inbound: list[InboundMessage] = field(default_factory=list)
    receipts: list[DeliveryReceipt] = field(default_factory=list)
    records: list[PduRecord] = field(default_factory=list)
    submitted: list[SubmittedMessage] = field(default_factory=list)
    inbound_result: Any = None  # None: succeed at once; else a callable returning a Deferred
    events: list[str] = field(default_factory=list)

    def on_inbound(self, message: InboundMessage) -> Deferred[None]:
        self.inbound.append(message)
        if self.inbound_result is not None:
            result: Deferred[None] = self.inbound_result(message)
            return result
        return defer.succeed(None)

    def on_receipt(self, receipt: DeliveryReceipt) -> Deferred[None]:
        self.receipts.append(receipt)
        self.events.append(f"receipt {receipt.message_id}")
        return defer.succeed(None)


def link_config(port: int = PORT, **kw: Any) -> SmppLinkConfig:
    defaults: dict[str, Any] = {"host": "127.0.0.1", "port": port, "system_id": "sim",
                                "password": "secret", "reconnect_min": 0.05,
                                "reconnect_max": 0.5}
    defaults.update(kw)
    return SmppLinkConfig(**defaults)


def make_harness(clock: Any, endpoint: Any, sim: SmscSimulator, name: str = "a",
                 **link_kw: Any) -> Harness:
    holder: list[Harness] = []

    def on_inbound(m: InboundMessage) -> Deferred[None]:
        return holder[0].on_inbound(m)

    def on_receipt(r: DeliveryReceipt) -> Deferred[None]:
        return holder[0].on_receipt(r)

    bind = SmppBind(name, link_config(**link_kw), reactor=clock, endpoint=endpoint,
                    on_inbound=on_inbound, on_receipt=on_receipt,
                    pdu_sink=lambda r: holder[0].records.append(r), rng=random.Random(2))
    h = Harness(bind, sim)
    holder.append(h)
    sim.add_submit_observer(h.submitted.append)
    return h


class Memory:
    """Bind and simulator connected in memory (iosim) on one MemoryReactorClock."""

    def __init__(self, sim_config: SimulatorConfig | None = None, **link_kw: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.sim = SmscSimulator(sim_config or SimulatorConfig(receipt_delay=0.2),
                                 clock=self.reactor, rng=random.Random(1))
        self.reactor.listenTCP(PORT, self.sim.factory())
        self.completer = ConnectionCompleter(self.reactor)
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT)
        self.h = make_harness(self.reactor, endpoint, self.sim, **link_kw)
        self.pumps: list[IOPump] = []

    def start(self) -> None:
        self.h.bind.startService()
        self.settle()
        assert self.h.bind.is_up

    def settle(self) -> None:
        """Complete pending connections and move bytes until quiet."""
        for _ in range(50):
            pump = self.completer.succeedOnce()
            if pump is not None:
                self.pumps.append(pump)
            moved = False
            for p in self.pumps:
                moved = p.flush() or moved
            if pump is None and not moved:
                return

    def advance(self, seconds: float, steps: int = 1) -> None:
        for _ in range(steps):
            self.reactor.advance(seconds / steps)
            self.settle()


def nodelay_of(proto: Any) -> int:
    """TCP_NODELAY of the socket under ``proto`` (through a TLS layer if there is one)."""
    transport = proto.transport
    while not hasattr(transport, "getHandle") or not hasattr(transport.getHandle(),
                                                              "getsockopt"):
        transport = transport.transport
    return int(transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
