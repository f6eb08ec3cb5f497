"""Inbound callbacks/s through the real HTTP stack, each committed before its reply.

Three processes: this orchestrator; a server (the real reactor, twisted.web,
the Kannel callback parser, and the real message store: blobstore's
DatabasePool on the embedded PostgreSQL, group-committing concurrent
callbacks, every reply sent only after its own row's commit); and a load
client (asyncio, several keep-alive connections, closed loop) per run.

    .venv/bin/python bench/bench_http.py --runs 5
    .venv/bin/python bench/bench_http.py --runs 3 --store memory   # HTTP stack alone

Prints per-run figures and the medians.  Target: >= 2,000 callbacks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token-0123456789"
TARGET = 2000.0


def request_bytes(run: int, index: int) -> bytes:
    """One Kannel get-url callback for a binary MO with a port UDH, each from a new sender."""
    sender = f"%2B4477{(run * 1_000_000 + index) % 100_000_000:08d}"  # all distinct
    query = (f"token={TOKEN}&id=run{run}-{index}&from={sender}&to=447700900001"
             "&text=%A1%00%FFsignedframe0123456789&udh=%06%05%04%0B%84%23%F0&coding=1"
             "&charset=&smsc=carrier_a&time=1795330800")
    return (f"GET /gateways/kannel1/inbound?{query} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nUser-Agent: Kannel/1.4.5\r\n\r\n").encode("ascii")


# ---------------------------------------------------------------- server process
def serve(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry
    from twisted.internet import reactor

    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    from sms_gateway.http import (
        CallbackHandler,
        HttpConfig,
        HttpGatewayConfig,
        HttpMetrics,
        MemoryCallbackStore,
        build_site,
    )

    if args.store == "memory":
        store = MemoryCallbackStore()
    else:
        from blobstore.config import DatabaseConfig
        from blobstore.database import create_store_engine
        from blobstore.pool import DatabasePool
        from mepl.http_store import blobstore_callback_store

        db_config = DatabaseConfig(url=args.db_url, pool_size=args.db_threads)
        engine = create_store_engine(args.db_url, db_config)
        pool = DatabasePool(engine, reactor, max_threads=args.db_threads)
        pool.start()
        reactor.addSystemEventTrigger("before", "shutdown", pool.stop)
        store = blobstore_callback_store(pool, max_batch=args.max_batch,
                                         max_in_flight=args.db_threads)
    gateway = HttpGatewayConfig(name="kannel1", format="kannel", auth="token", secret=TOKEN,
                                default_region="GB")
    config = HttpConfig(port=0, gateways={"kannel1": gateway})
    handler = CallbackHandler(config, store, clock=reactor,
                              metrics=HttpMetrics(CollectorRegistry()))
    site = build_site(handler, max_body_bytes=config.max_body_bytes, reactor=reactor)
    if args.port:
        # One of several server processes sharing the port (SO_REUSEPORT).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", args.port))
        sock.listen(1024)
        sock.setblocking(False)
        port = reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, site)
        sock.close()
    else:
        port = reactor.listenTCP(0, site, interface="127.0.0.1", backlog=1024)
    print(port.getHost().port, flush=True)
    reactor.run()


# ---------------------------------------------------------------- client process
async def _worker(port: int, requests: list[bytes], latencies: list[float],
                  statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for req in requests:
        started = time.perf_counter()
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
    writer.close()
    await writer.wait_closed()


async def _load(port: int, run: int, total: int, connections: int) -> dict[str, object]:
    per = [[request_bytes(run, i) for i in range(c, total, connections)]
           for c in range(connections)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(_worker(port, reqs, latencies, statuses) for reqs in per))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": total, "elapsed": elapsed, "rate": total / elapsed,
            "statuses": statuses, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def client(args: argparse.Namespace) -> None:
    result = asyncio.run(_load(args.port, args.run, args.requests, args.connections))
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- orchestrator
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10000, help="callbacks per run")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--store", choices=("pg", "memory"), default="pg")
    parser.add_argument("--db-threads", type=int, default=1,
                        help="DatabasePool threads = batches committing at once")
    parser.add_argument("--max-batch", type=int, default=500)
    parser.add_argument("--server-procs", type=int, default=1,
                        help="server processes sharing the port with SO_REUSEPORT")
    parser.add_argument("--switch-interval", type=float, default=0.0,
                        help="sys.setswitchinterval for the server (0: Python's default)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write every run's figures and the medians here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return 0
    if args.client:
        client(args)
        return 0
    return orchestrate(args)


def orchestrate(args: argparse.Namespace) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    me = [sys.executable, str(Path(__file__).resolve())]
    server_cmd = [*me, "--serve", "--store", args.store, "--db-threads", str(args.db_threads),
                  "--max-batch", str(args.max_batch), "--switch-interval",
                  str(args.switch_interval)]
    db_url = None
    if args.store == "pg":
        from tests.support.pg import migrated_database

        db_url = migrated_database("bench")
        server_cmd += ["--db-url", db_url]
    servers: list[subprocess.Popen[str]] = []
    if args.server_procs > 1:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind(("127.0.0.1", 0))
        server_cmd += ["--port", str(probe.getsockname()[1])]
    try:
        for _ in range(args.server_procs):
            servers.append(subprocess.Popen(server_cmd, stdout=subprocess.PIPE, env=env,
                                            text=True))
        ports = set()
        for server in servers:
            assert server.stdout is not None
            ports.add(int(server.stdout.readline()))
        if args.server_procs > 1:
            probe.close()
        (port,) = ports

        def server_cpu() -> float:
            total = 0.0
            for server in servers:
                fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            return total

        def load(run: int, total: int) -> dict[str, object]:
            out = subprocess.run([*me, "--client", "--port", str(port), "--run", str(run),
                                  "--requests", str(total), "--connections",
                                  str(args.connections)],
                                 env=env, check=True, capture_output=True, text=True)
            return dict(json.loads(out.stdout))

        load(0, args.warmup)
        rates: list[float] = []
        p99s: list[float] = []
        runs: list[dict[str, object]] = []
        cpu_us: list[float] = []
        print(f"store={args.store} requests/run={args.requests} "
              f"connections={args.connections} server_procs={args.server_procs} "
              f"db_threads={args.db_threads} "
              f"switch_interval={args.switch_interval or 'default'}")
        for run in range(1, args.runs + 1):
            cpu_before = server_cpu()
            r = load(run, args.requests)
            cpu_us.append((server_cpu() - cpu_before) / args.requests * 1e6)
            rates.append(float(r["rate"]))  # type: ignore[arg-type]
            p99s.append(float(r["p99_ms"]))  # type: ignore[arg-type]
            runs.append({**r, "server_cpu_us": cpu_us[-1]})
            print(f"run {run}: {r['rate']:.0f} callbacks/s  p50 {r['p50_ms']:.1f} ms  "
                  f"p99 {r['p99_ms']:.1f} ms  server CPU {cpu_us[-1]:.0f} us/callback  "
                  f"statuses {r['statuses']}")
        committed = None
        if db_url is not None:
            from sqlalchemy import create_engine, text

            engine = create_engine(db_url)
            with engine.connect() as conn:
                committed = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
            engine.dispose()
        median = statistics.median(rates)
        print(f"server CPU per callback (median): {statistics.median(cpu_us):.0f} us "
              f"(one free core per process would carry "
              f"{args.server_procs * 1e6 / statistics.median(cpu_us):.0f}/s); "
              f"load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"median: {median:.0f} callbacks/s (p99 median {statistics.median(p99s):.1f} ms)"
              f"; target {TARGET:.0f}: {'met' if median >= TARGET else 'NOT met'}")
        if committed is not None:
            expected = args.warmup + args.runs * args.requests
            print(f"rows committed: {committed} (expected {expected})")
        if args.json is not None:
            args.json.write_text(json.dumps({
                "options": {k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()},
                "runs": runs, "median_rate": median, "target": TARGET,
                "rows_committed": committed,
                "rows_expected": args.warmup + args.runs * args.requests}, indent=1))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
