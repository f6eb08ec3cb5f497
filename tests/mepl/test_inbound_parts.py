"""Concatenated inbound messages are reassembled from the database, exactly once,
whichever process (bind) each part went through."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from twisted.trial.unittest import SynchronousTestCase

from mepl.inbound import InboundReceiver
from mepl.runtime.inbound_worker import InboundWorker
from mepl.runtime.outbound_txn import housekeeping_txn
from mepl.settings import DispatchConfig
from signing.alerts import make_alert
from signing.transport import DEVICE_PORT, SERVER_PORT, armour
from sms_gateway.events import InboundMessage
from sms_gateway.udh import Concat, Udh
from tests.mepl.helpers import SERVER_ID, SERVER_NUMBER, Inbound, World

IMEI = "490154203237518"
SENDER = "+447700900101"


class InboundPartsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, self.handset = self.w.enrol(IMEI, SENDER)
        self.other = Inbound(
            InboundReceiver(runner=self.w.pool, clock=self.w.clock, wake=lambda: None,
                            max_rows=1),
            InboundWorker(runner=self.w.pool, clock=self.w.clock, server_id=SERVER_ID,
                          config=DispatchConfig(server_number=SERVER_NUMBER),
                          worker="other-process"))
        frame = self.handset.alert(make_alert("lost", detail="left in a taxi " * 15),
                                   self.w.clock.seconds())
        self.assertGreater(len(frame), 256)  # three parts of 128 octets
        chunks = [frame[i:i + 128] for i in range(0, len(frame), 128)]
        self.parts = [self.part(chunk, seq, len(chunks)) for seq, chunk in
                      enumerate(chunks, start=1)]

    def part(self, chunk: bytes, seq: int, total: int, ref: int = 0x5A) -> InboundMessage:
        udh = Udh(dest_port=SERVER_PORT, src_port=DEVICE_PORT, concat=Concat(ref, total, seq))
        return replace(self.w.mo(SENDER, chunk), udh=udh)

    def deliver(self, processor: Inbound, message: InboundMessage) -> None:
        self.successResultOf(processor.receiver.on_inbound(message))
        processor.drain()

    def alerts(self) -> int:
        return self.w.inbound.counts["alert_lost"] + self.other.counts["alert_lost"]

    def test_parts_through_two_processes_in_shuffled_order_complete_exactly_once(self) -> None:
        third, first, second = self.parts[2], self.parts[0], self.parts[1]
        self.deliver(self.w.inbound, third)
        self.deliver(self.other, first)
        self.assertEqual(self.alerts(), 0)
        self.deliver(self.w.inbound, second)
        self.assertEqual(self.alerts(), 1)
        self.assertEqual(self.w.scalar("SELECT state FROM devices"), "lost")
        self.deliver(self.other, second)  # the SMSC redelivers a part
        self.assertEqual(self.alerts(), 1)

    def test_a_conflicting_duplicate_part_is_marked_and_the_original_set_completes(
            self) -> None:
        forged = replace(self.parts[0], payload=b"\x00" * 128)
        self.deliver(self.w.inbound, self.parts[0])
        self.deliver(self.w.inbound, forged)
        self.deliver(self.w.inbound, self.parts[1])
        self.deliver(self.w.inbound, self.parts[2])
        self.assertEqual(self.alerts(), 1)
        self.assertEqual(self.w.inbound.counts["mo_conflicting_part"], 1)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE error = 'conflicting duplicate part'"), 1)

    def test_the_same_reference_from_another_sender_never_mixes_in(self) -> None:
        stranger = replace(self.parts[1], sender="+447700900999")
        self.deliver(self.w.inbound, self.parts[0])
        self.deliver(self.w.inbound, stranger)
        self.deliver(self.w.inbound, self.parts[2])
        self.assertEqual(self.alerts(), 0)

    def test_an_incomplete_set_is_marked_expired_by_housekeeping(self) -> None:
        self.deliver(self.w.inbound, self.parts[0])
        self.w.clock.advance(3601)
        done = self.w.run(housekeeping_txn, now=self.w.now, stale_before=self.w.now,
                          unanswered_before=self.w.now, max_attempts=1,
                          parts_before=self.w.now - timedelta(seconds=3600))
        self.assertEqual(done.parts_expired, 1)
        self.deliver(self.w.inbound, self.parts[1])
        self.deliver(self.w.inbound, self.parts[2])
        self.assertEqual(self.alerts(), 0)  # part 1 is gone: the set cannot complete

    def test_parts_arriving_hours_apart_inside_the_timeout_are_reassembled(self) -> None:
        self.deliver(self.w.inbound, self.parts[0])
        self.w.clock.advance(1800)
        self.deliver(self.other, self.parts[1])
        self.w.clock.advance(1700)
        self.deliver(self.w.inbound, self.parts[2])
        self.assertEqual(self.alerts(), 1)

    def test_two_workers_applying_the_last_parts_at_once_apply_the_message_once(self) -> None:
        self.deliver(self.w.inbound, self.parts[0])
        # Parts 2 and 3 are stored and queued; each process claims one of them.
        self.successResultOf(self.w.inbound.receiver.on_inbound(self.parts[1]))
        self.successResultOf(self.other.receiver.on_inbound(self.parts[2]))
        self.w.inbound.drain()
        self.other.drain()
        self.assertEqual(self.alerts(), 1)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 0)

    def test_a_text_armoured_alert_in_two_ucs2_parts_is_joined_before_dearmouring(
            self) -> None:
        frame = self.handset.alert(make_alert("lost", detail="under the seat " * 6),
                                   self.w.clock.seconds())
        text = armour(frame)
        self.assertGreater(len(text), 70)
        halves = [text[:70], text[70:]]
        second, first = (replace(self.w.mo(SENDER, half.encode("utf-16-be")), data_coding=8,
                                 text=half, udh=Udh(concat=Concat(0x33, 2, seq)))
                         for seq, half in ((2, halves[1]), (1, halves[0])))
        # The first part is applied last: its own text alone is not a whole frame.
        self.successResultOf(self.w.inbound.receiver.on_inbound(second))
        self.deliver(self.w.inbound, first)
        self.assertEqual(self.alerts(), 1)
