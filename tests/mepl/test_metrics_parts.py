"""The parts of ``/metrics`` on a fake clock: reactor lag, transaction timing labels,
the state gauges, and the plans of their statements (an index, never a Seq Scan)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import create_engine, event, text
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blobstore.operations import operational_counts_txn
from blobstore.pool import SyncPool
from mepl.health import HealthChecks
from mepl.metrics import (
    MetricsConfig,
    ReactorLag,
    StateGauges,
    TimedRunner,
    transaction_label,
)
from tests.mepl.helpers import World
from tests.mepl.test_query_plans import seq_scan_offenders


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    value = registry.get_sample_value(name, labels)
    return None if value is None else float(value)


class ReactorLagTests(SynchronousTestCase):
    def test_the_lag_is_how_late_the_timer_ran(self) -> None:
        clock, registry = Clock(), CollectorRegistry()
        lag = ReactorLag(clock, registry, 0.5)
        lag.start()
        clock.advance(0.5)  # on time
        self.assertEqual(lag.last, 0.0)
        clock.advance(0.5 + 2.0)  # the reactor was blocked for 2 s
        self.assertAlmostEqual(lag.last, 2.0)
        self.assertEqual(sample(registry, "mepl_reactor_lag_seconds_count"), 2.0)
        self.assertAlmostEqual(sample(registry, "mepl_reactor_lag_last_seconds") or 0, 2.0)
        lag.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class TransactionTimingTests(SynchronousTestCase):
    def test_batch_suffixes_are_stripped_so_labels_stay_bounded(self) -> None:
        self.assertEqual(transaction_label("apply_replies[37]"), "apply_replies")
        self.assertEqual(transaction_label("claim_and_seal"), "claim_and_seal")
        self.assertEqual(transaction_label("x[1] y"), "x[1] y")

    def test_each_transaction_is_observed_under_its_label_success_or_failure(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        clock, registry = Clock(), CollectorRegistry()
        runner = TimedRunner(SyncPool(w.engine), clock, registry)
        for n in (1, 2, 3):
            runner.run_interaction(f"probe[{n}]", lambda conn: conn.execute(
                text("SELECT 1")).scalar())
        failed: list[Any] = []
        runner.run_interaction("broken", lambda conn: conn.execute(
            text("SELECT * FROM no_such_table"))).addErrback(failed.append)
        self.assertEqual(len(failed), 1)
        self.assertEqual(sample(registry, "mepl_db_transaction_seconds_count", desc="probe"),
                         3.0)
        self.assertEqual(sample(registry, "mepl_db_transaction_seconds_count", desc="broken"),
                         1.0)


class StateGaugeTests(SynchronousTestCase):
    def test_commands_by_state_and_the_inbound_queue_are_read_every_interval(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device, _ = w.enrol("490154203237518", "+447700900100")
        w.queue(device)
        w.queue(device)
        clock, registry = Clock(), CollectorRegistry()
        gauges = StateGauges(SyncPool(w.engine), clock, registry, 15.0)
        gauges.start()
        self.assertEqual(sample(registry, "mepl_commands", state="queued"), 2.0)
        self.assertEqual(sample(registry, "mepl_commands", state="done"), 0.0)
        w.claim()
        with w.engine.begin() as conn:
            message = conn.execute(text(
                "INSERT INTO messages (direction, channel, kind, payload, sha256, created_at) "
                "VALUES ('in', 'smpp', 'mo', '', sha256(''), now() - interval '90 seconds') "
                "RETURNING id")).scalar()
            conn.execute(text("INSERT INTO inbound_queue (message_id, kind, state, created_at) "
                              "VALUES (:m, 'mo', 'failed', now() - interval '90 seconds')"),
                         {"m": message})
        clock.advance(14)
        self.assertEqual(sample(registry, "mepl_commands", state="queued"), 2.0)
        clock.advance(1)
        self.assertEqual(sample(registry, "mepl_commands", state="queued"), 0.0)
        self.assertEqual(sample(registry, "mepl_commands", state="sending"), 2.0)
        self.assertEqual(sample(registry, "mepl_inbound_queue_depth", state="failed"), 1.0)
        self.assertEqual(sample(registry, "mepl_inbound_queue_depth", state="pending"), 0.0)
        age = sample(registry, "mepl_inbound_queue_oldest_age_seconds", state="failed") or 0
        self.assertTrue(85 < age < 600, age)
        self.assertIn(b'mepl_commands{state="expired"} 0.0', generate_latest(registry))
        self.assertEqual(sample(registry, "mepl_messages_partition_months_ahead"), 3.0)
        self.assertEqual(sample(registry, "mepl_messages_default_partition_rows"), 0.0)
        gauges.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_the_gauge_statements_use_indexes_not_sequential_scans(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        captured: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any,
                    context: Any, executemany: bool) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                captured.append((statement, parameters))

        event.listen(w.engine, "before_cursor_execute", capture)
        w.run(operational_counts_txn)
        event.remove(w.engine, "before_cursor_execute", capture)
        # commands, one per inbound state, months of partitions ahead, default partition
        self.assertEqual(len(captured), 6)
        offenders = seq_scan_offenders(w.engine, captured)
        self.assertEqual(offenders, [])


class LivenessTests(SynchronousTestCase):
    def test_healthz_fails_while_the_last_lag_is_above_max_lag(self) -> None:
        clock, registry = Clock(), CollectorRegistry()
        lag = ReactorLag(clock, registry, 0.5)
        engine = create_engine("postgresql+psycopg2://nobody@/none?host=/nonexistent")
        checks = HealthChecks(reactor=clock, engine=engine, lag=lag,
                              config=MetricsConfig(port=1, max_lag_s=1.0),
                              channels=dict, http_senders=list, loops=dict)
        self.addCleanup(checks.close)
        lag.start()
        clock.advance(0.5)
        self.assertEqual(checks.live()[0], True)
        clock.advance(0.5 + 3.0)  # blocked for 3 s
        ok, body = checks.live()
        self.assertEqual((ok, body["status"]), (False, "unhealthy"))
        self.assertEqual(body["checks"]["reactor"]["lag_s"], 3.0)
        clock.advance(0.5)  # responsive again
        self.assertEqual(checks.live()[0], True)
        lag.stop()
