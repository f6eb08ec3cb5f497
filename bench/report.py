"""The benchmark report: runs every harness and writes report.json, PNG charts and a README.

Each harness runs as its own OS process (one harness's memory or failure does
not spoil the next) with ``--json``; their outputs are kept under
``OUT/raw/`` and aggregated into ``OUT/report.json`` (machine facts, load
averages around each harness, every figure with its median and spread, the
issue 9 targets with met/missed), charts (``throughput.png``,
``latency.png``, ``memory.png``, matplotlib's Agg backend) and
``OUT/README.md`` with the table and the command that produced it.

    .venv/bin/python bench/report.py --out docs/bench-report            # about 21 minutes
    .venv/bin/python bench/report.py --out /tmp/bench-quick --quick     # a few minutes
    .venv/bin/python bench/report.py --out /tmp/again --from-raw docs/bench-report/raw

What each harness and chart measures: docs/benchmarks.md, "The benchmark report".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SCHEMA_ID = "mepl-bench-report/1"
CHARTS = ("throughput.png", "latency.png", "memory.png")

# ------------------------------------------------------------------ the JSON schema
_NUMBER_OR_NULL = {"type": ["number", "null"]}
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "generated_at", "command", "quick", "machine", "harnesses",
                 "figures", "charts"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "generated_at": {"type": "string"},
        "command": {"type": "string"},
        "quick": {"type": "boolean"},
        "options": {"type": "object"},
        "machine": {
            "type": "object",
            "required": ["cpu_model", "cpus", "ram_gb", "python", "platform", "postgresql",
                         "database"],
            "properties": {"cpus": {"type": "integer"}, "ram_gb": {"type": "number"}},
        },
        "harnesses": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["name", "title", "command", "returncode", "seconds", "load_before",
                         "load_after", "failed_checks", "raw"],
            "properties": {
                "returncode": {"type": ["integer", "null"]},
                "seconds": {"type": "number"},
                "load_before": {"type": "array", "items": {"type": "number"},
                                "minItems": 3, "maxItems": 3},
                "load_after": {"type": "array", "items": {"type": "number"},
                               "minItems": 3, "maxItems": 3},
                "failed_checks": {"type": "array", "items": {"type": "string"}},
            }}},
        "figures": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["key", "label", "unit", "harness", "median", "min", "max", "runs",
                         "target", "verdict"],
            "properties": {
                "median": _NUMBER_OR_NULL, "min": _NUMBER_OR_NULL, "max": _NUMBER_OR_NULL,
                "runs": {"type": "integer"},
                "target": {"oneOf": [{"type": "null"}, {
                    "type": "object", "required": ["op", "value", "source"],
                    "properties": {"op": {"enum": [">=", "<=", "<"]},
                                   "value": {"type": "number"}}}]},
                "verdict": {"enum": ["met", "missed", "not measured", None]},
            }}},
        "charts": {"type": "array", "items": {"type": "string"}},
    },
}


# ------------------------------------------------------------------ the harnesses
@dataclasses.dataclass(frozen=True)
class Step:
    """One harness invocation: its name in the report, what it measures, its argv."""

    name: str
    title: str
    argv: tuple[str, ...]
    timeout: float

    def command(self) -> str:
        """The command line, as a user would type it from the repository root."""
        return shlex.join(["python", *redacted([_relative(a) for a in self.argv[1:]])])


def redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` with the password of a ``--database-url`` hidden."""
    out = list(argv)
    for k, arg in enumerate(out[:-1]):
        if arg == "--database-url":
            from sqlalchemy.engine import make_url

            out[k + 1] = make_url(out[k + 1]).render_as_string(hide_password=True)
    return out


