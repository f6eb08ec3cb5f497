"""Items an SMPP bind stores are claimed at birth for this process's worker and handed over.

Real PostgreSQL (embedded), the real receiver, batcher, worker and queue
statements; the clock is injected.
"""

from __future__ import annotations

import select
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from blobstore.inbound_queue import Lease, QueueEntry, enqueue_many_txn
from blobstore.messages import NewMessage, insert_messages_txn
from mepl.inbound import InboundReceiver
from mepl.runtime.inbound_worker import InboundWorker
from mepl.runtime.outbound_txn import record_submitted_txn
from mepl.settings import DispatchConfig
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus
from tests.mepl.helpers import SERVER_ID, SERVER_NUMBER, World, one_round

LINGER_S = 0.005


class _Dropped:
    """A worker that takes items and dies before applying them (its process stopped)."""

    name = "gone-worker"

    def __init__(self) -> None:
        self.taken: list[QueueEntry] = []

    def room(self) -> int:
        return 1000

    def take(self, entries: Iterable[QueueEntry]) -> None:
        self.taken.extend(entries)


class HandOverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.worker = self.w.inbound.worker
        self.woken: list[int] = []
        self.receiver = InboundReceiver(runner=self.w.pool, clock=self.w.clock,
                                        wake=lambda: self.woken.append(1), max_rows=50,
                                        hand_over=self.worker)
        self.device_id, _ = self.w.enrol("490154203237518", "+447700900101")

    def submitted(self, n: int) -> list[int]:
        commands = [self.w.queue(self.device_id) for _ in range(n)]
        for ready in self.w.claim():
            self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                       message_ids=[f"m{ready.command_id}"], now=self.w.now)
        return commands

    def receive_receipts(self, receiver: InboundReceiver, commands: list[int]) -> None:
        results: list[Any] = []
        for command_id in commands:
            receiver.on_receipt(DeliveryReceipt(
                channel=Channel.SMPP, link="l1", message_id=f"m{command_id}",
                status=DeliveryStatus.DELIVERED, received_at=self.w.now)
            ).addBoth(results.append)
        self.w.clock.advance(0)  # the batch is written
        self.assertEqual(len(results), len(commands))
        for result in results:
            if isinstance(result, Failure):
                result.raiseException()

    def queue_rows(self) -> list[tuple[Any, ...]]:
        with self.w.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT claimed_by, attempts, state FROM inbound_queue ORDER BY id")]

    def states(self, commands: list[int]) -> list[str]:
        return [str(self.w.scalar("SELECT state FROM commands WHERE id = :i", i=c))
                for c in commands]

    def test_stored_receipts_are_claimed_at_birth_and_applied_without_a_claim(self) -> None:
        self.worker.start()
        self.w.clock.advance(0)  # the first (empty) round
        commands = self.submitted(3)
        self.receive_receipts(self.receiver, commands)
        self.assertEqual(self.queue_rows(), [("test-worker", 1, "pending")] * 3)
        self.assertEqual(self.woken, [])
        self.w.clock.advance(LINGER_S)  # the woken round takes them from memory
        self.assertEqual(self.states(commands), ["delivered"] * 3)
        self.assertEqual(self.queue_rows(), [])
        self.assertEqual(self.worker.counts["inbound_handed_over"], 3)
        self.assertEqual(self.worker.counts["receipt_delivered"], 3)

    def test_a_worker_without_room_leaves_items_to_be_claimed_and_wakes(self) -> None:
        self.worker.start()
        self.w.clock.advance(0)
        self.worker.hand_off_max = 2
        commands = self.submitted(3)
        self.receive_receipts(self.receiver, commands)  # one batch of three: no room
        self.assertEqual(self.queue_rows(), [(None, 0, "pending")] * 3)
        self.assertEqual(self.woken, [1, 1, 1])
        self.w.inbound.drain()
        self.assertEqual(self.states(commands), ["delivered"] * 3)
        self.assertEqual(self.worker.counts["inbound_handed_over"], 0)

    def test_a_stopped_worker_takes_nothing_over(self) -> None:
        self.assertEqual(self.worker.room(), 0)  # never started
        self.worker.start()
        self.assertGreater(self.worker.room(), 0)
        self.worker.stop()
        self.assertEqual(self.worker.room(), 0)

    def test_items_held_by_a_process_that_died_are_claimed_after_their_lease(self) -> None:
        commands = self.submitted(2)
        dead = _Dropped()
        self.receive_receipts(InboundReceiver(runner=self.w.pool, clock=self.w.clock,
                                              wake=lambda: None, hand_over=dead), commands)
        self.assertEqual(len(dead.taken), 2)
        other = InboundWorker(runner=self.w.pool, clock=self.w.clock, server_id=SERVER_ID,
                              config=DispatchConfig(server_number=SERVER_NUMBER),
                              worker="other-worker")
        self.assertEqual(one_round(other), 0)  # the lease is fresh: not taken over
        self.w.clock.advance(DispatchConfig(server_number=SERVER_NUMBER).callback_grace_s + 1)
        self.assertEqual(one_round(other), 2)
        self.assertEqual(self.states(commands), ["delivered"] * 2)
        self.assertEqual(one_round(other), 0)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM command_events WHERE event = 'delivered'"), 2)


class NotifyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        pooled = self.w.engine.raw_connection()
        self.addCleanup(pooled.invalidate)
        self.listener: Any = pooled.dbapi_connection
        self.listener.autocommit = True
        self.listener.cursor().execute("LISTEN mepl_inbound")

    def notified(self) -> int:
        select.select([self.listener], [], [], 0.5)
        self.listener.poll()
        count = len(self.listener.notifies)
        self.listener.notifies.clear()
        return count

    def store(self, lease: Lease | None) -> dict[int, int]:
        def txn(conn: Any) -> dict[int, int]:
            [message_id] = insert_messages_txn(conn, [NewMessage("in", "smpp", "dlr", b"id:x",
                                                                 link="l1")])
            return enqueue_many_txn(conn, [(message_id, "dlr", "l1", "x")], lease=lease)
        return dict(self.w.run(txn))

    def test_only_unclaimed_items_wake_the_workers(self) -> None:
        leased = self.store(Lease("w1", self.w.now))
        self.assertEqual(len(leased), 1)
        self.assertEqual(self.notified(), 0)
        self.assertEqual(self.store(None), {})
        self.assertEqual(self.notified(), 1)

    def test_claimed_at_birth_rows_say_who_holds_them(self) -> None:
        leased = self.store(Lease("w1", self.w.now))
        [(message_id, entry_id)] = leased.items()
        self.assertEqual(self.w.scalar(
            "SELECT claimed_by || ':' || attempts || ':' || message_id FROM inbound_queue "
            "WHERE id = :i", i=entry_id), f"w1:1:{message_id}")
        self.assertLess(abs((self.w.scalar(
            "SELECT claimed_at FROM inbound_queue WHERE id = :i", i=entry_id)
            - self.w.now).total_seconds()), timedelta(seconds=1).total_seconds())
