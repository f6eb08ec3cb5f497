"""The simulator times each deliver_sm until its deliver_sm_resp (the benchmark's ack latency)."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from sms_gateway.smpp.simulator import SimulatorConfig
from tests.smpp.support import Memory


def test_each_answered_deliver_sm_records_how_long_the_esme_took_to_answer() -> None:
    m = Memory(SimulatorConfig(receipt_delay=0.2))
    held: list[Deferred[None]] = []

    def hold(_: object) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        held.append(d)
        return d

    m.h.inbound_result = hold
    m.start()
    m.sim.inject_mo("+447700900123", "+447700900999", b"first")
    m.settle()
    m.advance(0.25)
    assert len(held) == 1 and list(m.sim.ack_seconds) == []  # not answered yet
    held[0].callback(None)
    m.settle()
    m.sim.inject_mo("+447700900123", "+447700900999", b"second")
    m.settle()
    held[1].callback(None)
    m.settle()
    assert [round(s, 3) for s in m.sim.ack_seconds] == [0.25, 0.0]
    assert m.sim.stats["deliver_ok"] == 2