def _relative(arg: str) -> str:
    path = Path(arg)
    if path.is_absolute() and path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    return arg


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The sizes of a full or a quick report."""

    base: int
    devices: int
    queued: int
    runs: int
    latency_samples: int
    http_requests: int
    big_processes: int
    windows: tuple[float, float, float]  # bench_queued: start, claim, idle


def sizes(options: argparse.Namespace) -> Sizes:
    quick = options.quick
    return Sizes(
        base=options.base_devices or (500 if quick else 10_000),
        devices=options.devices or (1_000 if quick else 100_000),
        queued=options.queued or (20_000 if quick else 1_000_000),
        runs=options.runs or (1 if quick else 3),
        latency_samples=options.latency_samples or (30 if quick else 300),
        http_requests=options.http_requests or (2_000 if quick else 10_000),
        big_processes=options.big_processes,
        windows=(5.0, 8.0, 4.0) if quick else (30.0, 30.0, 20.0))


def plan(options: argparse.Namespace, raw: Path) -> list[Step]:
    """The harness invocations of one report, in the order they run."""
    s = sizes(options)
    py = sys.executable
    db = ["--database-url", options.database_url] if options.database_url else []
    fanout = [py, str(BENCH / "bench_fanout.py")]
    big_timeout = max(600.0, s.devices / 20)  # seconds per phase: at least 20 commands/s
    steps = [
        Step("fanout_base_1p", f"fan-out, {s.base:,} devices, 1 process",
             (*fanout, "--devices", str(s.base), "--processes", "1", "--runs", str(s.runs),
              "--latency-samples", "20", *db, "--json", str(raw / "fanout_base_1p.out.json")),
             s.runs * 3600.0),
        Step("fanout_base_2p", f"fan-out, {s.base:,} devices, 2 processes",
             (*fanout, "--devices", str(s.base), "--processes", "2", "--runs", str(s.runs),
              "--latency-samples", "20", *db, "--json", str(raw / "fanout_base_2p.out.json")),
             s.runs * 3600.0),
        Step("fanout_big", f"fan-out, {s.devices:,} devices, {s.big_processes} process(es)",
             (*fanout, "--devices", str(s.devices), "--processes", str(s.big_processes),
              "--runs", "1", "--latency-samples", "20", "--timeout", f"{big_timeout:.0f}",
              *db, "--json", str(raw / "fanout_big.out.json")),
             big_timeout * 4 + 3600),
        Step("latency", f"single command on an idle system, {s.latency_samples} samples",
             (*fanout, "--devices", str(s.latency_samples + 3), "--processes", "1",
              "--runs", "1", "--latency-samples", str(s.latency_samples), *db,
              "--json", str(raw / "latency.out.json")),
             3600.0),
        Step("http", "HTTP gateway callbacks, each committed before its reply",
             (py, str(BENCH / "bench_http.py"), "--runs", str(s.runs), "--requests",
              str(s.http_requests), "--warmup", str(max(100, s.http_requests // 10)),
              "--json", str(raw / "http.out.json")),
             1800.0),
        Step("queued", f"memory with {s.queued:,} commands queued",
             (py, str(BENCH / "bench_queued.py"), "--queued", str(s.queued),
              "--start-window", str(s.windows[0]), "--claim-window", str(s.windows[1]),
              "--idle-window", str(s.windows[2]), *db,
              "--json", str(raw / "queued.out.json")),
             7200.0),
    ]
    only = set(options.only or ())
    return [step for step in steps if not only or step.name in only]


def run_step(step: Step, raw: Path) -> dict[str, Any]:
    """Run one harness; returns (and writes to ``raw/NAME.json``) its envelope: the
    command, exit status, duration, load averages around it and its JSON output."""
    out_json = Path(step.argv[step.argv.index("--json") + 1])
    out_json.unlink(missing_ok=True)
    print(f"report: {step.name}: {step.command()}", flush=True)
    load_before = os.getloadavg()
    t0 = time.monotonic()
    log = raw / f"{step.name}.log"
    with log.open("w") as out:
        try:
            done = subprocess.run(step.argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=step.timeout, check=False)
            returncode: int | None = done.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    seconds = time.monotonic() - t0
    data = json.loads(out_json.read_text()) if out_json.exists() else None
    out_json.unlink(missing_ok=True)
    envelope = {"name": step.name, "title": step.title, "command": step.command(),
                "returncode": returncode, "seconds": round(seconds, 1),
                "load_before": list(load_before), "load_after": list(os.getloadavg()),
                "log": log.name, "data": data}
    (raw / f"{step.name}.json").write_text(json.dumps(envelope, indent=1))
    status = "timed out" if returncode is None else f"exit status {returncode}"
    print(f"report: {step.name}: {status} after {seconds:,.0f} s", flush=True)
    return envelope


# ------------------------------------------------------------------ machine facts
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def postgresql_version(database_url: str | None) -> str:
    """The server's version: the external server's, or the embedded binaries' (pgserver)."""
    try:
        if database_url:
            from sqlalchemy import create_engine, text

            engine = create_engine(database_url)
            try:
                with engine.connect() as conn:
                    return str(conn.execute(text("SHOW server_version")).scalar_one())
            finally:
                engine.dispose()
        import importlib.util

        spec = importlib.util.find_spec("pgserver")
        if spec is None or not spec.submodule_search_locations:
            return "unknown"
        binary = Path(next(iter(spec.submodule_search_locations))) / "pginstall/bin/postgres"
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=30, check=True)
        return out.stdout.strip()
    except Exception as exc:  # the report is still worth writing without it
        return f"unknown ({exc.__class__.__name__})"


