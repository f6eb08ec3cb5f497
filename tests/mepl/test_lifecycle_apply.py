"""Replies and receipts whatever the command's state, and whatever order they arrive in."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from twisted.trial.unittest import SynchronousTestCase

from blobstore.inbound_queue import claim_entries_txn
from mepl.core import lifecycle
from mepl.runtime.inbound_rows import part_row, receipt_row
from mepl.runtime.inbound_txn import (
    ReceiptFacts,
    apply_receipt_txn,
    apply_reply_txn,
    store_inbound_txn,
)
from mepl.runtime.outbound_txn import housekeeping_txn, record_submitted_txn
from signing.commands import ReplyStatus
from signing.frames import seal_reply
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus
from tests.mepl.helpers import SERVER_ID, SERVER_NUMBER, World

IMEI = "490154203237518"
NUMBER = "+447700900101"


class ReplyStateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, self.handset = self.w.enrol(IMEI, NUMBER)

    def sent(self, opcode: str = "lock", **args: Any) -> tuple[int, bytes]:
        command_id = self.w.queue(self.device_id, opcode, **args)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                   message_ids=[f"m{command_id}"], now=self.w.now)
        return command_id, ready.frame

    def state(self, command_id: int) -> str:
        return str(self.w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id))

    def history(self, command_id: int) -> list[tuple[Any, ...]]:
        with self.w.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT from_state, to_state, event, details ->> 'note' FROM command_events "
                "WHERE command_id = :i ORDER BY id"), {"i": command_id})]

    def test_a_submit_recorded_after_the_reply_keeps_done_and_is_in_the_history(self) -> None:
        command_id = self.w.queue(self.device_id, "lock")
        (ready,) = self.w.claim()
        reply = self.handset.receive(ready.frame, SERVER_NUMBER, self.w.clock.seconds())
        self.w.deliver(self.w.mo(NUMBER, reply.reply_frame))  # the reply wins the race
        self.assertEqual(self.state(command_id), "done")
        moved = self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                           message_ids=[f"m{command_id}"], now=self.w.now)
        self.assertFalse(moved)
        self.assertEqual(self.state(command_id), "done")
        self.assertEqual(self.history(command_id)[-2:], [
            ("sending", "done", "reply_ok", None),
            ("done", "done", "submitted", "submit recorded after the command was done"),
        ])
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE kind = 'mt' AND command_id = :i",
            i=command_id), 1)

    def test_a_wipe_executed_after_expiry_is_recorded_as_done_with_its_result(self) -> None:
        command_id, frame = self.sent("wipe", external_storage=True)
        reply = self.handset.receive(frame, SERVER_NUMBER, self.w.clock.seconds())
        self.w.clock.advance(3700)  # past not-after: housekeeping expires it
        self.w.run(housekeeping_txn, now=self.w.now, stale_before=self.w.now,
                   unanswered_before=self.w.now - timedelta(days=1), max_attempts=5)
        self.assertEqual(self.state(command_id), "expired")
        self.w.deliver(self.w.mo(NUMBER, reply.reply_frame))  # the SMSC held the reply
        self.assertEqual(self.state(command_id), "done")
        self.assertEqual(self.w.scalar("SELECT result ->> 'status' FROM commands WHERE id = :i",
                                       i=command_id), "ok")
        self.assertEqual(self.history(command_id)[-2:], [
            ("sent", "expired", "expire", None),
            ("expired", "done", "reply_ok", "executed after expired")])
        self.assertEqual(self.w.inbound.counts["replies"], 1)

    def test_a_reply_while_the_command_is_queued_for_a_resend_completes_it(self) -> None:
        command_id, frame = self.sent()
        reply = self.handset.receive(frame, SERVER_NUMBER, self.w.clock.seconds())
        self.w.clock.advance(901)
        self.w.run(housekeeping_txn, now=self.w.now, stale_before=self.w.now,
                   unanswered_before=self.w.now - timedelta(seconds=900), max_attempts=5)
        self.assertEqual(self.state(command_id), "queued")
        self.w.deliver(self.w.mo(NUMBER, reply.reply_frame))
        self.assertEqual(self.state(command_id), "done")
        self.assertEqual(self.w.claim(), [])  # nothing left to resend

    def test_a_device_refusal_ends_in_refused_not_done(self) -> None:
        for status in (ReplyStatus.FAILED, ReplyStatus.DENIED, ReplyStatus.UNSUPPORTED):
            command_id, frame = self.sent("locate")
            reply = seal_reply(frame, status, device_key=self.handset.device_key,
                               server_id=SERVER_ID, imei=IMEI)
            self.w.deliver(self.w.mo(NUMBER, reply))
            self.assertEqual(self.state(command_id), "refused")
            self.assertEqual(self.w.scalar("SELECT last_error FROM commands WHERE id = :i",
                                           i=command_id), f"device answered {status.name.lower()}")

    def test_a_verified_lock_and_unlock_show_in_the_device_state(self) -> None:
        _, frame = self.sent("lock", emergency_dialer=True)
        self.w.deliver(self.w.mo(NUMBER, self.handset.receive(
            frame, SERVER_NUMBER, self.w.clock.seconds()).reply_frame))
        self.assertEqual(self.w.scalar("SELECT state FROM devices"), "locked")
        self.assertIsNotNone(self.w.scalar("SELECT last_seen_at FROM devices"))
        _, frame = self.sent("unlock")
        self.w.deliver(self.w.mo(NUMBER, self.handset.receive(
            frame, SERVER_NUMBER, self.w.clock.seconds()).reply_frame))
        self.assertEqual(self.w.scalar("SELECT state FROM devices"), "provisioned")


class ReceiptOrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, _ = self.w.enrol(IMEI, NUMBER)

    def state(self, command_id: int) -> str:
        return str(self.w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id))

    def test_receipts_that_arrive_before_their_submit_is_recorded_are_linked_after(
            self) -> None:
        commands = [self.w.queue(self.device_id) for _ in range(40)]
        ready = self.w.claim()
        # An SMSC that sends receipts at once: each is applied before its submit is recorded.
        for command in ready:
            self.w.receipt("l1", f"id-{command.command_id}")
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM inbound_queue WHERE state = 'waiting'"), 40)
        for command in ready:
            self.w.run(record_submitted_txn, command, link="l1", channel="smpp",
                       message_ids=[f"id-{command.command_id}"], now=self.w.now)
        self.w.inbound.drain()
        self.assertEqual([self.state(c) for c in commands], ["delivered"] * 40)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 0)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE kind = 'dlr' AND command_id IS NOT NULL"), 40)

    def test_a_receipt_for_a_submit_never_recorded_is_dropped_with_a_reason(self) -> None:
        self.w.receipt("l1", "stranger")
        self.w.clock.advance(86401)
        done = self.w.run(housekeeping_txn, now=self.w.now, stale_before=self.w.now,
                          unanswered_before=self.w.now, max_attempts=1,
                          receipts_before=self.w.now - timedelta(days=1))
        self.assertEqual(done.receipts_dropped, 1)
        self.assertEqual(self.w.scalar("SELECT error FROM messages WHERE kind = 'dlr'"),
                         "receipt for a message never submitted here")

    def test_two_part_receipts_committed_together_deliver_the_command(self) -> None:
        """Write skew: each transaction alone sees one part delivered; together, both."""
        command_id = self.w.queue(self.device_id)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                   message_ids=["p1", "p2"], now=self.w.now)
        ids = [self.w.run(store_inbound_txn, receipt_row(DeliveryReceipt(
            channel=Channel.SMPP, link="l1", message_id=part, status=DeliveryStatus.DELIVERED,
            received_at=self.w.now)), "dlr") for part in ("p1", "p2")]
        entries = self.w.run(claim_entries_txn, worker="w", now=self.w.now,
                             lease=timedelta(seconds=60), limit=10)
        by_message = {e.message_id: e.id for e in entries}

        def apply(conn: Any, message_id: int, part: str) -> Any:
            return apply_receipt_txn(
                conn, entry_id=by_message[message_id], worker="w",
                receipt=ReceiptFacts(message_id, "l1", part, "delivered", True, True),
                now=self.w.now, retry_at=None)

        first = self.w.engine.connect()
        self.addCleanup(first.close)
        tx = first.begin()
        apply(first, ids[0], "p1")  # holds the command row until it commits
        second_done = threading.Event()

        def second() -> None:
            with self.w.engine.begin() as conn:
                apply(conn, ids[1], "p2")
            second_done.set()

        thread = threading.Thread(target=second)
        thread.start()
        self.assertFalse(second_done.wait(0.5))  # it waits for the first: no stale picture
        tx.commit()
        thread.join(10)
        self.assertTrue(second_done.is_set())
        self.assertEqual(self.state(command_id), "delivered")


class LifecycleTableTests(SynchronousTestCase):
    def test_every_external_event_is_defined_in_every_state(self) -> None:
        for event in ("reply_ok", "reply_refused", "delivered", "delivery_failed"):
            for state in lifecycle.State:
                lifecycle.next_state(state, event)  # raises on a miss

    def test_a_miss_raises_and_bulk_events_have_one_target(self) -> None:
        with self.assertRaises(lifecycle.InvalidTransition):
            lifecycle.next_state("done", "claim")
        with self.assertRaises(lifecycle.InvalidTransition):
            lifecycle.next_state("sending", "cancel")
        self.assertEqual(lifecycle.target("expire"), "expired")
        self.assertEqual(lifecycle.sources("resend"), {"sent", "delivered"})
        self.assertEqual(lifecycle.sources("claim"), {"queued"})


class KeyChangeTests(SynchronousTestCase):
    def test_a_key_changed_between_verification_and_apply_writes_nothing_and_retries(
            self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device_id, _ = w.enrol(IMEI, NUMBER)
        command_id = w.queue(device_id)
        rows = [w.run(store_inbound_txn, part_row(w.mo(NUMBER, b"x" * 10)), "mo")
                for _ in range(2)]
        (entry, _other) = w.run(claim_entries_txn, worker="w", now=w.now,
                                lease=timedelta(seconds=60), limit=10)
        outcome = w.run(apply_reply_txn, entry_id=entry.id, worker="w", part_ids=rows,
                        device_id=device_id, public_key=b"\x00" * 32, command_id=command_id,
                        ok=True, result={"status": "ok"}, now=w.now)
        self.assertEqual(outcome.outcome, "retry")
        self.assertEqual(w.scalar("SELECT count(*) FROM messages WHERE meta ? 'assembled'"), 0)
        self.assertEqual(w.scalar("SELECT count(*) FROM inbound_queue"), 2)
        self.assertEqual(w.scalar("SELECT state FROM commands"), "queued")


class LeaseTests(SynchronousTestCase):
    def test_a_worker_whose_lease_was_taken_over_applies_nothing(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device_id, _ = w.enrol(IMEI, NUMBER)
        command_id = w.queue(device_id)
        (ready,) = w.claim()
        w.run(record_submitted_txn, ready, link="l1", channel="smpp", message_ids=["m-9"],
              now=w.now)
        row = w.run(store_inbound_txn, receipt_row(DeliveryReceipt(
            channel=Channel.SMPP, link="l1", message_id="m-9",
            status=DeliveryStatus.DELIVERED, received_at=w.now)), "dlr")
        lease = timedelta(seconds=60)
        (slow,) = w.run(claim_entries_txn, worker="slow", now=w.now, lease=lease, limit=5)
        later = w.now + timedelta(seconds=61)  # the slow worker stalls past its lease
        (fast,) = w.run(claim_entries_txn, worker="fast", now=later, lease=lease, limit=5)
        self.assertEqual(slow.id, fast.id)
        facts = ReceiptFacts(row, "l1", "m-9", "delivered", True, True)
        done = w.run(apply_receipt_txn, entry_id=fast.id, worker="fast", receipt=facts,
                     now=later, retry_at=None)
        late = w.run(apply_receipt_txn, entry_id=slow.id, worker="slow", receipt=facts,
                     now=later, retry_at=None)
        self.assertEqual((done.outcome, late.outcome), ("applied", "lost"))
        self.assertEqual(w.scalar("SELECT count(*) FROM command_events WHERE command_id = :i "
                                  "AND event = 'delivered'", i=command_id), 1)
