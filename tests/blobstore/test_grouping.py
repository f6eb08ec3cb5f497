"""Group commit of independent transactions: one commit, each function in its savepoint."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, create_engine, text
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blobstore.grouping import GroupingRunner
from blobstore.pool import SyncPool
from tests.support.pg import migrated_database


class CountingPool(SyncPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.descs: list[str] = []

    def run_interaction(self, desc: str, fn_txn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.descs.append(desc)
        return super().run_interaction(desc, fn_txn, *args, **kwargs)


def add_group(conn: Connection, name: str) -> int:
    return int(conn.execute(text("INSERT INTO groups (name) VALUES (:n) RETURNING id"),
                            {"n": name}).scalar_one())


class GroupingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database("grp"))
        self.addCleanup(self.engine.dispose)
        self.pool = CountingPool(self.engine)
        self.pool.start()
        self.clock = Clock()
        self.group = GroupingRunner(self.pool, self.clock, max_calls=50)

    def names(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT name FROM groups ORDER BY id"))]

    def test_calls_of_one_turn_share_one_transaction_and_get_their_own_results(self) -> None:
        waiters = [self.group.run_interaction("add", add_group, f"g{i}") for i in range(10)]
        self.assertEqual(self.pool.descs, [])
        self.clock.advance(0)
        self.assertEqual(self.pool.descs, ["group[10]"])
        ids = [self.successResultOf(w) for w in waiters]
        self.assertEqual(len(set(ids)), 10)
        self.assertEqual(self.names(), [f"g{i}" for i in range(10)])

    def test_a_call_that_fails_is_rolled_back_alone(self) -> None:
        def add_then_fail(conn: Connection) -> None:
            add_group(conn, "half-done")
            raise ValueError("boom")

        good = self.group.run_interaction("add", add_group, "kept")
        bad = self.group.run_interaction("fail", add_then_fail)
        duplicate = self.group.run_interaction("dup", add_group, "kept")  # unique violation
        after = self.group.run_interaction("add", add_group, "also-kept")
        self.clock.advance(0)
        self.successResultOf(good)
        self.failureResultOf(bad, ValueError)
        self.failureResultOf(duplicate)
        self.successResultOf(after)
        self.assertEqual(self.names(), ["kept", "also-kept"])

    def test_a_full_group_is_written_at_once(self) -> None:
        for i in range(50):
            self.group.run_interaction("add", add_group, f"n{i}")
        self.assertEqual(self.pool.descs, ["group[50]"])

    def test_when_the_transaction_fails_every_caller_is_told(self) -> None:
        self.pool.stop()
        self.engine.dispose()
        broken = GroupingRunner(SyncPool(create_engine(
            "postgresql+psycopg2://postgres@/x?host=/nonexistent")), self.clock)
        waiters = [broken.run_interaction("add", add_group, f"x{i}") for i in range(3)]
        self.clock.advance(0)
        for waiter in waiters:
            self.failureResultOf(waiter)
