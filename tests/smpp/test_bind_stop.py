"""A stopping bind hands over the receipts it held and leaves nothing scheduled."""

from __future__ import annotations

from sms_gateway.channel import OutboundMessage
from sms_gateway.smpp.simulator import SimulatorConfig
from tests.smpp.support import Memory


def test_a_receipt_held_at_stop_is_handed_over_and_no_expiry_round_is_left() -> None:
    # The receipt comes long before the submit_sm_resp: held (its id is unknown).
    m = Memory(SimulatorConfig(receipt_delay=0.01, response_delay=1.0))
    m.start()
    submitted = m.h.bind.submit(OutboundMessage("+447700900123", b"held"))
    m.advance(0.1, steps=5)
    assert len(m.h.bind.hold) == 1 and m.h.receipts == []
    stopped = m.h.bind.stopService()
    m.advance(1.5, steps=15)
    assert stopped.called and submitted.called
    assert [r.message_id for r in m.h.receipts] == [m.h.submitted[0].message_id]
    assert m.sim.stats["deliver_ok"] == 1  # answered before the unbind
    left = [c for c in m.reactor.getDelayedCalls() if c.active()]
    assert left == [], left
