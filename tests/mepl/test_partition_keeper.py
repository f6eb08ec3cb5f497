"""The service keeps the message partitions months ahead, and retries when it cannot."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blobstore.partitions import add_months, month_start, months_ahead_txn, partition_name
from blobstore.pool import SyncPool
from mepl.runtime.partitions import KEEP_INTERVAL_S, RETRY_INTERVAL_S, PartitionKeeper
from tests.mepl.faults import FaultyRunner
from tests.support.pg import migrated_database


class PartitionKeeperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database("keep"))
        self.addCleanup(self.engine.dispose)
        self.pool = SyncPool(self.engine)
        self.pool.start()
        with self.engine.connect() as conn:
            self.now = conn.execute(text("SELECT now()")).scalar_one()

    def _ahead(self, now: datetime) -> int:
        with self.engine.connect() as conn:
            return months_ahead_txn(conn, now=now)

    def test_the_keeper_adds_the_next_months_as_its_clock_moves_on(self) -> None:
        clock = Clock()
        later = add_months(month_start(self.now), 2)
        clock.advance(later.timestamp())
        keeper = PartitionKeeper(self.pool, clock)
        keeper.start()
        this = month_start(self.now)
        self.assertEqual(keeper.created, [partition_name(add_months(this, n)) for n in (4, 5)])
        self.assertEqual(self._ahead(later), 3)
        # The next turn is the interval later, and finds nothing to do.
        clock.advance(KEEP_INTERVAL_S)
        self.assertEqual(len(keeper.created), 2)
        keeper.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_failed_check_is_retried_sooner_than_the_interval(self) -> None:
        clock = Clock()
        clock.advance(add_months(month_start(self.now), 1).timestamp())
        runner = FaultyRunner(self.pool, fail_at=1)
        keeper = PartitionKeeper(runner, clock)
        keeper.start()
        self.assertEqual((runner.injected, keeper.created), (
            ["before:ensure message partitions"], []))
        [call] = clock.getDelayedCalls()
        self.assertEqual(call.getTime() - clock.seconds(), RETRY_INTERVAL_S)
        clock.advance(RETRY_INTERVAL_S)
        self.assertEqual(len(keeper.created), 1)
        keeper.stop()

    def test_the_keeper_reads_the_clock_in_utc(self) -> None:
        clock = Clock()
        clock.advance(datetime(2031, 1, 31, 23, 30, tzinfo=UTC).timestamp())
        keeper = PartitionKeeper(self.pool, clock, months_ahead=0)
        keeper.start()
        self.assertEqual(keeper.created[-1], "messages_part_2031_01")
        keeper.stop()
