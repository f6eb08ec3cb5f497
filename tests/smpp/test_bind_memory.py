"""The bind and the simulator talking in memory (iosim) on a MemoryReactorClock."""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.errors import MessageTooLongError, SubmitError
from sms_gateway.events import DeliveryStatus
from sms_gateway.smpp import codec
from sms_gateway.smpp.bind import BindRefusedError
from sms_gateway.smpp.session import frames_summary
from sms_gateway.smpp.simulator import SimulatorConfig
from sms_gateway.udh import Concat, Udh
from tests.smpp.support import Memory


def collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_three_part_submit_gets_one_id_per_part_and_every_pdu_is_recorded() -> None:
    m = Memory()
    m.start()
    got = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"x" * 300,
                                                   reference="cmd-1")))
    m.settle()
    [result] = got
    assert isinstance(result, SubmitResult) and len(result.message_ids) == 3
    assert [s.message_id for s in m.h.submitted] == list(result.message_ids)
    names = [(r.direction, r.command) for r in m.h.records]
    assert names[:2] == [("out", "bind_transceiver"), ("in", "bind_transceiver_resp")]
    assert names.count(("out", "submit_sm")) == 3 and names.count(("in", "submit_sm_resp")) == 3
    assert b"secret" not in b"".join(r.raw for r in m.h.records)
    resp = [r for r in m.h.records if r.command == "submit_sm_resp"]
    assert {r.message_id for r in resp} == set(result.message_ids)
    assert {r.reference for r in resp} == {"cmd-1"}


def test_three_receipts_roll_up_through_the_tracker() -> None:
    from sms_gateway.smpp.receipts import MultipartTracker

    m = Memory()
    m.start()
    got = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"y" * 300)))
    m.advance(0.5, steps=5)
    [result] = got
    tracker: MultipartTracker[str] = MultipartTracker()
    tracker.register("m", result.message_ids)
    finals = [tracker.update(r.message_id, r.status) for r in m.h.receipts]
    assert len(m.h.receipts) == 3 and finals[-1] == ("m", DeliveryStatus.DELIVERED)


def test_deliver_sm_is_acknowledged_only_after_the_callback_fires() -> None:
    m = Memory()
    m.start()
    pending: Deferred[None] = Deferred()
    m.h.inbound_result = lambda msg: pending
    status = collect(m.sim.inject_mo("+447700900123", "+4412345", b"\x01\x02"))
    m.settle()
    assert len(m.h.inbound) == 1 and status == []
    pending.callback(None)
    m.settle()
    assert status == [codec.ESME_ROK]


def test_failed_store_answers_a_temporary_error_so_the_smsc_retries() -> None:
    m = Memory()
    m.start()
    m.h.inbound_result = lambda msg: defer.fail(RuntimeError("database down"))
    status = collect(m.sim.inject_mo("+447700900123", "+4412345", b"\x01"))
    m.settle()
    assert status == [codec.ESME_RX_T_APPN]


def test_undecodable_deliver_sm_gets_a_permanent_error_and_is_recorded() -> None:
    m = Memory()
    m.start()
    status = collect(m.sim.inject_mo("+447700900123", "+4412345", b"",
                                     udh=Udh(other=((0x70, b"\x01"),))))
    m.settle()
    assert status == [codec.ESME_ROK]  # a valid UDH with an unknown IE is fine
    proto = m.sim.connections[0].proto
    assert proto is not None
    proto.session.send_request(codec.DELIVER_SM, b"\0\x01", m.reactor.seconds())
    proto.flush()
    m.settle()
    answers = [r for r in m.h.records if r.command == "deliver_sm_resp"]
    assert answers[-1].status == codec.ESME_RX_P_APPN
    assert any(r.command == "deliver_sm" and r.raw.endswith(b"\0\x01") for r in m.h.records)


def test_receipt_before_submit_resp_is_held_until_id_known() -> None:
    m = Memory(SimulatorConfig(receipt_delay=0.1, response_delay=1.0))
    m.start()
    d = m.h.bind.submit(OutboundMessage("+447700900123", b"z"))
    d.addCallback(lambda r: m.h.events.append(f"submitted {r.message_ids[0]}"))
    m.settle()
    m.advance(0.5, steps=5)
    assert m.h.receipts == [] and len(m.h.bind.hold) == 1  # receipt arrived, held
    m.advance(0.6, steps=3)
    assert m.h.events[0].startswith("submitted ") and m.h.events[1].startswith("receipt ")
    assert m.h.events[0].split()[1] == m.h.events[1].split()[1]


def test_throttled_submits_are_resent_in_order_after_a_link_wide_pause() -> None:
    m = Memory(SimulatorConfig(throttle_tps=10.0), window=1)
    m.start()
    results = [collect(m.h.bind.submit(OutboundMessage("+447700900123", bytes([i]))))
               for i in range(12)]
    m.advance(5.0, steps=100)
    assert all(len(r) == 1 and isinstance(r[0], SubmitResult) for r in results)
    assert m.h.bind.stats["throttled"] > 0
    assert [s.sm.short_message[0] for s in m.h.submitted] == list(range(12))


