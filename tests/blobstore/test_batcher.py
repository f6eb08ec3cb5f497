from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial import unittest

from blobstore.batcher import MessageBatcher
from blobstore.errors import DuplicateMessageError, StoreUnavailableError
from blobstore.messages import NewMessage
from blobstore.pool import DatabasePool, SyncPool
from tests.support.pg import migrated_database
from tests.support.runners import HeldRunner


def _msg(i: int, **kw: Any) -> NewMessage:
    return NewMessage("in", "smpp", "pdu", bytes([i % 256]) * 160, link="carrier_a", **kw)


class BatchingTests(unittest.TestCase):
    def test_rows_wait_for_the_delay_then_go_in_one_batch(self) -> None:
        runner, clock = HeldRunner(), Clock()
        batcher = MessageBatcher(runner, clock, max_rows=10, max_delay_s=0.005)
        waiters = [batcher.add(_msg(i)) for i in range(3)]
        self.assertEqual(runner.calls, [])
        clock.advance(0.005)
        [(desc, rows, d)] = runner.calls
        self.assertEqual((desc, len(rows)), ("insert_messages", 3))
        self.assertFalse(any(w.called for w in waiters))  # not committed yet
        d.callback([11, 12, 13])
        self.assertEqual([self.successResultOf(w) for w in waiters], [11, 12, 13])

    def test_full_batch_goes_at_once_and_in_flight_batches_are_bounded(self) -> None:
        runner, clock = HeldRunner(), Clock()
        batcher = MessageBatcher(runner, clock, max_rows=2, max_delay_s=1.0, max_in_flight=1)
        waiters = [batcher.add(_msg(i)) for i in range(5)]
        self.assertEqual(len(runner.calls), 1)  # second full batch waits for the first
        self.assertEqual(batcher.pending, 3)
        runner.calls[0][2].callback([1, 2])
        self.assertEqual(len(runner.calls), 2)
        runner.calls[1][2].callback([3, 4])
        self.assertEqual(len(runner.calls), 3)
        runner.calls[2][2].callback([5])
        self.assertEqual([self.successResultOf(w) for w in waiters], [1, 2, 3, 4, 5])

    def test_backlog_beyond_the_cap_is_refused_at_once(self) -> None:
        runner, clock = HeldRunner(), Clock()
        batcher = MessageBatcher(runner, clock, max_rows=1, max_in_flight=1, max_backlog=2)
        batcher.add(_msg(0))  # in flight
        batcher.add(_msg(1))
        batcher.add(_msg(2))
        self.failureResultOf(batcher.add(_msg(3)), StoreUnavailableError)


class StoredBatchTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database())
        self.addCleanup(self.engine.dispose)
        self.clock = Clock()
        self.batcher = MessageBatcher(SyncPool(self.engine), self.clock, max_rows=4)

    def _count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM messages")).scalar_one())

    def test_one_bad_row_fails_alone_and_the_rest_are_stored(self) -> None:
        bad = _msg(1, part_seq=1, part_total=1)
        object.__setattr__(bad, "part_seq", 2)  # past NewMessage's check: the CHECK refuses it
        waiters = [self.batcher.add(_msg(0)), self.batcher.add(bad), self.batcher.add(_msg(2))]
        self.clock.advance(1)
        self.assertIsInstance(self.successResultOf(waiters[0]), int)
        self.failureResultOf(waiters[1], IntegrityError)
        self.assertIsInstance(self.successResultOf(waiters[2]), int)
        self.assertEqual(self._count(), 2)

    def test_duplicate_external_id_fails_with_the_stored_rows_id(self) -> None:
        first = self.batcher.add(_msg(0, external_id="gw-1"))
        second = self.batcher.add(_msg(0, external_id="gw-1"))
        plain = self.batcher.add(_msg(1))
        self.clock.advance(1)
        stored_id = self.successResultOf(first)
        failure = self.failureResultOf(second, DuplicateMessageError)
        self.assertEqual(failure.value.existing_id, stored_id)
        self.successResultOf(plain)
        self.assertEqual(self._count(), 2)

    def test_store_down_fails_every_waiter_with_store_unavailable(self) -> None:
        dead = create_engine("postgresql+psycopg2://postgres@/mepl?host=/nonexistent-dir")
        self.addCleanup(dead.dispose)
        batcher = MessageBatcher(SyncPool(dead, retry_attempts=2), self.clock, max_rows=2)
        waiters = [batcher.add(_msg(i)) for i in range(2)]
        for w in waiters:
            self.failureResultOf(w, StoreUnavailableError)

    def test_flush_writes_what_is_pending_now(self) -> None:
        waiter = self.batcher.add(_msg(0))
        done = self.batcher.flush()
        self.successResultOf(done)
        self.successResultOf(waiter)
        self.assertEqual(self._count(), 1)


class CommitBeforeAcknowledgeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database(), pool_size=3)
        self.pool = DatabasePool(self.engine, reactor, max_threads=2)
        self.pool.start()
        self.addCleanup(self.engine.dispose)
        self.addCleanup(self.pool.stop)

    @inlineCallbacks
    def test_each_deferred_fires_only_once_its_row_is_visible_to_others(self) -> Any:
        batcher = MessageBatcher(self.pool, reactor, max_rows=16, max_delay_s=0.002)
        observer = self.engine.connect()
        self.addCleanup(observer.close)
        seen: list[bool] = []

        def check(message_id: int) -> int:
            # A separate connection sees the row: the transaction has committed.
            row = observer.execute(text("SELECT id FROM messages WHERE id = :i"),
                                   {"i": message_id}).first()
            observer.rollback()
            seen.append(row is not None)
            return message_id

        ids = yield gatherResults([batcher.add(_msg(i)).addCallback(check) for i in range(60)])
        self.assertEqual(len(set(ids)), 60)
        self.assertEqual(seen, [True] * 60)
        self.assertGreaterEqual(batcher.batches_written, 4)  # 60 rows, at most 16 a batch
        self.assertLessEqual(batcher.batches_written, 60 // 2)

