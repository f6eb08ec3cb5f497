"""The set-based apply of receipts and replies does what applying them one at a time does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from twisted.trial.unittest import SynchronousTestCase

from blobstore.inbound_queue import claim_entries_txn
from mepl.runtime.inbound_batch import VerifiedReply, apply_receipts_txn, apply_replies_txn
from mepl.runtime.inbound_rows import part_row, receipt_row
from mepl.runtime.inbound_txn import ReceiptFacts, store_inbound_txn
from mepl.runtime.outbound_txn import housekeeping_txn, record_submitted_txn
from signing.alerts import make_alert
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus
from tests.mepl.helpers import SERVER_NUMBER, World

NUMBERS = ["+447700900101", "+447700900102", "+447700900103"]
IMEIS = ["490154203237518", "356938035643809", "353456789012348"]


class BatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.devices = [self.w.enrol(imei, number) for imei, number in zip(IMEIS, NUMBERS,
                                                                             strict=True)]

    def sent(self, device: int, opcode: str = "lock_status", **args: Any) -> tuple[int, bytes]:
        command_id = self.w.queue(self.devices[device][0], opcode, **args)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                   message_ids=[f"m{command_id}"], now=self.w.now)
        return command_id, ready.frame

    def store_receipt(self, smsc_id: str, status: str) -> None:
        receipt = DeliveryReceipt(channel=Channel.SMPP, link="l1", message_id=smsc_id,
                                  status=DeliveryStatus(status), received_at=self.w.now)
        self.w.run(store_inbound_txn, receipt_row(receipt), "dlr")

    def store_reply(self, device: int, frame: bytes) -> int:
        handset = self.devices[device][1]
        reply = handset.receive(frame, SERVER_NUMBER, self.w.clock.seconds())
        return int(self.w.run(store_inbound_txn,
                              part_row(self.w.mo(NUMBERS[device], reply.reply_frame)), "mo"))

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.w.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]

    def state(self, command_id: int) -> str:
        return str(self.w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id))

    def test_receipts_in_one_batch_move_each_command_as_one_at_a_time_would(self) -> None:
        delivered, _ = self.sent(0)
        enroute, _ = self.sent(1)
        undeliverable, _ = self.sent(2)
        twice, _ = self.sent(0)
        self.store_receipt(f"m{delivered}", "delivered")
        self.store_receipt(f"m{enroute}", "enroute")
        self.store_receipt(f"m{undeliverable}", "undeliverable")
        self.store_receipt(f"m{twice}", "enroute")
        self.store_receipt(f"m{twice}", "delivered")   # same command, same batch
        self.store_receipt("m-not-yet-submitted", "delivered")
        self.assertEqual(self.w.inbound.drain(), 6)
        self.assertEqual(self.state(delivered), "delivered")
        self.assertEqual(self.state(enroute), "sent")
        self.assertEqual(self.state(undeliverable), "queued")
        self.assertEqual(self.state(twice), "delivered")
        self.assertEqual(self.rows("SELECT last_error FROM commands WHERE id = :i",
                                   i=undeliverable), [("delivery undeliverable",)])
        # one event per change, with the receipt's details
        self.assertEqual(self.rows(
            "SELECT event, details ->> 'status' FROM command_events WHERE command_id = :i "
            "AND event NOT IN ('create', 'claim', 'submitted') ORDER BY id", i=twice),
            [("delivered", "delivered")])
        # every receipt row is linked to its command; each part has its last status
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE kind = 'dlr' AND command_id IS NOT NULL"), 5)
        self.assertEqual(self.rows(
            "SELECT meta ->> 'status' FROM messages WHERE kind = 'mt' AND command_id = :i",
            i=twice), [("delivered",)])
        # the early receipt waits for its submit
        self.assertEqual(self.rows("SELECT state, kind FROM inbound_queue"), [("waiting", "dlr")])
        self.assertEqual(self.w.inbound.worker.counts["inbound_batch_fallbacks"], 0)

    def test_replies_in_one_batch_finish_their_commands_once_with_their_consequences(
            self) -> None:
        lock, lock_frame = self.sent(0, "lock")
        query, query_frame = self.sent(1)
        self.store_reply(0, lock_frame)
        self.store_reply(1, query_frame)
        self.store_reply(1, query_frame)  # the handset sent its reply twice
        self.assertEqual(self.w.inbound.drain(), 3)
        self.assertEqual((self.state(lock), self.state(query)), ("done", "done"))
        self.assertEqual(self.w.scalar("SELECT state FROM devices WHERE id = :i",
                                       i=self.devices[0][0]), "locked")
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM command_events WHERE command_id = :i AND event = 'reply_ok'",
            i=query), 1)
        self.assertEqual(self.w.inbound.worker.counts["replies"], 2)
        self.assertEqual(self.w.inbound.worker.counts["replies_duplicate"], 1)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE kind = 'mo' AND command_id IS NOT NULL"), 3)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM devices WHERE last_seen_at IS NOT NULL"), 2)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 0)

    def test_a_forged_reply_in_a_batch_is_rejected_and_the_others_applied(self) -> None:
        query, frame = self.sent(0)
        self.store_reply(0, frame)
        other, other_frame = self.sent(1)
        # device 1's reply with its signature altered on the way: it does not verify
        reply = self.devices[1][1].receive(other_frame, SERVER_NUMBER, self.w.clock.seconds())
        forged = reply.reply_frame[:-1] + bytes([reply.reply_frame[-1] ^ 0x01])
        self.w.run(store_inbound_txn, part_row(self.w.mo(NUMBERS[1], forged)), "mo")
        self.assertEqual(self.w.inbound.drain(), 2)
        self.assertEqual((self.state(query), self.state(other)), ("done", "sent"))
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE error LIKE 'rejected:%'"), 1)

    def claimed(self, worker: str = "batch") -> list[Any]:
        return list(self.w.run(claim_entries_txn, worker=worker, now=self.w.now,
                               lease=timedelta(seconds=30), limit=50))

    def test_a_reply_verified_with_a_key_since_replaced_writes_nothing_and_asks_for_retry(
            self) -> None:
        query, frame = self.sent(0)
        self.store_reply(0, frame)
        (entry,) = self.claimed()
        stale = VerifiedReply(entry.id, (entry.message_id,), self.devices[0][0], b"\x01" * 32,
                              query, True, {"status": "ok", "items": []})
        (outcome,) = self.w.run(apply_replies_txn, worker="batch", replies=[stale],
                                now=self.w.now)
        self.assertEqual((outcome.outcome, outcome.detail), ("retry", "device key changed"))
        self.assertEqual(self.state(query), "sent")
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 1)

    def test_items_taken_over_by_another_worker_are_lost_to_this_batch(self) -> None:
        command_id, _ = self.sent(0)
        self.store_receipt(f"m{command_id}", "delivered")
        (entry,) = self.claimed(worker="other")
        facts = ReceiptFacts(entry.message_id, "l1", f"m{command_id}", "delivered", True, True)
        (outcome,) = self.w.run(apply_receipts_txn, worker="batch", receipts=[(entry.id, facts)],
                                now=self.w.now, retry_at=None)
        self.assertEqual(outcome.outcome, "lost")
        self.assertEqual(self.state(command_id), "sent")

    def store_alert(self, device: int, name: str, **args: Any) -> bytes:
        frame = self.devices[device][1].alert(make_alert(name, **args), self.w.clock.seconds())
        self.store_frame(device, frame)
        return frame

    def store_frame(self, device: int, frame: bytes) -> None:
        self.w.run(store_inbound_txn, part_row(self.w.mo(NUMBERS[device], frame)), "mo")

    def test_alerts_in_one_batch_are_applied_once_each_and_a_replay_is_refused(self) -> None:
        self.store_alert(0, "invalid_sim")
        replayed = self.store_alert(1, "invalid_sim")
        self.store_frame(1, replayed)  # the same frame again: its counter is spent
        self.store_alert(2, "sim_changed", imsi="234150000000009")
        self.assertEqual(self.w.inbound.drain(), 4)
        self.assertEqual(self.rows(
            "SELECT d.imei, e.kind FROM security_events e JOIN devices d ON d.id = e.device_id "
            "WHERE e.kind LIKE 'alert:%' ORDER BY d.imei"),
            sorted([(IMEIS[0], "alert:invalid_sim"), (IMEIS[1], "alert:invalid_sim"),
                    (IMEIS[2], "alert:sim_changed")]))
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE error = 'rejected: replayed'"), 1)
        # the SIM change took the one-item path in the same batch: identity and LOCK
        self.assertEqual(self.w.scalar("SELECT imsi FROM devices WHERE imei = :i", i=IMEIS[2]),
                         "234150000000009")
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM commands WHERE opcode = 'lock' "
            "AND requested_by = 'policy:sim_changed'"), 1)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM devices WHERE counter_hwm > 0"), 3)
        # heard from: the window and the last-seen time written together
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM devices WHERE last_seen_at = :now", now=self.w.now), 3)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 0)
        self.assertEqual(self.w.inbound.worker.counts["inbound_batch_fallbacks"], 0)

    def test_an_alert_never_moves_last_seen_back(self) -> None:
        later = self.w.now + timedelta(hours=1)
        with self.w.engine.begin() as conn:
            conn.execute(text("UPDATE devices SET last_seen_at = :t"), {"t": later})
        self.store_alert(0, "invalid_sim")
        self.assertEqual(self.w.inbound.drain(), 1)
        self.assertEqual(self.w.scalar("SELECT last_seen_at FROM devices WHERE imei = :i",
                                       i=IMEIS[0]), later)
        self.assertEqual(self.w.scalar(
            "SELECT counter_hwm FROM devices WHERE imei = :i", i=IMEIS[0]) > 0, True)


    def test_housekeeping_wakes_a_receipt_left_waiting_for_a_submit_recorded_meanwhile(
            self) -> None:
        command_id, _ = self.sent(0)
        self.store_receipt(f"m{command_id}", "delivered")
        # As when the worker looked for the part just before the submit's
        # transaction committed, and that transaction's wake-up ran before the
        # receipt was committed: the receipt waits although its part exists.
        with self.w.engine.begin() as conn:
            conn.execute(text("UPDATE inbound_queue SET state = 'waiting', kind = 'dlr'"))
        self.assertEqual(self.w.inbound.drain(), 0)
        done = self.w.run(housekeeping_txn, now=self.w.now, stale_before=self.w.now,
                          unanswered_before=self.w.now - timedelta(days=1), max_attempts=5,
                          receipts_before=self.w.now - timedelta(days=1))
        self.assertEqual((done.receipts_woken, done.receipts_dropped), (1, 0))
        self.assertEqual(self.w.inbound.drain(), 1)
        self.assertEqual(self.state(command_id), "delivered")
