"""psycopg2 as MEPL drives it against psycopg 3 (binary, prepared, pipelined): CPU per transaction.

An experiment behind a claim in docs/benchmarks.md, not a product path:
psycopg 3 is not installed with MEPL (``pip install "psycopg[binary]"`` to
run this).  Each transaction has the shape of one inbound apply batch of 13
items: lock the rows (``FOR NO KEY UPDATE``), update them from arrays
(``unnest``), insert 13 history rows from arrays, ``COPY`` 13 message rows,
commit.  The psycopg2 variant sends what :mod:`blobstore.prepared` sends
(the plan guards and ``EXECUTE`` with array literals built in Python, one
round trip per statement); psycopg 3 runs the same SQL with binary
parameters and server-side prepared statements, once statement by
statement and once in pipeline mode (everything but the ``COPY`` in one
round trip).  Printed per transaction: wall time, the client's CPU
(``time.process_time``) and the server backend's CPU (``/proc``, so the
server must run on this machine: the embedded one by default).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

from blobstore.embedded import start_embedded

BATCH = 13
LOCK = "SELECT id, a, b FROM t WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE"
UPDATE = ("UPDATE t SET c = v.c, b = v.b FROM unnest($1::bigint[], $2::bigint[], $3::text[]) "
          "AS v(id, c, b) WHERE t.id = v.id AND t.id = ANY($1::bigint[])")
INSERT = ("INSERT INTO ev (cid, kind, detail, at) SELECT * FROM unnest($1::bigint[], "
          "$2::text[], $3::text[], $4::timestamptz[])")
COPY = "COPY m (direction, kind, link, peer, payload, sha, meta) FROM STDIN"
GUARDS = ("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
          "SET LOCAL plan_cache_mode = force_generic_plan; ")
GUARDS_ONE = ("SELECT set_config('enable_seqscan', 'off', true), "
              "set_config('enable_bitmapscan', 'off', true), "
              "set_config('plan_cache_mode', 'force_generic_plan', true)")
PAYLOAD = "\\\\x" + bytes(range(140)).hex()


def conninfo(url: str) -> str:
    """A libpq conninfo string for an SQLAlchemy URL (socket directory included)."""
    u = make_url(url)
    parts = {"host": u.query.get("host") or u.host, "port": u.port, "user": u.username,
             "password": u.password, "dbname": u.database}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def setup(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    for statement in (
            "DROP TABLE IF EXISTS t, ev, m",
            "CREATE TABLE t (id bigint PRIMARY KEY, a bigint, b text, c bigint)",
            "CREATE INDEX ON t (a)",
            "INSERT INTO t SELECT g, g, 'x', NULL FROM generate_series(1, 200000) g",
            "CREATE TABLE ev (id bigserial PRIMARY KEY, cid bigint, kind text, detail text, "
            "at timestamptz)",
            "CREATE INDEX ON ev (cid, id)",
            "CREATE TABLE m (id bigserial PRIMARY KEY, direction text, kind text, link text, "
            "peer text, payload bytea, sha bytea, meta jsonb, created_at timestamptz "
            "DEFAULT now())",
            "VACUUM ANALYZE"):
        cur.execute(statement)
    conn.close()


def backend_cpu(pid: int) -> float:
    """User + system CPU seconds of a server process (0 when it is not on this machine)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch(i: int) -> tuple[list[int], list[int], list[str], list[str], list[datetime]]:
    base = (i * BATCH) % 190_000 + 1
    ids = list(range(base, base + BATCH))
    now = datetime.now(UTC)
    return ids, [x * 7 for x in ids], ["reply"] * BATCH, ['{"s": 1}'] * BATCH, [now] * BATCH


def literal(values: Any) -> str:
    """An array literal, as blobstore.array_literals builds them."""
    return "{" + ",".join('"' + str(v).replace('"', '\\"') + '"' for v in values) + "}"


def copy_text(ids: list[int]) -> str:
    return "".join(f"in\tmo\tsim\t+4477009{x % 100000:05d}\t{PAYLOAD}\t{PAYLOAD[:67]}\t{{}}\n"
                   for x in ids)


def timed(n: int, pid: int, one: Callable[[int], None]) -> tuple[float, float, float]:
    t0, c0, s0 = time.perf_counter(), time.process_time(), backend_cpu(pid)
    for i in range(n):
        one(i)
    return ((time.perf_counter() - t0) / n, (time.process_time() - c0) / n,
            (backend_cpu(pid) - s0) / n)