def machine_facts(database_url: str | None) -> dict[str, Any]:
    return {"cpu_model": cpu_model(), "cpus": os.cpu_count() or 0, "ram_gb": ram_gb(),
            "python": platform.python_version(), "platform": platform.platform(),
            "postgresql": postgresql_version(database_url),
            "database": "external (--database-url)" if database_url else "embedded (pgserver)",
            "load_at_start": list(os.getloadavg()), "commit": source_commit()}


def source_commit() -> str:
    """The git commit the report measures (with ``+dirty`` if the tree has edits)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], check=True, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# ------------------------------------------------------------------ figures
@dataclasses.dataclass(frozen=True)
class Target:
    op: str
    value: float
    source: str

    def met(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.value
        if self.op == "<=":
            return value <= self.value
        return value < self.value


ISSUE9 = "issue 9"
MEMORY = Target("<", 200, "issue 9 (MEPL < 200 MB, flat from 10k to 100k)")


def _spread(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def _run_values(data: Mapping[str, Any] | None, metric: str) -> list[float]:
    if not data:
        return []
    return [float(r["metrics"][metric]) for r in data.get("runs", ())
            if r.get("metrics", {}).get(metric) is not None]


def _max_rss_values(data: Mapping[str, Any] | None) -> list[float]:
    """Per run: the largest peak RSS among the run's MEPL processes."""
    out = []
    for r in (data or {}).get("runs", ()):
        peaks = [v for k, v in r.get("metrics", {}).items()
                 if k.startswith("peak_rss_mb_mepl_") and v is not None]
        if peaks:
            out.append(float(max(peaks)))
    return out


def _mepl_pids_label(processes: int) -> str:
    return "per process, largest" if processes > 1 else "one process"


