"""Memory of one ``mepl run`` process with a deep queue (one million commands by default).

The harness enrols a fleet through the bulk import (the fan-out bench's
enrolment: keys derived from a seed, pinned to the server key), queues
``--queued`` commands with group fan-outs (one INSERT ... SELECT each, as
``mepl commands send --group`` does; ``--queued`` / fleet fan-outs), and only
then starts one real ``mepl run`` OS process.  It samples that process's
resident set (and the PostgreSQL server's PSS) every ``--sample-interval``
through three phases:

1. **start**: no SMSC is listening on the link's port, so the process starts,
   polls, and runs its housekeeping (every 10 s here, instead of 30 s) over the
   deep queue, but claims nothing (no link is up);
2. **claim**: the bundled SMSC simulator starts listening on that port; the
   link binds and the dispatcher claims, seals and submits from the deep
   queue for ``--claim-window`` seconds (receipts come back; no handset
   answers, so commands stay ``sent``);
3. **idle**: the simulator stops; the process idles with the rest still
   queued (its link reconnecting).

Figures: the process's RSS at the end of each phase and its high-water mark
(``VmHWM``), PostgreSQL's peak PSS, the submits accepted in the claim phase.

    .venv/bin/python bench/bench_queued.py --queued 1000000 --json queued.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ServerEndpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_fanout import (  # the fan-out bench's fleet, processes and databases
    GROUP,
    SERVER,
    SIM_SYSTEM_ID,
    BenchError,
    Databases,
    MeplProcess,
    PgProcesses,
    device_keys,
    enrol,
    peak_rss_mb,
    react,
    sleep,
)

from blobstore.commands import NewCommand, insert_group_commands_txn
from blobstore.embedded import EmbeddedServer, start_embedded
from blobstore.migrate import upgrade
from signing.keystore import ServerKeyStore
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator

PHASES = ("start", "claim", "idle")
# The process's settings beside the product defaults: housekeeping runs a few times in
# each window, and the link retries its connection within two seconds once the SMSC is up.
SETTINGS = ("dispatch.housekeeping_interval_s=10", "smpp.links.sim.reconnect_max=2")


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def queue_fanouts(url: str, fanouts: int) -> float:
    """Queue ``fanouts`` group commands for the whole fleet; returns the seconds taken."""
    engine = create_engine(url)
    t0 = time.perf_counter()
    try:
        for k in range(fanouts):
            with engine.begin() as conn:
                insert_group_commands_txn(conn, GROUP, NewCommand(
                    opcode="status_query", requested_by=f"bench:queued:{k}",
                    not_after=datetime.now(UTC) + timedelta(days=2),
                    arguments={"features": ["battery", "signal"]}))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("commands", "command_events"):
                conn.execute(text(f"VACUUM ANALYZE {table}"))
    finally:
        engine.dispose()
    return time.perf_counter() - t0


def command_states(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT state, count(*) FROM commands GROUP BY state"))
            return {str(r[0]): int(r[1]) for r in rows}
    finally:
        engine.dispose()


class QueuedRun:
    """One run: the deep queue, one ``mepl run`` process, three sampled phases."""

    def __init__(self, reactor: Any, options: argparse.Namespace, url: str,
                 state: Path, workdir: Path) -> None:
        self.reactor = reactor
        self.opts = options
        self.url = url
        self.state = state
        self.workdir = workdir
        self.series: list[dict[str, Any]] = []
        self.phases: list[dict[str, Any]] = []
        self.phase = "start"
        self.metrics: dict[str, float | None] = {}
        self.checks: dict[str, dict[str, Any]] = {}

    def sample(self) -> None:
        sample: dict[str, Any] = {"t": round(time.monotonic() - self.t0, 3),
                                  "phase": self.phase}
        with suppress(psutil.Error):
            sample["rss_mb"] = round(self.mepl.proc.memory_info().rss / 2**20, 1)
        if self.ticks % max(1, round(1.0 / self.opts.sample_interval)) == 0:
            memory = self.pg.memory_mb()
            if memory is not None:
                sample["pg_pss_mb"] = round(memory[0], 1)
        sample["smsc_accepted"] = self.sim.stats["accepted"]
        self.ticks += 1
        self.series.append(sample)

    async def window(self, name: str, seconds: float) -> None:
        self.phase = name
        start = time.monotonic() - self.t0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.mepl.popen.poll() is not None:
                raise BenchError(f"{name} phase: the mepl process exited with status "
                                 f"{self.mepl.popen.returncode}:\n{self.mepl.tail()}")
            await sleep(self.reactor, 0.1)
        rss = [s["rss_mb"] for s in self.series if s["phase"] == name and "rss_mb" in s]
        self.phases.append({"name": name, "start": round(start, 3),
                            "end": round(time.monotonic() - self.t0, 3)})
        self.metrics[f"rss_mb_{name}_max"] = max(rss) if rss else None
        self.metrics[f"rss_mb_{name}_end"] = rss[-1] if rss else None

    async def run(self) -> None:
        opts = self.opts
        password = secrets.token_hex(4)
        self.sim = SmscSimulator(SimulatorConfig(
            system_id=SIM_SYSTEM_ID, password=password, receipt_delay=opts.receipt_delay),
            clock=self.reactor)
        port = free_port()
        settings = argparse.Namespace(log_level="info", set=[*SETTINGS, *opts.set])
        self.t0 = time.monotonic()
        self.ticks = 0
        self.mepl = MeplProcess(1, self.workdir, self.state, self.url, port, password, settings)
        admin = create_engine(self.url, pool_size=1, max_overflow=0)
        try:
            with admin.connect() as conn:
                backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                self.pg = PgProcesses(backend, {backend})
        finally:
            admin.dispose()
        sampler = task.LoopingCall(self.sample)
        sampler.clock = self.reactor
        sampler.start(opts.sample_interval)
        listening = None
        try:
            await self.window("start", opts.start_window)
            listening = await TCP4ServerEndpoint(self.reactor, port,
                                                 interface="127.0.0.1").listen(
                self.sim.factory())
            await self.window("claim", opts.claim_window)
            bound = self.sim.bound_count()
            self.sim.stop()
            await listening.stopListening()
            listening = None
            await self.window("idle", opts.idle_window)
        finally:
            if sampler.running:
                sampler.stop()
            if listening is not None:
                self.sim.stop()
                await listening.stopListening()
            self.metrics["peak_rss_mb_mepl"] = peak_rss_mb(self.mepl.popen.pid)
            self.mepl.popen.send_signal(signal.SIGTERM)
            for _ in range(150):  # 15 s, then stop_leftovers: SIGTERM again, SIGKILL
                if self.mepl.popen.poll() is not None:
                    break
                await sleep(self.reactor, 0.1)
            MeplProcess.stop_leftovers()
        pss = [s["pg_pss_mb"] for s in self.series if "pg_pss_mb" in s]
        self.metrics["peak_pss_mb_postgres"] = max(pss) if pss else None
        self.metrics["claim_submitted"] = float(self.sim.stats["accepted"])
        self.metrics["claim_submitted_per_s"] = self.sim.stats["accepted"] / opts.claim_window
        self.checks = {
            "link bound in the claim phase": {"got": bound, "expected": 1, "ok": bound == 1},
            "commands submitted in the claim phase": {
                "got": self.sim.stats["accepted"], "expected": "> 0",
                "ok": self.sim.stats["accepted"] > 0},
            "mepl exit status": {"got": self.mepl.popen.returncode, "expected": 0,
                                 "ok": self.mepl.popen.returncode == 0},
        }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="What it measures: docs/benchmarks.md, 'The benchmark report'.")
    parser.add_argument("--queued", type=int, default=1_000_000,
                        help="commands queued before the process starts (default 1000000)")
    parser.add_argument("--fleet", type=int, default=100_000,
                        help="devices enrolled; the queue is ceil(queued / fleet) group "
                             "fan-outs to them (default 100000, at most --queued)")
    parser.add_argument("--start-window", type=float, default=30.0,
                        help="seconds sampled with no SMSC listening (30)")
    parser.add_argument("--claim-window", type=float, default=30.0,
                        help="seconds sampled while the process claims and submits (30)")
    parser.add_argument("--idle-window", type=float, default=20.0,
                        help="seconds sampled after the SMSC went away (20)")
    parser.add_argument("--sample-interval", type=float, default=0.2,
                        help="seconds between samples of the process's RSS (0.2)")
    parser.add_argument("--receipt-delay", type=float, default=0.2,
                        help="simulator: seconds from submit to its delivery receipt (0.2)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="extra mepl configuration (repeatable)")
    parser.add_argument("--database-url", metavar="URL",
                        help="an external PostgreSQL whose role may CREATE DATABASE "
                             "(default: an embedded server in a temporary directory)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the figures here")
    parser.add_argument("--seed", default="mepl-bench-queued", help="seed of the device keys")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (the mepl log; printed)")
    args = parser.parse_args(argv)
    if args.queued < 1 or args.fleet < 1:
        parser.error("--queued and --fleet must be at least 1")
    args.fleet = min(args.fleet, args.queued)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))
    workdir = Path(tempfile.mkdtemp(prefix="mepl-bench-queued-"))
    state = workdir / "state"
    fanouts = -(-options.queued // options.fleet)
    load0 = os.getloadavg()
    print(f"bench_queued: {options.fleet:,} devices x {fanouts} fan-out(s) = "
          f"{options.fleet * fanouts:,} commands queued; load average {load0[0]:.2f}",
          flush=True)
    server: EmbeddedServer | None = None
    databases: Databases | None = None
    name = f"bench_queued_{os.getpid()}"
    result: dict[str, Any] = {}
    try:
        store = ServerKeyStore(state / "keys")
        index = store.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER,))
        keys = device_keys(options.fleet, options.seed.encode())
        if options.database_url is None:
            server = start_embedded(state, database="postgres")
        databases = Databases(server, options.database_url)
        url = databases.create(name)
        engine = create_engine(url)
        try:
            upgrade(engine)
            t0 = time.perf_counter()
            enrol(engine, keys, [k.public.raw for k in keys], index.active_key_id)
            enrol_s = time.perf_counter() - t0
        finally:
            engine.dispose()
        del keys
        queue_s = queue_fanouts(url, fanouts)
        print(f"enrolled {options.fleet:,} devices in {enrol_s:.1f} s; queued "
              f"{options.fleet * fanouts:,} commands in {queue_s:.1f} s", flush=True)
        run_dir = workdir / "run"
        run_dir.mkdir()
        queued = QueuedRun(None, options, url, state, run_dir)

        async def go(reactor: Any) -> None:
            queued.reactor = reactor
            await queued.run()

        react(lambda reactor: defer.ensureDeferred(go(reactor)))
        states = command_states(url)
        queued.metrics.update(enrol_devices_per_s=options.fleet / enrol_s,
                              queue_commands_per_s=options.fleet * fanouts / queue_s)
        result = {"metrics": queued.metrics, "series": queued.series,
                  "phases": queued.phases, "checks": queued.checks, "states_after": states,
                  "queued": options.fleet * fanouts, "fleet": options.fleet,
                  "fanouts": fanouts, "settings": list(SETTINGS) + options.set}
    except BenchError as exc:
        print(f"bench_queued: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_queued: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("bench_queued: failed (traceback above)", file=sys.stderr)
        return 1
    finally:
        MeplProcess.stop_leftovers()
        if databases is not None:
            with suppress(Exception):
                databases.drop(name)
        if server is not None:
            server.stop()
        if options.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load1 = os.getloadavg()
    m = result["metrics"]
    for key in ("rss_mb_start_max", "rss_mb_claim_max", "rss_mb_idle_max",
                "peak_rss_mb_mepl", "peak_pss_mb_postgres"):
        value = m.get(key)
        print(f"  {key:28} {'-' if value is None else f'{value:,.0f} MB'}")
    print(f"  {'submitted in the claim phase':28} {m['claim_submitted']:,.0f} "
          f"({m['claim_submitted_per_s']:,.0f}/s); commands by state after: "
          f"{result['states_after']}")
    problems = [f"{k}: got {c['got']}, expected {c['expected']}"
                for k, c in result["checks"].items() if not c["ok"]]
    for line in problems:
        print(f"CHECK FAILED: {line}", file=sys.stderr)
    if options.json is not None:
        options.json.write_text(json.dumps({
            "options": {k: (str(v) if isinstance(v, Path) else v)
                        for k, v in vars(options).items()},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "load_before": list(load0), "load_after": list(load1), **result}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
