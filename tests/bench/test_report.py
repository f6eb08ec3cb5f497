"""The benchmark report: aggregation, targets, charts and README from harness output.

Not a timing test.  ``tests/bench/data/report-raw/`` holds the harnesses' own
output (envelopes written by ``bench/report.py``) from a run at tiny sizes (20
and 40 devices, 200 queued commands); the report is rebuilt from it
(``--from-raw``, the same aggregation and chart code a full run uses) and
checked against its JSON schema.  The new deep-queue harness runs for real,
at a tiny size.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

from tests.support.pg import database_url

ROOT = Path(__file__).resolve().parents[2]
RAW = Path(__file__).resolve().parent / "data" / "report-raw"
PNG = b"\x89PNG\r\n\x1a\n"


def load_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_report"] = module
    spec.loader.exec_module(module)
    return module


report = load_report()


def fanout_envelope(name: str, devices: int, processes: int,
                    runs: list[dict[str, float]]) -> dict[str, Any]:
    return {"name": name, "title": name, "command": f"python bench/bench_fanout.py ({name})",
            "returncode": 0, "seconds": 1.0, "load_before": [1.0, 1.0, 1.0],
            "load_after": [1.5, 1.0, 1.0], "data": {
                "options": {"devices": devices, "processes": processes},
                "runs": [{"run": k + 1, "metrics": m, "checks": {
                    "fanout commands done": {"got": devices, "expected": devices, "ok": True}}}
                    for k, m in enumerate(runs)]}}


def test_report_from_canned_harness_output_writes_valid_json_three_charts_and_readme(
        tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py"), "--out", str(out),
         "--from-raw", str(RAW)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, report.REPORT_SCHEMA)
    assert [h["name"] for h in data["harnesses"]] == [
        "fanout_base_1p", "fanout_base_2p", "fanout_big", "latency", "http", "queued"]
    assert all(h["failed_checks"] == [] for h in data["harnesses"]), data["harnesses"]
    assert data["machine"]["cpus"] >= 1 and data["machine"]["postgresql"]
    figures = {f["key"]: f for f in data["figures"]}
    for key in ("big_submitted_per_s", "big_round_trips_per_s", "big_peak_rss_mepl_mb",
                "base_1p_mo_verified_per_s", "base_2p_submitted_per_s",
                "latency_submit_p99_ms", "http_callbacks_per_s", "queued_peak_rss_mepl_mb",
                "queued_rss_claim_mb"):
        assert figures[key]["median"] is not None and figures[key]["median"] > 0, key
    p99 = figures["latency_submit_p99_ms"]
    assert p99["target"] == {"op": "<", "value": 20, "source": "issue 9"}
    assert p99["verdict"] == ("met" if p99["median"] < 20 else "missed")
    assert data["charts"] == ["throughput.png", "latency.png", "memory.png"]
    for chart in data["charts"]:
        content = (out / chart).read_bytes()
        assert content.startswith(PNG) and len(content) > 10_000, chart
    readme = (out / "README.md").read_text()
    assert f"python bench/report.py --out {out} --from-raw {RAW}" in readme
    assert readme.count("\n| ") == len(data["figures"]) + len(data["harnesses"]) + 2
    assert "![memory.png](memory.png)" in readme
    # The envelopes are copied beside the report, so it can be rebuilt from its own raw/.
    assert sorted(p.name for p in (out / "raw").glob("*.json")) == sorted(
        [p.name for p in RAW.glob("*.json") if p.name != "machine.json"] + ["machine.json"])


def test_report_figures_carry_median_spread_and_the_verdict_of_their_target() -> None:
    envelopes = {
        "fanout_big": fanout_envelope("fanout_big", 100_000, 2, [
            {"fanout_submitted_per_s": s, "fanout_round_trips_per_s": 1600.0,
             "fanout_xact_per_command": 0.6, "peak_rss_mb_mepl_1": 150.0,
             "peak_rss_mb_mepl_2": rss, "peak_pss_mb_postgres": 300.0}
            for s, rss in ((2900.0, 190.0), (3100.0, 210.0), (3500.0, 205.0))]),
    }
    figures = {f["key"]: f for f in report.figures(envelopes)}
    submitted = figures["big_submitted_per_s"]
    assert (submitted["median"], submitted["min"], submitted["max"], submitted["runs"]) == (
        3100.0, 2900.0, 3500.0, 3)
    assert submitted["verdict"] == "met"
    assert figures["big_round_trips_per_s"]["verdict"] == "met"
    assert figures["big_xact_per_command"]["verdict"] == "met"
    rss = figures["big_peak_rss_mepl_mb"]  # the largest process of each run
    assert (rss["median"], rss["verdict"]) == (205.0, "missed")
    assert "100,000" in submitted["label"] and "2 process" in submitted["label"]
    assert all(f["harness"] == "fanout_big" for f in figures.values())


def test_report_names_a_harness_without_output_and_its_figures_are_not_measured() -> None:
    failed = {"name": "latency", "title": "latency", "command": "python x", "returncode": 1,
              "seconds": 2.0, "load_before": [1.0, 1.0, 1.0], "load_after": [1.0, 1.0, 1.0],
              "data": None}
    done = report.aggregate({"latency": failed}, {}, "python bench/report.py", True, {})
    (harness,) = done["harnesses"]
    assert harness["failed_checks"] == ["no JSON output (see the harness's log)"]
    p99 = next(f for f in done["figures"] if f["key"] == "latency_submit_p99_ms")
    assert (p99["median"], p99["runs"], p99["verdict"]) == (None, 0, "not measured")


def test_report_commands_never_show_a_database_password() -> None:
    argv = ["--out", "x", "--database-url", "postgresql://mepl:s3cret@db:5432/postgres"]
    assert report.redacted(argv) == [
        "--out", "x", "--database-url", "postgresql://mepl:***@db:5432/postgres"]


def test_bench_queued_samples_memory_while_starting_claiming_and_idling(
        tmp_path: Path) -> None:
    out = tmp_path / "queued.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_queued.py"), "--queued", "200",
         "--fleet", "100", "--start-window", "1.5", "--claim-window", "3",
         "--idle-window", "1", "--database-url", database_url("postgres"),
         "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False)
    output = done.stdout + done.stderr
    assert out.exists(), output
    data = json.loads(out.read_text())
    assert (data["queued"], data["fleet"], data["fanouts"]) == (200, 100, 2)
    assert [p["name"] for p in data["phases"]] == ["start", "claim", "idle"]
    assert {s["phase"] for s in data["series"]} == {"start", "claim", "idle"}
    assert data["checks"]["link bound in the claim phase"]["ok"], output
    assert data["checks"]["commands submitted in the claim phase"]["ok"], output
    metrics = data["metrics"]
    for key in ("rss_mb_start_max", "rss_mb_claim_max", "rss_mb_idle_max", "peak_rss_mb_mepl",
                "peak_pss_mb_postgres"):
        assert metrics[key] is not None and metrics[key] > 10, (key, metrics)
    assert metrics["peak_rss_mb_mepl"] >= metrics["rss_mb_claim_max"] - 1
    # Nothing was sent before the SMSC listened: the start phase claims nothing.
    assert all(s["smsc_accepted"] == 0 for s in data["series"] if s["phase"] == "start")
    assert sum(data["states_after"].values()) == 200
    assert data["states_after"].get("queued", 0) < 200
    assert done.returncode == (0 if all(c["ok"] for c in data["checks"].values()) else 1)


@pytest.mark.parametrize("bad", [["--runs", "0"], ["--queued", "-1"]])
def test_report_refuses_sizes_below_one(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        report.parse_args(["--out", "x", *bad])


def test_rates_skip_samples_without_the_key_and_measure_between_those_with_it() -> None:
    # Progress counts are budgeted, so most samples carry only the harness's own figures.
    series = [{"t": 0.0, "done": 0}, {"t": 0.2, "smsc_accepted": 5},
              {"t": 0.4, "smsc_accepted": 9}, {"t": 1.0, "done": 50},
              {"t": 1.2, "smsc_accepted": 30}, {"t": 2.0, "done": 150}]
    times, rates = report._rates(series, "done")
    assert times == [1.0, 2.0]
    # Each rate runs from the newest count at least a window (1 s) older.
    assert rates == pytest.approx([50.0, 75.0])
