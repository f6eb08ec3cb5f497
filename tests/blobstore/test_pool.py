from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.trial import unittest

from blobstore.errors import StoreUnavailableError
from blobstore.pool import DatabasePool, SyncPool, is_transient
from tests.support.pg import admin_execute, migrated_database


class _PgError(Exception):
    def __init__(self, pgcode: str | None) -> None:
        super().__init__(f"pgcode {pgcode}")
        self.pgcode = pgcode


def _operational(pgcode: str | None) -> OperationalError:
    return OperationalError("SELECT 1", {}, _PgError(pgcode))


class DatabasePoolTests(unittest.TestCase):
    def setUp(self) -> None:
        # No pre-ping, as in production.
        self.engine = create_engine(migrated_database(), pool_size=2)
        self.pool = DatabasePool(self.engine, reactor, max_threads=2, retry_backoff_s=0.001)
        self.pool.start()
        self.addCleanup(self.engine.dispose)
        self.addCleanup(self.pool.stop)

    @inlineCallbacks
    def test_slow_query_leaves_the_reactor_turning(self) -> Any:
        ticks: list[float] = []
        loop = LoopingCall(lambda: ticks.append(reactor.seconds()))
        loop.clock = reactor
        loop.start(0.01)
        try:
            started = reactor.seconds()
            result = yield self.pool.run_interaction(
                "sleep", lambda conn: conn.execute(text("SELECT 42 FROM pg_sleep(0.5)")).scalar())
            elapsed = reactor.seconds() - started
        finally:
            loop.stop()
        self.assertEqual(result, 42)
        self.assertGreaterEqual(elapsed, 0.5)
        # 50 ticks would be perfect.  Had the query blocked the reactor there
        # would be one gap of >= 0.5 s; a loaded machine still ticks often.
        self.assertGreaterEqual(len(ticks), 10)
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        self.assertLess(max(gaps), 0.4)

    @inlineCallbacks
    def test_whole_function_runs_in_one_transaction_that_rolls_back_on_error(self) -> Any:
        def insert_then_fail(conn: Connection) -> None:
            conn.execute(text("INSERT INTO groups (name) VALUES ('half-done')"))
            raise ValueError("boom")

        with self.assertRaises(ValueError):
            yield self.pool.run_interaction("fail", insert_then_fail)
        count = yield self.pool.run_interaction(
            "count", lambda conn: conn.execute(text("SELECT count(*) FROM groups")).scalar())
        self.assertEqual(count, 0)

    @inlineCallbacks
    def test_connection_killed_by_the_server_is_recovered(self) -> Any:
        def backend_pid(conn: Connection) -> int:
            return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

        pids = yield self.pool.run_interaction("pid", backend_pid)
        admin_execute(f"SELECT pg_terminate_backend({pids})")
        again = yield self.pool.run_interaction("pid", backend_pid)
        self.assertNotEqual(again, pids)

    def test_unreachable_database_fails_with_store_unavailable(self) -> Any:
        dead = create_engine("postgresql+psycopg2://postgres@/mepl?host=/nonexistent-dir")
        pool = DatabasePool(dead, reactor, max_threads=1, retry_attempts=2,
                            retry_backoff_s=0.001)
        pool.start()
        self.addCleanup(pool.stop)
        d = pool.run_interaction("ping", lambda conn: conn.execute(text("SELECT 1")).scalar())
        failed: Deferred[StoreUnavailableError] = self.assertFailure(d, StoreUnavailableError)
        return failed.addCallback(lambda exc: self.assertEqual(exc.attempts, 2))

    def test_pool_that_is_not_started_refuses_work(self) -> Any:
        pool = DatabasePool(self.engine, reactor)
        return self.assertFailure(pool.run_interaction("x", lambda conn: 1), RuntimeError)


class SyncPoolTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database())
        self.addCleanup(self.engine.dispose)

    def test_serialization_failures_are_retried_until_success(self) -> None:
        calls: list[int] = []

        def flaky(conn: Connection, value: int) -> int:
            calls.append(value)
            if len(calls) < 3:
                raise _operational("40001")
            return value * 2

        d = SyncPool(self.engine, retry_attempts=3).run_interaction("flaky", flaky, 21)
        self.assertEqual(self.successResultOf(d), 42)
        self.assertEqual(len(calls), 3)

    def test_retries_are_bounded_and_end_in_store_unavailable(self) -> None:
        calls: list[int] = []

        def deadlocks(conn: Connection) -> None:
            calls.append(1)
            raise _operational("40P01")

        d = SyncPool(self.engine, retry_attempts=4).run_interaction("deadlock", deadlocks)
        failure = self.failureResultOf(d, StoreUnavailableError)
        self.assertIn("deadlock: store unavailable after 4 attempt(s)", str(failure.value))
        self.assertEqual(len(calls), 4)

    def test_data_errors_are_not_retried(self) -> None:
        calls: list[int] = []

        def duplicate(conn: Connection) -> None:
            calls.append(1)
            conn.execute(text("INSERT INTO groups (name) VALUES ('a'), ('a')"))

        d = SyncPool(self.engine).run_interaction("dup", duplicate)
        self.failureResultOf(d, IntegrityError)
        self.assertEqual(len(calls), 1)

    def test_live_result_objects_are_refused(self) -> None:
        d = SyncPool(self.engine).run_interaction("leak", lambda c: c.execute(text("SELECT 1")))
        self.failureResultOf(d, TypeError)

    def test_transient_classification(self) -> None:
        self.assertTrue(is_transient(_operational("40001")))
        self.assertTrue(is_transient(_operational(None)))
        self.assertFalse(is_transient(_operational("57014")))  # statement timeout
        self.assertFalse(is_transient(ValueError("x")))