def test_unanswered_submits_fail_temporarily_when_policy_says_fail() -> None:
    m = Memory(SimulatorConfig(drop_responses=1.0), unacked_policy="fail",
               response_timeout=2.0)
    m.start()
    got = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"q")))
    m.advance(2.5, steps=5)
    [failure] = got
    assert isinstance(failure.value, SubmitError) and failure.value.temporary


def test_unanswered_submits_are_resent_up_to_max_attempts() -> None:
    m = Memory(SimulatorConfig(drop_responses=1.0), response_timeout=1.0, max_attempts=3)
    m.start()
    got = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"q")))
    m.advance(5.0, steps=25)
    assert m.sim.stats["dropped"] == 3 and len(got) == 1
    assert got[0].value.temporary


def test_disconnect_mid_burst_resubmits_what_was_not_answered_and_reports_each_once() -> None:
    m = Memory(SimulatorConfig(disconnect_every=7), window=5)
    m.start()
    results = [collect(m.h.bind.submit(OutboundMessage("+447700900123", bytes([i]))))
               for i in range(40)]
    m.advance(10.0, steps=200)
    assert all(len(r) == 1 for r in results)  # every Deferred fired exactly once
    assert all(isinstance(r[0], SubmitResult) for r in results)
    assert m.sim.stats["disconnects"] >= 5 and m.h.bind.stats["binds"] >= 6
    assert {s.sm.short_message[0] for s in m.h.submitted} == set(range(40))


def test_message_over_the_part_limit_is_refused_before_anything_is_sent() -> None:
    m = Memory(max_parts=2)
    m.start()
    [failure] = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"x" * 400)))
    assert isinstance(failure.value, MessageTooLongError)
    assert m.h.submitted == []


def test_unencodable_message_fails_permanently_without_sending() -> None:
    m = Memory()
    m.start()
    [failure] = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"x" * 10,
                                                        source="A" * 25)))
    assert isinstance(failure.value, SubmitError) and not failure.value.temporary
    assert m.sim.stats["submit_sm"] == 0


def test_permanent_smsc_refusal_fails_the_message_once_and_skips_its_other_parts() -> None:
    m = Memory(SimulatorConfig(reject_prefixes=("4477009",)), window=1)
    m.start()
    refused = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"x" * 400)))
    fine = collect(m.h.bind.submit(OutboundMessage("+447800900123", b"y")))
    m.settle()
    [failure] = refused
    assert isinstance(failure.value, SubmitError) and not failure.value.temporary
    assert failure.value.code == codec.ESME_RINVDSTADR and failure.value.link == "a"
    assert m.sim.stats["submit_sm"] == 2  # part 1 refused, parts 2-3 never sent, then "fine"
    assert isinstance(fine[0], SubmitResult)


def test_bad_credentials_never_bind_and_retry_with_backoff() -> None:
    m = Memory(password="wrong")
    m.h.bind.startService()
    m.advance(3.0, steps=30)
    assert not m.h.bind.is_up and m.h.bind.stats["binds"] == 0
    binds = [r for r in m.h.records if r.command == "bind_transceiver_resp"]
    assert len(binds) >= 3 and all(r.status == codec.ESME_RINVPASWD for r in binds)
    gaps = [b.at - a.at for a, b in itertools.pairwise(binds)]
    assert gaps[-1] > gaps[0]  # exponential backoff, not a fixed delay


def test_garbage_from_the_smsc_closes_the_link_and_it_comes_back() -> None:
    m = Memory()
    m.start()
    m.sim.inject_garbage(b"\x00\x00\x00\x02garbage!")
    m.settle()
    assert any(r.command == "generic_nack" and r.direction == "out" for r in m.h.records)
    m.advance(1.0, steps=10)
    assert m.h.bind.is_up and m.h.bind.stats["binds"] == 2


def test_inbound_parts_in_shuffled_order_reach_the_callback_with_udh() -> None:
    m = Memory()
    m.start()
    for seq in (3, 1, 2):
        m.sim.inject_mo("+447700900123", "+4412345", f"part{seq}".encode(),
                        udh=Udh(concat=Concat(77, 3, seq)))
    m.settle()
    assert [msg.udh.concat.seq for msg in m.h.inbound] == [3, 1, 2]  # type: ignore[union-attr]


def test_stop_service_drains_outstanding_submits_then_unbinds() -> None:
    m = Memory(SimulatorConfig(response_delay=0.5))
    m.start()
    results = [collect(m.h.bind.submit(OutboundMessage("+447700900123", bytes([i]))))
               for i in range(5)]
    m.settle()
    stopped = collect(m.h.bind.stopService())
    assert not m.h.bind.is_up
    m.advance(1.0, steps=10)
    assert all(isinstance(r[0], SubmitResult) for r in results)
    assert stopped == [None]
    assert any(r.command == "unbind" for r in m.h.records)
    late = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"late")))
    assert late[0].value.temporary


