"""Store benchmarks on the embedded PostgreSQL (the product's default path).

1. Bulk device import: 100k CSV rows through ``blobstore.importer.import_csv``
   (the code ``mepl devices import`` runs), devices/s.
2. Message BLOB inserts (140-300 byte payloads) through ``DatabasePool`` on
   the real reactor: batched (``MessageBatcher``) vs one transaction per row,
   rows/s, with the longest reactor stall seen by a 5 ms LoopingCall.

Targets: >= 20,000 devices/s, >= 20,000 rows/s batched, stall < 50 ms.

    .venv/bin/python bench/bench_store.py --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, create_engine, text
from twisted.internet import defer, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blobstore.batcher import MessageBatcher
from blobstore.config import DatabaseConfig
from blobstore.database import create_store_engine
from blobstore.embedded import EmbeddedServer, start_embedded
from blobstore.identity import luhn_check_digit
from blobstore.importer import import_csv
from blobstore.messages import NewMessage, insert_message_txn
from blobstore.migrate import upgrade
from blobstore.pool import DatabasePool


def write_csv(path: Path, n: int, offset: int) -> None:
    with path.open("w") as out:
        out.write("imei,imsi,phone,group\n")
        for i in range(offset, offset + n):
            body = f"35{i:012d}"
            out.write(f"{body}{luhn_check_digit(body)},23415{i:010d},+4477{i:08d},"
                      f"fleet-{i % 20}\n")


def fresh_engine(server: EmbeddedServer, name: str, config: DatabaseConfig) -> Engine:
    admin = create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = create_store_engine(server.url(name), config)
    upgrade(engine)
    return engine


def cpu_seconds(server: EmbeddedServer) -> float:
    """CPU time used so far by this process and the PostgreSQL server's processes."""
    total = sum(psutil.Process().cpu_times()[:2])
    pid = server.pid
    if pid is not None:
        postmaster = psutil.Process(pid)
        for proc in [postmaster, *postmaster.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += sum(proc.cpu_times()[:2])
    return total


def bench_import(engine: Engine, server: EmbeddedServer, csv_path: Path,
                 rows: int) -> tuple[float, float]:
    """(devices/s, CPU microseconds per device, client and server together)."""
    cpu_before = cpu_seconds(server)
    start = time.perf_counter()
    with csv_path.open(newline="") as stream:
        report = import_csv(engine, stream, "GB")
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(server) - cpu_before
    assert report.imported == rows and not report.errors, report.errors[:3]
    return rows / elapsed, cpu / rows * 1e6


def make_message(rng: random.Random, i: int) -> NewMessage:
    return NewMessage("in", "smpp", "pdu", rng.randbytes(rng.randint(140, 300)),
                      link="carrier_a", peer="+447700900123", smsc_message_id=f"m{i}")


class StallMeter:
    """The longest gap between ticks of a 5 ms LoopingCall, beyond the 5 ms."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.last = 0.0
        self.worst = 0.0
        self.loop = task.LoopingCall(self._tick)
        self.loop.clock = reactor

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last:
            self.worst = max(self.worst, now - self.last - 0.005)
        self.last = now

    def start(self) -> None:
        self.loop.start(0.005)

    def stop(self) -> float:
        self.loop.stop()
        return self.worst * 1000


@defer.inlineCallbacks
def bench_batched(reactor: Any, pool: DatabasePool, n: int, seed: int,
                  config: DatabaseConfig) -> Any:
    batcher = MessageBatcher.from_config(pool, reactor, config)
    rng = random.Random(seed)
    stored: list[int] = []
    done: defer.Deferred[None] = defer.Deferred()

    def one(message_id: int) -> None:
        stored.append(message_id)
        if len(stored) == n:
            done.callback(None)

    meter = StallMeter(reactor)
    meter.start()
    start = time.perf_counter()
    # Messages arrive in bursts of 100 per reactor turn, as from several binds,
    # with a window: no more than 4 batches' worth waiting (as SMPP windows do).
    sent = 0
    while sent < n:
        if batcher.pending < 4 * config.batch_max_rows:
            for i in range(sent, min(n, sent + 100)):
                batcher.add(make_message(rng, i)).addCallback(one)
            sent = min(n, sent + 100)
            yield task.deferLater(reactor, 0, lambda: None)
        else:
            yield task.deferLater(reactor, 0.001, lambda: None)
    yield done
    elapsed = time.perf_counter() - start
    stall = meter.stop()
    assert len(set(stored)) == n
    return n / elapsed, stall, batcher.batches_written


@defer.inlineCallbacks
def bench_single(reactor: Any, pool: DatabasePool, n: int, seed: int,
                 concurrency: int) -> Any:
    rng = random.Random(seed)
    meter = StallMeter(reactor)
    meter.start()
    start = time.perf_counter()
    queue = (make_message(rng, i) for i in range(n))

    @defer.inlineCallbacks
    def worker() -> Any:
        for message in queue:
            yield pool.run_interaction("insert_message", insert_message_txn, message)

    yield defer.gatherResults([worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    return n / elapsed, meter.stop()


def run_messages(engines: list[Engine], server: EmbeddedServer, config: DatabaseConfig,
                 n_batched: int, n_single: int) -> list[tuple[float, float, float, float, float]]:
    """One reactor run (a reactor cannot restart) doing every run's message benchmark."""
    results: list[tuple[float, float, float, float, float]] = []

    @defer.inlineCallbacks
    def main(reactor: Any) -> Any:
        for run, engine in enumerate(engines):
            pool = DatabasePool.from_config(engine, reactor, config)
            pool.start()
            try:
                cpu_before = cpu_seconds(server)
                rate_b, stall_b, batches = yield bench_batched(
                    reactor, pool, n_batched, run, config)
                cost_b = (cpu_seconds(server) - cpu_before) / n_batched * 1e6
                rate_s, stall_s = yield bench_single(
                    reactor, pool, n_single, 1000 + run, config.pool_size)
            finally:
                pool.stop()
            results.append((rate_b, stall_b, rate_s, stall_s, cost_b))
            print(f"run {run + 1}: messages batched {rate_b:,.0f} rows/s ({batches} batches, "
                  f"{cost_b:.0f} us CPU per row, stall {stall_b:.1f} ms), one by one "
                  f"{rate_s:,.0f} rows/s (stall {stall_s:.1f} ms)", flush=True)

    # As the composition root should: move start-up objects out of the
    # collector's way so a full collection does not stall the reactor.
    gc.collect()
    gc.freeze()
    _react_once(main)
    return results


def _react_once(main: Callable[[Any], defer.Deferred[None]]) -> None:
    # task.react stops the process; run the reactor once per benchmark run instead.
    from twisted.internet import reactor

    failures: list[Any] = []

    def start() -> None:
        d = main(reactor)
        d.addErrback(failures.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if failures:
        failures[0].raiseException()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=20_000, help="batched inserts")
    parser.add_argument("--single", type=int, default=2_000, help="one-by-one inserts")
    parser.add_argument("--batch-rows", type=int, default=DatabaseConfig.batch_max_rows,
                        help="database.batch_max_rows (default: the product default)")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))
    config = DatabaseConfig(pool_size=4, batch_max_rows=args.batch_rows)
    imports, costs, batched, singles, stalls = [], [], [], [], []
    batch_costs: list[float] = []
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mepl-bench-") as tmp:
        server = start_embedded(Path(tmp) / "state", database="postgres")
        try:
            csv_path = Path(tmp) / "devices.csv"
            write_csv(csv_path, args.devices, 0)
            for run in range(args.runs):
                engine = fresh_engine(server, f"bench_{run}", config)
                try:
                    rate, cost = bench_import(engine, server, csv_path, args.devices)
                    imports.append(rate)
                    costs.append(cost)
                    print(f"run {run + 1}: import {rate:,.0f} devices/s, {cost:.0f} us CPU "
                          "per device (client + server)", flush=True)
                finally:
                    engine.dispose()
            engines = [fresh_engine(server, f"bench_msg_{run}", config)
                       for run in range(args.runs)]
            try:
                for rate_b, stall_b, rate_s, stall_s, cost_b in run_messages(
                        engines, server, config, args.messages, args.single):
                    batched.append(rate_b)
                    batch_costs.append(cost_b)
                    singles.append(rate_s)
                    stalls.append(max(stall_b, stall_s))
            finally:
                for engine in engines:
                    engine.dispose()
        finally:
            server.stop()
    print(f"\nmedians over {args.runs} run(s):")
    print(f"  bulk import ({args.devices:,} rows): {statistics.median(imports):,.0f} devices/s"
          "  (target >= 20,000)")
    cost = statistics.median(costs)
    print(f"  import CPU cost: {cost:.0f} us per device, client + server: "
          f"{cores / cost * 1e6:,.0f} devices/s if all {cores} core(s) were free "
          f"(load average at start {load:.1f})")
    print(f"  message inserts, batched: {statistics.median(batched):,.0f} rows/s"
          "  (target >= 20,000)")
    cost = statistics.median(batch_costs)
    print(f"  batched insert CPU cost: {cost:.0f} us per row, client + server: "
          f"{cores / cost * 1e6:,.0f} rows/s if all {cores} core(s) were free")
    print(f"  message inserts, one by one: {statistics.median(singles):,.0f} rows/s")
    print(f"  max reactor stall: {statistics.median(stalls):.1f} ms  (target < 50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