def run_psycopg2(dsn: str, n: int) -> tuple[float, float, float]:
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    cur.execute("PREPARE lk(bigint[]) AS " + LOCK)
    cur.execute("PREPARE up(bigint[], bigint[], text[]) AS " + UPDATE)
    cur.execute("PREPARE ins(bigint[], text[], text[], timestamptz[]) AS " + INSERT)
    conn.commit()

    def one(i: int) -> None:
        ids, cs, kinds, details, ats = batch(i)
        cur = conn.cursor()
        cur.execute(GUARDS + "EXECUTE lk(CAST(%(ids)s AS bigint[]))", {"ids": literal(ids)})
        cur.fetchall()
        cur.execute("EXECUTE up(CAST(%(ids)s AS bigint[]), CAST(%(cs)s AS bigint[]), "
                    "CAST(%(bs)s AS text[]))",
                    {"ids": literal(ids), "cs": literal(cs), "bs": literal(kinds)})
        cur.execute("EXECUTE ins(CAST(%(ids)s AS bigint[]), CAST(%(k)s AS text[]), "
                    "CAST(%(d)s AS text[]), CAST(%(a)s AS timestamptz[]))",
                    {"ids": literal(ids), "k": literal(kinds), "d": literal(details),
                     "a": literal(a.isoformat() for a in ats)})
        cur.copy_expert(COPY, io.StringIO(copy_text(ids)))
        cur.close()
        conn.commit()

    try:
        return timed(n, pid, one)
    finally:
        conn.close()


def run_psycopg3(dsn: str, n: int, *, pipeline: bool) -> tuple[float, float, float]:
    import psycopg  # optional: only this experiment needs it

    conn = psycopg.connect(dsn, prepare_threshold=0)
    pid = conn.info.backend_pid
    lock_sql = LOCK.replace("$1", "%s")
    update_sql = UPDATE.replace("$1", "%(i)s").replace("$2", "%(c)s").replace("$3", "%(b)s")
    insert_sql = (INSERT.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s")
                  .replace("$4", "%s"))

    def statements(i: int) -> Any:
        ids, cs, kinds, details, ats = batch(i)
        guard, lock, other = (conn.cursor(binary=True) for _ in range(3))
        guard.execute(GUARDS_ONE)
        lock.execute(lock_sql, (ids,))
        other.execute(update_sql, {"i": ids, "c": cs, "b": kinds})
        other.execute(insert_sql, (ids, kinds, details, ats))
        return ids, lock

    def one(i: int) -> None:
        if pipeline:
            with conn.pipeline():
                ids, lock = statements(i)
        else:
            ids, lock = statements(i)
        lock.fetchall()
        with conn.cursor().copy(COPY) as copy:
            copy.write(copy_text(ids))
        conn.commit()

    try:
        return timed(n, pid, one)
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1500, help="per run (1500)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (3)")
    parser.add_argument("--database-url", metavar="URL",
                        help="a PostgreSQL on this machine (default: a fresh embedded one)")
    args = parser.parse_args()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        parser.error('psycopg 3 is not installed: pip install "psycopg[binary]"')
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))
    with tempfile.TemporaryDirectory(prefix="mepl-bench-driver-") as tmp:
        server = None
        if args.database_url is None:
            server = start_embedded(Path(tmp) / "state", database="postgres")
        url = args.database_url or server.url("postgres")  # type: ignore[union-attr]
        dsn = conninfo(url)
        try:
            setup(dsn)
            variants: dict[str, Callable[[int], tuple[float, float, float]]] = {
                "psycopg2, as MEPL": lambda n: run_psycopg2(dsn, n),
                "psycopg 3, binary + prepared": lambda n: run_psycopg3(dsn, n, pipeline=False),
                "psycopg 3, pipeline": lambda n: run_psycopg3(dsn, n, pipeline=True),
            }
            results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
            for run in variants.values():
                run(200)  # warm-up: plans, caches
            for _ in range(args.runs):
                for name, run in variants.items():
                    results[name].append(run(args.transactions))
        finally:
            if server is not None:
                server.stop()
    print(f"{args.transactions} transactions of {BATCH} items, {args.runs} interleaved runs; "
          f"load average {os.getloadavg()[0]:.2f}; medians (min-max) in us per transaction")
    print(f"{'variant':30}{'wall':>22}{'client CPU':>22}{'server CPU':>22}")
    for name, runs in results.items():
        cells = []
        for k in range(3):
            values = [r[k] * 1e6 for r in runs]
            cells.append(f"{statistics.median(values):,.0f} ({min(values):,.0f}-"
                         f"{max(values):,.0f})")
        print(f"{name:30}" + "".join(f"{c:>22}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
