"""The whole-loop benchmark runs end to end on a tiny fleet and its counts add up.

Not a timing test: it runs ``bench/bench_fanout.py`` with 20 devices against the
test PostgreSQL and checks that the JSON report has every figure and that every
command, reply and alert was counted exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.pg import database_url

ROOT = Path(__file__).resolve().parents[2]
DEVICES = 20


def test_bench_fanout_reports_every_figure_and_its_counts_add_up(tmp_path: Path) -> None:
    report = tmp_path / "fanout.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_fanout.py"), "--devices", str(DEVICES),
         "--runs", "1", "--latency-samples", "2", "--settle", "0.2", "--idle-window", "0.5",
         "--timeout", "60", "--database-url", database_url("postgres"),
         "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    data = json.loads(report.read_text())
    (run,) = data["runs"]
    metrics = run["metrics"]
    expected = {
        "enrol_devices_per_s", "latency_submit_p50_ms", "latency_submit_p99_ms",
        "latency_round_trip_p50_ms", "latency_round_trip_p99_ms", "idle_xact_per_s",
        "idle_mepl_cpu_percent", "fanout_first_submit_s", "fanout_submitted_per_s",
        "fanout_round_trips_per_s", "fanout_xact_per_command", "fanout_cpu_us_mepl",
        "fanout_cpu_us_mepl_1", "fanout_cpu_us_postgres", "fanout_cpu_us_harness",
        "alerts_stored_per_s", "alerts_applied_per_s", "alerts_xact_per_alert",
        "alerts_cpu_us_mepl", "alerts_cpu_us_mepl_1", "alerts_cpu_us_postgres",
        "alerts_cpu_us_harness", "peak_rss_mb_mepl_1", "peak_pss_mb_postgres",
        "peak_rss_mb_postgres_largest", "peak_rss_mb_harness", "fanout_cpu_busy_percent",
        "fanout_ack_p50_ms", "fanout_ack_p99_ms", "alerts_cpu_busy_percent",
        "alerts_ack_p50_ms", "alerts_ack_p99_ms", "fanout_wal_bytes", "fanout_row_writes",
        "alerts_wal_bytes", "alerts_row_writes"}
    assert expected <= set(metrics), expected - set(metrics)
    assert all(metrics[k] is not None for k in expected), metrics
    assert set(data["summary"]) == expected
    assert data["summary"]["fanout_submitted_per_s"]["median"] == metrics[
        "fanout_submitted_per_s"]
    assert 0 < metrics["fanout_cpu_busy_percent"] <= 100
    assert 0 < metrics["alerts_ack_p50_ms"] <= metrics["alerts_ack_p99_ms"]
    # WAL is read at once; table statistics are flushed about every second, longer
    # than this run's settle time, so row counts may still be missing here
    assert metrics["fanout_wal_bytes"] > 0 and metrics["alerts_wal_bytes"] > 0, metrics
    assert metrics["fanout_row_writes"] >= 0 and metrics["alerts_row_writes"] >= 0, metrics
    failed = {name: c for name, c in run["checks"].items() if not c["ok"]}
    assert not failed, failed
    assert run["checks"]["fanout commands done"]["got"] == DEVICES
    assert run["checks"]["alerts applied (security_events)"]["got"] == DEVICES
    # Two timed single commands after the three warm-up ones, all executed once.
    assert len(run["latency_ms"]["to_submit"]) == 2
    assert run["checks"]["handsets executed"]["got"] == DEVICES + 3 + 2
    fanout = run["fanout"]
    assert fanout["states"] == {"done": DEVICES}
    assert fanout["events"]["claim"] == fanout["events"]["reply_ok"] == DEVICES
    assert fanout["series"][-1]["finished"] == DEVICES
    assert run["alerts"]["series"][-1]["applied"] == DEVICES
    assert run["mepl_exit"] == [0]
    assert "medians over 1 run(s)" in done.stdout