def test_part_receipts_wait_until_the_whole_message_has_its_ids() -> None:
    m = Memory(SimulatorConfig(receipt_delay=0.05, response_delay=0.3), window=1)
    m.start()
    d = m.h.bind.submit(OutboundMessage("+447700900123", b"w" * 300))
    d.addCallback(lambda r: m.h.events.append("submitted"))
    m.settle()
    m.advance(1.5, steps=30)
    assert m.h.events[0] == "submitted" and m.h.events[1:] and len(m.h.receipts) == 3


def test_bad_pdus_from_the_smsc_get_generic_nack_and_traffic_goes_on() -> None:
    m = Memory(SimulatorConfig(bad_pdu_every=3))
    m.start()
    results = [collect(m.h.bind.submit(OutboundMessage("+447700900123", bytes([i]))))
               for i in range(9)]
    m.settle()
    assert all(isinstance(r[0], SubmitResult) for r in results)
    nacks = [r for r in m.h.records if r.command == "generic_nack" and r.direction == "out"]
    assert len(nacks) == 3 and {r.status for r in nacks} == {codec.ESME_RINVCMDID}
    assert m.h.bind.stats["binds"] == 1


def test_tps_limit_spaces_out_submits() -> None:
    m = Memory(tps=10.0)
    m.start()
    results = [collect(m.h.bind.submit(OutboundMessage("+447700900123", bytes([i]))))
               for i in range(25)]
    m.settle()
    assert sum(1 for r in results if r) == 1  # burst of one token at 10 TPS
    m.advance(1.0, steps=20)
    assert 9 <= sum(1 for r in results if r) <= 12
    m.advance(2.0, steps=40)
    assert all(r for r in results) and m.sim.stats["throttled"] == 0


def test_idle_link_is_kept_alive_with_enquire_link() -> None:
    m = Memory(enquire_link_interval=5.0)
    m.start()
    m.advance(16.0, steps=32)
    sent = [r for r in m.h.records if r.command == "enquire_link" and r.direction == "out"]
    answered = [r for r in m.h.records if r.command == "enquire_link_resp"]
    assert len(sent) == 3 and len(answered) == 3 and m.h.bind.is_up


def test_messages_queued_while_the_link_stays_down_fail_temporarily_after_down_timeout() -> None:
    m = Memory(down_timeout=5.0)
    m.start()
    m.sim.config = SimulatorConfig(password="changed")  # the SMSC now refuses our binds
    m.sim.disconnect_all()
    m.settle()
    assert not m.h.bind.is_up
    got = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"waiting")))
    m.advance(4.0, steps=20)
    assert got == []  # still waiting for the link
    m.advance(1.5, steps=5)
    [failure] = got
    assert isinstance(failure.value, SubmitError) and failure.value.temporary
    assert "down" in str(failure.value) and m.h.submitted == []


def test_messages_queued_during_a_short_outage_go_out_after_reconnect() -> None:
    m = Memory(down_timeout=5.0)
    m.start()
    m.sim.disconnect_all()
    got = collect(m.h.bind.submit(OutboundMessage("+447700900123", b"waiting")))
    m.advance(2.0, steps=20)
    assert isinstance(got[0], SubmitResult) and m.h.bind.stats["binds"] == 2


def test_refused_bind_fails_a_waiter_that_asked_with_the_status_and_its_name() -> None:
    m = Memory(password="wrong")
    refused = collect(m.h.bind.when_up(refusal_fails=True))
    patient = collect(m.h.bind.when_up())
    m.h.bind.startService()
    m.settle()
    [failure] = refused
    assert isinstance(failure.value, BindRefusedError)
    assert failure.value.status == codec.ESME_RINVPASWD and failure.value.link == "a"
    assert str(failure.value) == ("bind a refused by the SMSC: "
                                  "0x0000000E ESME_RINVPASWD (invalid password)")
    assert patient == []  # the default waiter keeps waiting for a later bind


def test_stop_from_inside_the_receipt_callback_answers_that_receipt_before_unbinding() -> None:
    m = Memory(SimulatorConfig(receipt_delay=0.1))
    received: list[str] = []
    m.sim.add_pdu_observer(lambda direction, raw: received.append(
        frames_summary([raw])[0][0]) if direction == "in" else None)
    m.start()
    stopped: list[Any] = []

    def stop_on_receipt(receipt: Any) -> Deferred[None]:
        stopped.append(collect(m.h.bind.stopService()))  # as `mepl sms send` does
        return defer.succeed(None)

    m.h.bind.inbound.on_receipt = stop_on_receipt
    m.h.bind.submit(OutboundMessage("+447700900123", b"r"))
    m.advance(0.5, steps=5)
    assert received[-2:] == ["deliver_sm_resp", "unbind"]
    assert stopped and stopped[0] == [None]