def figures(envelopes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every figure of the report, with its spread and its target's verdict."""
    rows: list[dict[str, Any]] = []

    def data(name: str) -> Mapping[str, Any] | None:
        env = envelopes.get(name)
        return None if env is None else env.get("data")

    def add(key: str, label: str, unit: str, harness: str, values: Sequence[float],
            target: Target | None = None) -> None:
        if harness not in envelopes:
            return
        row: dict[str, Any] = {"key": key, "label": label, "unit": unit, "harness": harness,
                               **_spread(values),
                               "target": None if target is None else dataclasses.asdict(target),
                               "verdict": None}
        if target is not None:
            median = row["median"]
            row["verdict"] = ("not measured" if median is None
                              else "met" if target.met(median) else "missed")
        rows.append(row)

    def size_of(name: str) -> str:
        d = data(name)
        return "?" if not d else f"{d['options']['devices']:,}"

    def procs(name: str) -> int:
        d = data(name)
        return int(d["options"]["processes"]) if d else 1

    big = "fanout_big"
    add("big_submitted_per_s", f"fan-out of {size_of(big)}, {procs(big)} process(es): "
        "commands signed + stored + submitted", "/s", big,
        _run_values(data(big), "fanout_submitted_per_s"), Target(">=", 3000, ISSUE9))
    add("big_round_trips_per_s", f"fan-out of {size_of(big)}: full round trips", "/s", big,
        _run_values(data(big), "fanout_round_trips_per_s"), Target(">=", 1500, ISSUE9))
    add("big_xact_per_command", f"fan-out of {size_of(big)}: transactions per command", "",
        big, _run_values(data(big), "fanout_xact_per_command"), Target("<=", 2, ISSUE9))
    add("big_peak_rss_mepl_mb", f"fan-out of {size_of(big)}: peak RSS of MEPL "
        f"({_mepl_pids_label(procs(big))})", "MB", big, _max_rss_values(data(big)), MEMORY)
    add("big_peak_pss_postgres_mb", f"fan-out of {size_of(big)}: peak PSS of PostgreSQL",
        "MB", big, _run_values(data(big), "peak_pss_mb_postgres"))
    for name in ("fanout_base_1p", "fanout_base_2p"):
        n, p = size_of(name), procs(name)
        prefix = f"fan-out of {n}, {p} process{'es' if p > 1 else ''}"
        short = name.removeprefix("fanout_")
        d = data(name)
        add(f"{short}_submitted_per_s", f"{prefix}: commands submitted", "/s", name,
            _run_values(d, "fanout_submitted_per_s"))
        add(f"{short}_round_trips_per_s", f"{prefix}: full round trips", "/s", name,
            _run_values(d, "fanout_round_trips_per_s"))
        add(f"{short}_xact_per_command", f"{prefix}: transactions per command", "", name,
            _run_values(d, "fanout_xact_per_command"), Target("<=", 2, ISSUE9))
        add(f"{short}_cpu_us_mepl", f"{prefix}: MEPL CPU per command (all processes)", "us",
            name, _run_values(d, "fanout_cpu_us_mepl"))
        add(f"{short}_cpu_us_postgres", f"{prefix}: PostgreSQL CPU per command", "us", name,
            _run_values(d, "fanout_cpu_us_postgres"))
        add(f"{short}_mo_stored_per_s", f"{prefix}: inbound MO alerts stored "
            "(deliver_sm_resp)", "/s", name, _run_values(d, "alerts_stored_per_s"))
        add(f"{short}_mo_verified_per_s", f"{prefix}: inbound MO over SMPP stored + "
            "verified + applied", "/s", name, _run_values(d, "alerts_applied_per_s"),
            Target(">=", 2000, ISSUE9))
        add(f"{short}_peak_rss_mepl_mb", f"{prefix}: peak RSS of MEPL "
            f"({_mepl_pids_label(p)})", "MB", name, _max_rss_values(d), MEMORY)
        add(f"{short}_peak_pss_postgres_mb", f"{prefix}: peak PSS of PostgreSQL", "MB", name,
            _run_values(d, "peak_pss_mb_postgres"))
    lat = data("latency")
    add("latency_submit_p50_ms", "single command, idle: queued -> submit_sm p50", "ms",
        "latency", _run_values(lat, "latency_submit_p50_ms"))
    add("latency_submit_p99_ms", "single command, idle: queued -> submit_sm p99", "ms",
        "latency", _run_values(lat, "latency_submit_p99_ms"), Target("<", 20, ISSUE9))
    add("latency_round_trip_p50_ms", "single command, idle: queued -> done p50", "ms",
        "latency", _run_values(lat, "latency_round_trip_p50_ms"))
    add("latency_round_trip_p99_ms", "single command, idle: queued -> done p99", "ms",
        "latency", _run_values(lat, "latency_round_trip_p99_ms"))
    http = data("http") or {}
    runs = http.get("runs", ())
    add("http_callbacks_per_s", "HTTP callbacks, each committed before its reply", "/s",
        "http", [float(r["rate"]) for r in runs],
        Target(">=", 2000, "docs/benchmarks.md (issue 5)"))
    add("http_p99_ms", "HTTP callbacks: p99 latency", "ms", "http",
        [float(r["p99_ms"]) for r in runs])
    add("http_cpu_us", "HTTP callbacks: server CPU per callback", "us", "http",
        [float(r["server_cpu_us"]) for r in runs])
    q = data("queued") or {}
    qm = q.get("metrics", {})
    queued = f"{q['queued']:,}" if "queued" in q else "?"

    def one(key: str) -> list[float]:
        return [] if qm.get(key) is None else [float(qm[key])]

    for phase, what in (("start", "starting and polling, no SMSC"),
                        ("claim", "claiming and submitting"),
                        ("idle", "idle, SMSC gone")):
        add(f"queued_rss_{phase}_mb", f"{queued} queued: MEPL RSS while {what} (max)", "MB",
            "queued", one(f"rss_mb_{phase}_max"))
    add("queued_peak_rss_mepl_mb", f"{queued} queued: peak RSS of MEPL (VmHWM)", "MB",
        "queued", one("peak_rss_mb_mepl"),
        Target("<", 200, "issue 9's memory bound, applied to the deep queue"))
    add("queued_peak_pss_postgres_mb", f"{queued} queued: peak PSS of PostgreSQL", "MB",
        "queued", one("peak_pss_mb_postgres"))
    add("queued_claim_submitted_per_s", f"{queued} queued: commands submitted/s while "
        "claiming", "/s", "queued", one("claim_submitted_per_s"))
    return rows


def failed_checks(envelope: Mapping[str, Any]) -> list[str]:
    data = envelope.get("data")
    if not data:
        return ["no JSON output (see the harness's log)"]
    out = []
    for run in data.get("runs", [data]):
        for name, check in (run.get("checks") or {}).items():
            if not check.get("ok", True):
                where = f"run {run['run']}: " if "run" in run else ""
                out.append(f"{where}{name}: got {check['got']}, expected {check['expected']}")
    if "rows_committed" in data and data["rows_committed"] != data.get("rows_expected"):
        out.append(f"rows committed {data['rows_committed']}, "
                   f"expected {data.get('rows_expected')}")
    return out


def aggregate(envelopes: Mapping[str, Mapping[str, Any]], machine: Mapping[str, Any],
              command: str, quick: bool, options: Mapping[str, Any]) -> dict[str, Any]:
    """report.json's content from the harnesses' envelopes (see REPORT_SCHEMA)."""
    harnesses = [{"name": e["name"], "title": e["title"], "command": e["command"],
                  "returncode": e["returncode"], "seconds": e["seconds"],
                  "load_before": e["load_before"], "load_after": e["load_after"],
                  "failed_checks": failed_checks(e), "raw": f"raw/{e['name']}.json"}
                 for e in envelopes.values()]
    return {"schema": SCHEMA_ID, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command, "quick": quick, "options": dict(options),
            "machine": dict(machine), "harnesses": harnesses,
            "figures": figures(envelopes), "charts": []}


def validate(report: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError if ``report`` does not follow REPORT_SCHEMA."""
    import jsonschema

    jsonschema.validate(report, REPORT_SCHEMA)


# ------------------------------------------------------------------ charts
def _rates(series: Sequence[Mapping[str, Any]], key: str, window: float = 1.0
           ) -> tuple[list[float], list[float]]:
    """(times, rate of ``key`` per second over the last ``window`` seconds)."""
    times, rates = [], []
    series = [s for s in series if key in s]  # progress counts are sparser than samples
    j = 0
    for i, sample in enumerate(series):
        while j < i and sample["t"] - series[j]["t"] > window:
            j += 1
        k = max(0, j - 1) if j else 0
        dt = sample["t"] - series[k]["t"]
        if dt > 0 and key in series[k]:
            times.append(sample["t"])
            rates.append((sample[key] - series[k][key]) / dt)
    return times, rates


def _fanout_label(envelope: Mapping[str, Any]) -> str:
    opts = envelope["data"]["options"]
    p = opts["processes"]
    return f"{opts['devices']:,} devices, {p} process{'es' if p > 1 else ''}"


def chart_throughput(envelopes: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 8))
    for name in ("fanout_base_1p", "fanout_base_2p", "fanout_big"):
        env = envelopes.get(name)
        if not env or not env.get("data") or not env["data"].get("runs"):
            continue
        run = env["data"]["runs"][0]
        label = _fanout_label(env)
        series = run.get("fanout", {}).get("series", [])
        line = None
        for key, style, what in (("sent", "-", "submitted"), ("done", "--", "round trips")):
            t, r = _rates(series, key)
            (line,) = ax1.plot(t, r, style, color=None if line is None else line.get_color(),
                               label=f"{label}: {what}/s")
        alerts = run.get("alerts", {}).get("series", [])
        line = None
        for key, style, what in (("stored", "-", "MO stored"),
                                 ("applied", "--", "verified + applied")):
            t, r = _rates(alerts, key)
            (line,) = ax2.plot(t, r, style, color=None if line is None else line.get_color(),
                               label=f"{label}: {what}/s")
    ax1.set(title="Fan-out: commands submitted and full round trips per second (run 1)",
            xlabel="seconds since the fan-out was queued", ylabel="per second (1 s window)")
    ax2.set(title="Inbound: alerts (MO over SMPP) stored and verified + applied per second",
            xlabel="seconds since the injection began", ylabel="per second (1 s window)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def chart_latency(envelopes: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    submit: list[float] = []
    done: list[float] = []
    env = envelopes.get("latency")
    for run in ((env or {}).get("data") or {}).get("runs", ()):
        submit += run.get("latency_ms", {}).get("to_submit", [])
        done += run.get("latency_ms", {}).get("round_trip", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    if submit:
        ax1.hist(submit, bins=min(50, max(5, len(submit) // 5)), color="tab:blue", alpha=0.8)
    ax1.axvline(20, color="tab:red", linestyle=":", label="issue 9 target: p99 < 20 ms")
    ax1.set(title=f"Single command, idle system: queued -> submit_sm ({len(submit)} samples)",
            xlabel="ms", ylabel="commands")
    for values, label in ((submit, "queued -> submit_sm"), (done, "queued -> done")):
        if values:
            ordered = sorted(values)
            ax2.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))],
                     label=label)
    ax2.axhline(0.99, color="grey", linestyle=":", label="p99")
    ax2.axvline(20, color="tab:red", linestyle=":")
    ax2.set(title="Cumulative distribution", xlabel="ms", ylabel="fraction of commands")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def chart_memory(envelopes: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 12))
    labels: list[str] = []
    mepl: list[float] = []
    pg: list[float] = []
    for name in ("fanout_base_1p", "fanout_base_2p", "fanout_big"):
        env = envelopes.get(name)
        if not env or not env.get("data"):
            continue
        rss = _max_rss_values(env["data"])
        pss = _run_values(env["data"], "peak_pss_mb_postgres")
        labels.append(_fanout_label(env).replace(", ", "\n"))
        mepl.append(statistics.median(rss) if rss else 0.0)
        pg.append(statistics.median(pss) if pss else 0.0)
        run = env["data"]["runs"][0] if env["data"].get("runs") else {}
        series = run.get("fanout", {}).get("series", [])
        points = [(s["finished"], s[k]) for s in series for k in s
                  if k.startswith("rss_mb_") and "finished" in s]
        if points:
            ax2.plot([p[0] for p in points], [p[1] for p in points], ".", markersize=3,
                     label=_fanout_label(env))
    env = envelopes.get("queued")
    q = (env or {}).get("data") or {}
    if q:
        labels.append(f"{q['queued']:,} queued\n1 process")
        mepl.append(q["metrics"].get("peak_rss_mb_mepl") or 0.0)
        pg.append(q["metrics"].get("peak_pss_mb_postgres") or 0.0)
        series = q.get("series", [])
        ax3.plot([s["t"] for s in series if "rss_mb" in s],
                 [s["rss_mb"] for s in series if "rss_mb" in s], label="MEPL RSS")
        ax3.plot([s["t"] for s in series if "pg_pss_mb" in s],
                 [s["pg_pss_mb"] for s in series if "pg_pss_mb" in s],
                 label="PostgreSQL PSS (all processes)")
        for k, phase in enumerate(q.get("phases", [])):
            ax3.axvspan(phase["start"], phase["end"], alpha=0.08, color=f"C{k + 2}")
            ax3.text((phase["start"] + phase["end"]) / 2, 0.02, phase["name"],
                     transform=ax3.get_xaxis_transform(), ha="center")
    xs = range(len(labels))
    ax1.bar([x - 0.2 for x in xs], mepl, width=0.4, label="MEPL peak RSS (largest process)")
    ax1.bar([x + 0.2 for x in xs], pg, width=0.4, label="PostgreSQL peak PSS")
    ax1.set_xticks(list(xs), labels, fontsize=8)
    ax1.axhline(200, color="tab:red", linestyle=":", label="issue 9: MEPL < 200 MB")
    ax1.set(title="Peak memory by size", ylabel="MB")
    ax2.set(title="MEPL RSS during the fan-out, by commands finished (run 1)",
            xlabel="commands finished", ylabel="MB")
    ax3.set(title="MEPL RSS with the queue deep: start (no SMSC), claim, idle (SMSC gone)",
            xlabel="seconds since the process started", ylabel="MB")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_charts(envelopes: Mapping[str, Mapping[str, Any]], out: Path) -> list[str]:
    """Write the three PNG charts (matplotlib, Agg backend); returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    chart_throughput(envelopes, out / "throughput.png")
    chart_latency(envelopes, out / "latency.png")
    chart_memory(envelopes, out / "memory.png")
    return list(CHARTS)


# ------------------------------------------------------------------ README
def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "" or abs(value) < 100:
        return f"{value:,.2f}" if unit == "" else f"{value:,.1f}"
    return f"{value:,.0f}"


def write_readme(report: Mapping[str, Any], out: Path) -> None:
    m = report["machine"]
    lines = [
        "# MEPL benchmark report" + (" (quick sizes: not a reference)" if report["quick"]
                                      else ""),
        "",
        f"Generated {report['generated_at']} by:",
        "",
        "```sh",
        report["command"],
        "```",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['ram_gb']} GB RAM; Python "
        f"{m['python']}; PostgreSQL {m['postgresql']}, {m['database']}; {m['platform']}. "
        f"Source: commit {m.get('commit', 'unknown')}.",
        "What each figure and chart measures: docs/benchmarks.md, \"The benchmark report\".",
        "",
        "## Figures",
        "",
        "| figure | median | min - max | runs | target | verdict |",
        "|---|---:|---:|---:|---|---|",
    ]
    for f in report["figures"]:
        unit = f" {f['unit']}" if f["unit"] else ""
        target = f["target"]
        tgt = "-" if target is None else f"{target['op']} {target['value']:,g}{unit} " \
                                         f"({target['source']})"
        spread = "-" if f["min"] is None else \
            f"{_fmt(f['min'], f['unit'])} - {_fmt(f['max'], f['unit'])}"
        lines.append(f"| {f['label']} | {_fmt(f['median'], f['unit'])}{unit} | {spread} | "
                     f"{f['runs']} | {tgt} | {f['verdict'] or '-'} |")
    lines += ["", "## Harnesses", "",
              "Each ran as its own process, in this order; load average (1, 5, 15 min) "
              "before and after.  Their JSON output is in `raw/`.", "",
              "| harness | exit | seconds | load before | load after | failed checks |",
              "|---|---:|---:|---|---|---|"]
    for h in report["harnesses"]:
        exit_status = "timeout" if h["returncode"] is None else str(h["returncode"])
        failed = "; ".join(h["failed_checks"]) or "none"
        lines.append(f"| {h['title']} | {exit_status} | {h['seconds']:,.0f} | "
                     f"{' '.join(f'{v:.2f}' for v in h['load_before'])} | "
                     f"{' '.join(f'{v:.2f}' for v in h['load_after'])} | {failed} |")
    lines += ["", "Commands:", "", "```sh"]
    lines += [h["command"] for h in report["harnesses"]]
    lines += ["```", "", "## Charts", ""]
    for chart in report["charts"]:
        lines += [f"![{chart}]({chart})", ""]
    (out / "README.md").write_text("\n".join(lines))


# ------------------------------------------------------------------ main
def load_raw(raw: Path) -> dict[str, dict[str, Any]]:
    """The envelopes kept by an earlier report, by harness name, in run order."""
    envelopes = [json.loads(p.read_text()) for p in sorted(raw.glob("*.json"))
                 if not p.name.endswith(".out.json") and p.name != "machine.json"]
    order = {name: k for k, name in enumerate(
        ("fanout_base_1p", "fanout_base_2p", "fanout_big", "latency", "http", "queued"))}
    envelopes.sort(key=lambda e: order.get(e["name"], len(order)))
    return {e["name"]: e for e in envelopes}


def build(envelopes: Mapping[str, Mapping[str, Any]], out: Path, machine: Mapping[str, Any],
          command: str, quick: bool, options: Mapping[str, Any]) -> dict[str, Any]:
    """Aggregate, draw, validate and write report.json and README.md into ``out``."""
    report = aggregate(envelopes, machine, command, quick, options)
    report["charts"] = write_charts(envelopes, out)
    validate(report)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    write_readme(report, out)
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Charts and figures explained: docs/benchmarks.md, 'The benchmark report'.")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (report.json, *.png, README.md, raw/)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (500 devices, 1,000 for the large fan-out, 20,000 "
                             "queued, 1 run each): a few minutes, not a reference")
    parser.add_argument("--devices", type=int,
                        help="the large fan-out, for memory flatness (default 100000)")
    parser.add_argument("--queued", type=int,
                        help="commands queued for the memory run (default 1000000)")
    parser.add_argument("--database-url", metavar="URL",
                        help="an external PostgreSQL whose role may CREATE DATABASE, for the "
                             "fan-out and queued harnesses (default: embedded; the HTTP "
                             "harness always uses its own embedded server)")
    parser.add_argument("--base-devices", type=int,
                        help="the 1- and 2-process fan-outs (default 10000)")
    parser.add_argument("--runs", type=int, help="runs of the fan-outs and HTTP (default 3)")
    parser.add_argument("--latency-samples", type=int,
                        help="single commands timed on the idle system (default 300)")
    parser.add_argument("--http-requests", type=int,
                        help="callbacks per HTTP run (default 10000)")
    parser.add_argument("--big-processes", type=int, choices=(1, 2), default=2,
                        help="mepl processes of the large fan-out (default 2, as the issue 9 "
                             "target allows; the 1-process figure is the base fan-out's)")
    parser.add_argument("--only", action="append", metavar="HARNESS",
                        choices=("fanout_base_1p", "fanout_base_2p", "fanout_big", "latency",
                                 "http", "queued"),
                        help="run only this harness (repeatable)")
    parser.add_argument("--from-raw", type=Path, metavar="DIR",
                        help="run nothing: rebuild the report from an earlier report's raw/")
    args = parser.parse_args(argv)
    for name in ("devices", "queued", "base_devices", "runs", "latency_samples",
                 "http_requests"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    out: Path = options.out
    command = shlex.join(["python", "bench/report.py",
                          *redacted(sys.argv[1:] if argv is None else argv)])
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()
            if k != "database_url"}
    if options.from_raw is not None:
        envelopes = load_raw(options.from_raw)
        if not envelopes:
            print(f"report: no harness output in {options.from_raw}", file=sys.stderr)
            return 2
        if options.from_raw.resolve() != raw.resolve():
            for name, env in envelopes.items():
                (raw / f"{name}.json").write_text(json.dumps(env, indent=1))
        machine_file = options.from_raw / "machine.json"
        machine = (json.loads(machine_file.read_text()) if machine_file.exists()
                   else machine_facts(None))
    else:
        machine = machine_facts(options.database_url)
        envelopes = {}
        for step in plan(options, raw.resolve()):
            envelopes[step.name] = run_step(step, raw)
    (raw / "machine.json").write_text(json.dumps(machine, indent=1))
    report = build(envelopes, out, machine, command, options.quick, opts)
    problems = [f"{h['name']}: {c}" for h in report["harnesses"] for c in h["failed_checks"]]
    for f in report["figures"]:
        if f["target"] is not None:
            print(f"  {f['label']:78} {_fmt(f['median'], f['unit']):>10} {f['unit']:3} "
                  f"{f['verdict']}")
    for line in problems:
        print(f"report: CHECK FAILED: {line}", file=sys.stderr)
    print(f"report: written to {out}/ (report.json, README.md, {', '.join(CHARTS)})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
