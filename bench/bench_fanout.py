"""Whole-loop throughput: N reference handsets, one fan-out, their replies, their alerts.

This process runs the SMSC simulator and a fleet of N reference handsets
(:mod:`mepl.fleet`: each verifies its frame and answers with a signed reply)
on its reactor, an embedded PostgreSQL (or ``--database-url``), and
``--processes`` real ``mepl run`` OS processes bound to the simulator, so
psutil sees the CPU and memory of each MEPL process, of PostgreSQL and of
this harness separately.  Each run, on a fresh database:

1. enrol N devices (the importer's bulk path, keys in batches, pinned to the
   active server key);
2. latency on an idle system: ``--latency-samples`` single commands, one at
   a time, queued -> submit_sm at the SMSC, and queued -> done;
3. fan-out: one group command for all N devices; queued -> every command
   submitted (its submit_sm_resp recorded) and -> every command done (receipt
   and verified reply applied), progress sampled every ``--sample-interval``;
4. inbound: every handset sends one signed ``invalid_sim`` alert; stored
   (deliver_sm_resp) and applied (``security_events`` rows) per second.

Per phase: transactions (``pg_stat_database``, the harness's own excluded),
CPU microseconds per command of each MEPL process, of PostgreSQL and of the
harness; peak memory of each.  ``--runs K`` prints medians with min-max.

    .venv/bin/python bench/bench_fanout.py --devices 10000 --runs 3
    .venv/bin/python bench/bench_fanout.py --devices 10000 --processes 2 --runs 3
    .venv/bin/python bench/bench_fanout.py --devices 100000 --runs 1 --timeout 3600
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psutil
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blobstore.commands import NewCommand, insert_command_txn, insert_group_commands_txn
from blobstore.embedded import EmbeddedServer, start_embedded
from blobstore.identity import luhn_check_digit
from blobstore.importer import Enrolling, ImportRow, import_rows_txn
from blobstore.migrate import upgrade
from mepl.fleet import SimulatedDevice, SimulatedFleet
from mepl.settings import DispatchConfig
from signing.alerts import make_alert
from signing.handset import Handset
from signing.keys import SigningKey, device_key_id
from signing.keystore import ServerKeyStore
from signing.provisioning import ProvisioningBundle
from signing.transport import DEVICE_PORT, SERVER_PORT
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator, SubmittedMessage
from sms_gateway.udh import Udh

ROOT = Path(__file__).resolve().parent.parent
SERVER = "+447700900000"
GROUP = "bench-fleet"
SIM_SYSTEM_ID = "bench"
BATCH = 10_000
FINISHED = ("done", "refused", "failed", "expired", "cancelled")
WARMUP = 3  # single commands sent before the latency samples, not counted


# ---------------------------------------------------------------- identities
def imei(i: int) -> str:
    body = f"35{i:012d}"
    return body + luhn_check_digit(body)


def msisdn(i: int) -> str:
    return f"+4478{i:08d}"


def imsi(i: int) -> str:
    return f"23415{i:010d}"


def device_keys(n: int, seed: bytes) -> list[SigningKey]:
    """Deterministic device keys (no entropy spent, the same fleet every run)."""
    keys = []
    for i in range(n):
        key = SigningKey.from_seed(1, hashlib.sha256(seed + i.to_bytes(8, "big")).digest())
        keys.append(SigningKey(device_key_id(key.public.raw), key.private_key))
    return keys


class SpreadingSimulator(SmscSimulator):
    """The bundled simulator delivers every MO on its first bound receiver; an SMSC
    spreads them over the binds, so this one takes the receivers in turn."""

    def inject_mo(self, sender: str, receiver: str, payload: bytes, data_coding: int = 0x04,
                  udh: Udh | None = None, *, sar: tuple[int, int, int] | None = None,
                  tlvs: Sequence[tuple[int, bytes]] = ()) -> defer.Deferred[int]:
        if len(self.connections) > 1:
            self.connections.append(self.connections.pop(0))
        return super().inject_mo(sender, receiver, payload, data_coding, udh, sar=sar,
                                 tlvs=tlvs)


class BenchError(Exception):
    """A run could not finish; the message says where and what was seen."""


# ------------------------------------------------------------------ database
class HarnessDb:
    """The harness's own connection: every use is one transaction, counted, so the
    transactions of the MEPL processes can be told apart in ``pg_stat_database``."""

    _lock = threading.Lock()
    used = 0  # transactions begun by every HarnessDb of this process

    def __init__(self, url: str) -> None:
        # No parallel workers: a progress count that forks two helpers (each counted
        # as server CPU once they exit) every sample took a quarter of a core at 100k.
        self.engine = create_engine(url, pool_size=1, max_overflow=0, connect_args={
            "options": "-c max_parallel_workers_per_gather=0 -c jit=off"})
        with self.begin() as conn:
            self.backend_pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    @classmethod
    def transactions(cls) -> int:
        with cls._lock:
            return cls.used

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with HarnessDb._lock:
            HarnessDb.used += 1
        with self.engine.begin() as conn:
            yield conn

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.begin() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def one(self, sql: str, **params: Any) -> Any:
        with self.begin() as conn:
            return conn.execute(text(sql), params).one()

    def close(self) -> None:
        self.engine.dispose()


def enrol(engine: Engine, keys: Sequence[SigningKey], publics: Sequence[bytes],
          key_id: int) -> None:
    """Register N devices in GROUP with their keys, provisioned and pinned to ``key_id``."""
    n = len(keys)
    # The product's bulk import with keys (mepl devices import, public_key column):
    # COPY into a stage, one statement registers, enrols and pins each batch.
    enrolling = Enrolling(lambda raw: keys_by_public[raw], key_id)
    keys_by_public = {publics[i]: keys[i].key_id for i in range(n)}
    for start in range(0, n, BATCH):
        rows = [ImportRow(i + 2, imei(i), imsi(i), msisdn(i), GROUP, publics[i])
                for i in range(start, min(n, start + BATCH))]
        with engine.begin() as conn:
            done = import_rows_txn(conn, rows, enrolling)
        if done.errors or done.enrolled != len(rows):
            raise BenchError(f"enrolment: {len(done.errors)} rows refused, "
                             f"{done.enrolled} of {len(rows)} enrolled")
    # As autovacuum would have done on a fleet enrolled some time ago: the fleet's
    # tables only.  The queue and history tables are left alone, as on a system
    # whose history is already large: statistics saying "empty" would make every
    # connection's cached foreign-key plans scan them sequentially until the next
    # autovacuum (pg_stat_statements: 3.2 ms per key check on messages at 20k rows).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in FLEET_TABLES:
            conn.execute(text(f"VACUUM ANALYZE {table}"))


def device_ids(engine: Engine, count: int) -> list[int]:
    """The ids of devices 0 .. count - 1, in that order."""
    wanted = [imei(i) for i in range(count)]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT imei, id FROM devices WHERE imei = ANY(:imeis)"),
                            {"imeis": wanted}).all()
    ids = {str(r[0]): int(r[1]) for r in rows}
    return [ids[k] for k in wanted]


FLEET_TABLES = ("devices", "device_identity_history", "groups", "group_members",
                "device_server_keys")


class Databases:
    """Creates (and drops) one fresh database per run on the embedded or given server."""

    def __init__(self, server: EmbeddedServer | None, url: str | None) -> None:
        self.server = server
        self.url = url

    def admin_url(self) -> str:
        if self.server is not None:
            return self.server.url("postgres")
        assert self.url is not None
        return self.url

    def url_of(self, name: str) -> str:
        if self.server is not None:
            return self.server.url(name)
        assert self.url is not None
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def _admin(self, sql: str) -> None:
        admin = create_engine(self.admin_url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(sql))
        finally:
            admin.dispose()

    def create(self, name: str) -> str:
        self._admin(f'DROP DATABASE IF EXISTS "{name}"')
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DbCounters(NamedTuple):
    """What the database has done so far, read at the start and the end of a phase."""

    xacts: int
    """transactions of this database (pg_stat_database)"""
    harness: int
    """harness transactions counted before this reading"""
    wal: int
    """bytes of WAL written by the whole server (pg_current_wal_lsn)"""
    rows: int
    """row versions written to this database's tables: inserted, updated, deleted"""


def db_counters(db: HarnessDb) -> DbCounters:
    """The database's counters now (its statistics lag by up to a second: settle first)."""
    harness = HarnessDb.transactions()
    row = db.one("SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database "
                 "WHERE datname = current_database()), "
                 "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
                 "(SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint "
                 "FROM pg_stat_user_tables)")
    return DbCounters(int(row[0]), harness, int(row[1]), int(row[2]))


def mepl_transactions(before: DbCounters, after: DbCounters) -> int:
    return (after.xacts - before.xacts) - (after.harness - before.harness)


def write_figures(before: DbCounters, after: DbCounters, n: int, prefix: str) -> dict[str, float]:
    """WAL bytes and row versions written per item: what a phase cost the disk, not the clock."""
    return {f"{prefix}_wal_bytes": (after.wal - before.wal) / n,
            f"{prefix}_row_writes": (after.rows - before.rows) / n}


# ----------------------------------------------------------------- processes
def cpu_of(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def peak_rss_mb(pid: int) -> float | None:
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    with suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class PgProcesses:
    """The PostgreSQL server's processes, found from a backend: CPU and memory."""

    def __init__(self, backend_pid: int, exclude: set[int]) -> None:
        self.postmaster: psutil.Process | None = None
        self.exclude = exclude
        with suppress(psutil.Error):
            self.postmaster = psutil.Process(backend_pid).parent()
            self.cpu()

    def _children(self) -> list[psutil.Process]:
        assert self.postmaster is not None
        return [c for c in self.postmaster.children() if c.pid not in self.exclude]

    def cpu(self) -> float | None:
        """CPU seconds of the server so far: the postmaster, its exited children (reaped
        into its children_* times) and the live ones but the harness's backends."""
        if self.postmaster is None:
            return None
        times = self.postmaster.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self._children():
            with suppress(psutil.Error):
                total += cpu_of(child)
        return float(total)

    def memory_mb(self) -> tuple[float, float] | None:
        """(sum of PSS over every server process, the largest single RSS), in MB."""
        if self.postmaster is None:
            return None
        pss = rss = 0.0
        for proc in [self.postmaster, *self._children()]:
            with suppress(psutil.Error):
                info = proc.memory_full_info()
                pss += info.pss
                rss = max(rss, info.rss)
        return pss / 2**20, rss / 2**20


class MeplProcess:
    """One ``mepl run`` OS process, its config and its output file."""

    live: set[MeplProcess] = set()  # stopped at exit whatever happened (see stop_leftovers)

    def __init__(self, index: int, workdir: Path, state: Path, url: str, port: int,
                 password: str, options: argparse.Namespace) -> None:
        self.index = index
        self.config = workdir / f"mepl-{index}.toml"
        self.log = workdir / f"mepl-{index}.log"
        self.config.write_text(mepl_config(port, password, options))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEPL_")}
        env["MEPL_DATABASE_URL"] = url
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "mepl.cli.main", "run", "--config", str(self.config),
                 "--state-dir", str(state)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        MeplProcess.live.add(self)
        self.proc = psutil.Process(self.popen.pid)

    def tail(self, lines: int = 25) -> str:
        with suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def cpu(self) -> float:
        return cpu_of(self.proc)

    @classmethod
    def stop_leftovers(cls) -> None:
        """SIGTERM (then SIGKILL) the processes still running: after an interrupt."""
        left = [m for m in cls.live if m.popen.poll() is None]
        for m in left:
            print(f"stopping mepl process {m.index} (pid {m.popen.pid})", file=sys.stderr)
            m.popen.send_signal(signal.SIGTERM)
        for m in left:
            try:
                m.popen.wait(10)
            except subprocess.TimeoutExpired:
                m.popen.kill()
                m.popen.wait()
        cls.live.clear()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def mepl_settings(options: argparse.Namespace, port: int = 0,
                  password: str = "") -> dict[str, dict[str, Any]]:
    """The mepl processes' configuration by TOML section, ``--set`` applied."""
    sections: dict[str, dict[str, Any]] = {
        "mepl": {"log_level": options.log_level},
        "dispatch": {"server_number": SERVER},
        "smpp.links.sim": {"host": "127.0.0.1", "port": port, "system_id": SIM_SYSTEM_ID,
                           "password": password},
    }
    for item in options.set:
        key, _, raw = item.partition("=")
        section, _, name = key.rpartition(".")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        sections.setdefault(section, {})[name] = value
    return sections


def mepl_config(port: int, password: str, options: argparse.Namespace) -> str:
    sections = mepl_settings(options, port, password)
    return "".join(f"[{section}]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                              for k, v in values.items())
                   for section, values in sections.items())


# ------------------------------------------------------------------- sampler
class Sampler(threading.Thread):
    """Samples memory (and, during a phase, the database's progress) in its own thread.

    The progress count reads the whole fan-out (a scan of ``commands`` or
    ``security_events``), so it runs at most once per ``DB_BUDGET`` times its
    own last duration: at most about 2 % of one core whatever the fleet size
    (at 100k devices an unbudgeted count every 0.2 s took a quarter of a core
    from the loop it measures).  The harness's own figures (``extra``) are
    sampled every interval.
    """

    DB_BUDGET = 50

    def __init__(self, db: HarnessDb, interval: float, mepl: Sequence[MeplProcess],
                 pg: PgProcesses) -> None:
        super().__init__(name="sampler", daemon=True)
        self.db = db
        self.interval = interval
        self.mepl = mepl
        self.pg = pg
        self.stop_event = threading.Event()
        self.query: Callable[[Connection], dict[str, int]] | None = None
        self.extra: Callable[[], dict[str, int]] | None = None
        self.origin = 0.0
        self.series: list[dict[str, float]] = []
        self.latest: dict[str, int] | None = None
        self.peak_pg_pss = 0.0
        self.peak_pg_rss = 0.0
        self.peak_harness_pss = 0.0
        self.error: BaseException | None = None
        self.generation = 0
        self._lock = threading.Lock()

    def phase(self, query: Callable[[Connection], dict[str, int]] | None,
              extra: Callable[[], dict[str, int]] | None, origin: float) -> list[dict[str, float]]:
        """Start sampling ``query`` (None: stop); returns the new series."""
        with self._lock:
            self.generation += 1
            self.latest = None
            self.series = []
            self.origin = origin
            self.extra = extra
            self.query = query
            return self.series

    def run(self) -> None:
        ticks = 0
        period = max(1, round(1.0 / self.interval))
        next_count = 0.0
        try:
            while not self.stop_event.wait(self.interval):
                if ticks % period == 0:
                    memory = self.pg.memory_mb()
                    if memory is not None:
                        self.peak_pg_pss = max(self.peak_pg_pss, memory[0])
                        self.peak_pg_rss = max(self.peak_pg_rss, memory[1])
                ticks += 1
                with self._lock:
                    query, series, extra = self.query, self.series, self.extra
                    generation, origin = self.generation, self.origin
                if query is None:
                    continue
                now = time.time()
                counts: dict[str, int] | None = None
                if time.monotonic() >= next_count:
                    started = time.monotonic()
                    with self.db.begin() as conn:
                        counts = query(conn)
                    next_count = started + self.DB_BUDGET * (time.monotonic() - started)
                sample: dict[str, float] = {"t": round(now - origin, 3), **(counts or {})}
                if extra is not None:
                    sample.update(extra())
                for m in self.mepl:
                    with suppress(psutil.Error):
                        sample[f"rss_mb_{m.index}"] = round(m.proc.memory_info().rss / 2**20, 1)
                with self._lock:
                    if generation == self.generation:  # not a sample of a phase now over
                        series.append(sample)
                        if counts is not None:
                            self.latest = counts
        except BaseException as exc:
            self.error = exc


def fanout_counts(tag: str) -> Callable[[Connection], dict[str, int]]:
    def query(conn: Connection) -> dict[str, int]:
        rows = conn.execute(text("SELECT state, count(*) FROM commands "
                                 "WHERE requested_by = :tag GROUP BY state"), {"tag": tag})
        states = {str(r[0]): int(r[1]) for r in rows}
        return {"queued": states.get("queued", 0), "sending": states.get("sending", 0),
                "sent": sum(v for k, v in states.items() if k not in ("queued", "sending")),
                "done": states.get("done", 0),
                "finished": sum(v for k, v in states.items() if k in FINISHED)}
    return query


def alert_counts(conn: Connection) -> dict[str, int]:
    return {"applied": int(conn.execute(text(
        "SELECT count(*) FROM security_events WHERE kind = 'alert:invalid_sim'")).scalar_one())}


# ---------------------------------------------------------------------- runs
def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


class Run:
    """One run: a fresh database, a fresh fleet, 1 or 2 ``mepl run`` processes."""

    def __init__(self, reactor: Any, ctx: Context, index: int) -> None:
        self.reactor = reactor
        self.ctx = ctx
        self.index = index
        self.opts = ctx.options
        self.n = self.opts.devices
        self.result: dict[str, Any] = {"run": index + 1}
        self.metrics: dict[str, float | None] = {}
        self.checks: dict[str, tuple[int, int]] = {}
        self.mepl: list[MeplProcess] = []
        self.phase_name = "setup"
        self.poll_interval = float(mepl_settings(ctx.options)["dispatch"].get(
            "poll_interval_s", DispatchConfig.poll_interval_s))

    def fail(self, message: str) -> BenchError:
        return BenchError(f"run {self.index + 1}, {self.phase_name}: {message}")

    async def wait_for(self, what: str, ready: Callable[[], bool | defer.Deferred[bool]],
                       timeout: float, status: Callable[[], str], every: float = 0.05) -> None:
        """Poll ``ready`` (a Deferred when it needs the database) until true; a mepl
        process that exits, a sampler that fails or the timeout ends the run."""
        deadline = time.monotonic() + timeout
        while not await defer.maybeDeferred(ready):
            if self.sampler.error is not None:
                raise self.fail(f"sampler failed: {self.sampler.error!r}")
            for m in self.mepl:
                if m.popen.poll() is not None:
                    raise self.fail(f"mepl process {m.index} exited with status "
                                    f"{m.popen.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                raise self.fail(f"timed out after {timeout:.0f} s waiting for {what}; "
                                f"{status()}")
            await sleep(self.reactor, every)

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await deferToThread(fn, *args)

    # -- setup ---------------------------------------------------------------
    async def setup(self) -> None:
        ctx, opts = self.ctx, self.opts
        self.load_before = os.getloadavg()
        self.db_name = f"bench_fanout_{os.getpid()}_{self.index + 1}"
        url = await self.db(ctx.databases.create, self.db_name)
        self.url = url
        engine = create_engine(url)
        try:
            await self.db(upgrade, engine)
            t0 = time.perf_counter()
            await self.db(enrol, engine, ctx.keys, ctx.publics, ctx.key_id)
            self.metrics["enrol_devices_per_s"] = self.n / (time.perf_counter() - t0)
            self.latency_ids = await self.db(device_ids, engine,
                                             min(self.n, WARMUP + opts.latency_samples))
        finally:
            engine.dispose()
        password = secrets.token_hex(4)
        self.sim = SpreadingSimulator(SimulatorConfig(
            system_id=SIM_SYSTEM_ID, password=password, receipt_delay=opts.receipt_delay,
            window=opts.sim_window), clock=self.reactor)
        self.port = await TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(
            self.sim.factory())
        self.fleet = SimulatedFleet(self.sim, self.reactor, SERVER, reply_delay=opts.reply_delay)
        self.devices = []
        for i, key in enumerate(ctx.keys):
            bundle = dataclasses.replace(ctx.bundle, imei=imei(i))
            device = SimulatedDevice(msisdn(i), imsi(i), Handset.from_bundle(bundle, key))
            self.fleet.add(device)
            self.devices.append(device)
        self.submits: dict[str, defer.Deferred[float]] = {}
        self.sim.add_submit_observer(self._on_submit)
        gc.collect()
        gc.freeze()
        self.harness_db = await self.db(HarnessDb, url)
        self.sampler_db = await self.db(HarnessDb, url)
        workdir = ctx.workdir / f"run-{self.index + 1}"
        workdir.mkdir()
        self.mepl = [MeplProcess(k + 1, workdir, ctx.state, url, self.port.getHost().port,
                                 password, opts) for k in range(opts.processes)]
        self.pg = PgProcesses(self.harness_db.backend_pid,
                              {self.harness_db.backend_pid, self.sampler_db.backend_pid})
        self.sampler = Sampler(self.sampler_db, opts.sample_interval, self.mepl, self.pg)
        self.sampler.start()
        self.phase_name = "start of the mepl processes"
        await self.wait_for("every mepl process to bind",
                            lambda: self.sim.bound_count() == opts.processes, 60,
                            lambda: f"{self.sim.bound_count()} bound")
        await sleep(self.reactor, self.opts.settle)

    def _on_submit(self, submitted: SubmittedMessage) -> None:
        d = self.submits.pop("+" + submitted.sm.destination_addr.lstrip("+"), None)
        if d is not None:
            d.callback(submitted.at)

    # -- measurements ----------------------------------------------------------
    def cpu_snapshot(self) -> dict[str, float | None]:
        snap: dict[str, float | None] = {f"mepl_{m.index}": m.cpu() for m in self.mepl}
        snap["postgres"] = self.pg.cpu()
        snap["harness"] = cpu_of(psutil.Process())
        return snap

    def cpu_per(self, before: Mapping[str, float | None], after: Mapping[str, float | None],
                count: int, prefix: str) -> None:
        total = 0.0
        for name, start in before.items():
            end = after[name]
            value = None if start is None or end is None else (end - start) / count * 1e6
            self.metrics[f"{prefix}_{name}"] = value
            if name.startswith("mepl_") and value is not None:
                total += value
        self.metrics[f"{prefix}_mepl"] = total

    def busy_and_acks(self, prefix: str, cpu0: Mapping[str, float | None],
                      cpu1: Mapping[str, float | None], wall0: float) -> None:
        """How busy the cores were in a phase, and how fast MEPL acknowledged deliver_sm."""
        busy = sum((cpu1[k] or 0) - (cpu0[k] or 0) for k in cpu0)
        self.metrics[f"{prefix}_cpu_busy_percent"] = (
            busy / ((time.perf_counter() - wall0) * (os.cpu_count() or 1)) * 100)
        acks = [1000 * s for s in self.sim.ack_seconds]
        if acks:
            self.metrics[f"{prefix}_ack_p50_ms"] = percentile(acks, 50)
            self.metrics[f"{prefix}_ack_p99_ms"] = percentile(acks, 99)

    # -- phase: latency on an idle system ---------------------------------------
    async def latency(self) -> None:
        self.phase_name = "latency phase"
        rng = random.Random(self.index)
        to_submit: list[float] = []
        round_trip: list[float] = []
        for k, device_id in enumerate(self.latency_ids):
            number = msisdn(k)
            waiter: defer.Deferred[float] = defer.Deferred()
            self.submits[number] = waiter
            waiter.addTimeout(self.opts.timeout, self.reactor)
            command_id, committed = await self.db(self._queue_one, device_id, k)
            try:
                submitted_at = await waiter
            except defer.TimeoutError:
                raise self.fail(f"command {command_id} not submitted within "
                                f"{self.opts.timeout:.0f} s") from None
            finished = await self.db(self._wait_done, command_id)
            if k >= WARMUP:
                to_submit.append((submitted_at - committed) * 1000)
                round_trip.append((finished - committed) * 1000)
            # Each command starts just after the previous one finished, which is locked
            # to the dispatcher's poll; a pause spread over a whole poll interval makes
            # the moment of the next insert uniform over the poll's phase again.
            await sleep(self.reactor, 0.05 + rng.uniform(0, self.poll_interval))
        self.result["latency_ms"] = {"to_submit": [round(v, 2) for v in to_submit],
                                     "round_trip": [round(v, 2) for v in round_trip]}
        if to_submit:
            for name, values in (("submit", to_submit), ("round_trip", round_trip)):
                self.metrics[f"latency_{name}_p50_ms"] = percentile(values, 50)
                self.metrics[f"latency_{name}_p99_ms"] = percentile(values, 99)

    def _queue_one(self, device_id: int, k: int) -> tuple[int, float]:
        with self.harness_db.begin() as conn:
            command_id = insert_command_txn(conn, device_id, NewCommand(
                opcode="status_query", requested_by=f"bench:latency:{k}",
                not_after=datetime.now(UTC) + timedelta(hours=1),
                arguments={"features": ["battery", "signal"]}))
        return command_id, time.time()

    def _wait_done(self, command_id: int) -> float:
        deadline = time.monotonic() + self.opts.timeout
        while time.monotonic() < deadline:
            with self.harness_db.begin() as conn:
                row = conn.execute(text("SELECT state, finished_at FROM commands WHERE id = :id"),
                                   {"id": command_id}).one()
            if row.state == "done":
                return float(row.finished_at.timestamp())
            time.sleep(0.01)
        raise self.fail(f"command {command_id} not done within {self.opts.timeout:.0f} s")

    # -- phase: fan-out ---------------------------------------------------------
    async def idle_transactions(self) -> None:
        self.phase_name = "idle"
        before = await self.db(db_counters, self.harness_db)
        cpu = self.cpu_snapshot()
        t0 = time.perf_counter()
        await sleep(self.reactor, self.opts.idle_window)
        after = await self.db(db_counters, self.harness_db)
        elapsed = time.perf_counter() - t0
        end = self.cpu_snapshot()
        self.metrics["idle_xact_per_s"] = mepl_transactions(before, after) / elapsed
        mepl_cpu = sum((end[k] or 0) - (cpu[k] or 0) for k in cpu if k.startswith("mepl_"))
        self.metrics["idle_mepl_cpu_percent"] = mepl_cpu / elapsed * 100

    async def fanout(self) -> None:
        self.phase_name = "fan-out phase"
        n = self.n
        tag = f"bench:fanout:{self.index + 1}"
        await sleep(self.reactor, self.opts.settle)  # statistics flushed: a clean start
        xact0 = await self.db(db_counters, self.harness_db)
        cpu0 = self.cpu_snapshot()
        wall0 = time.perf_counter()
        accepted0 = self.sim.stats["accepted"]
        self.sim.ack_seconds.clear()
        committed = await self.db(self._queue_fanout, tag)
        series = self.sampler.phase(fanout_counts(tag), lambda: {
            "smsc_accepted": self.sim.stats["accepted"] - accepted0}, committed)

        def status() -> str:
            return f"progress {self.sampler.latest}, simulator {self.sim.stats}"

        await self.wait_for(f"{n:,} commands finished",
                            lambda: (self.sampler.latest or {}).get("finished", 0) >= n,
                            self.opts.timeout, status)
        self.sampler.phase(None, None, 0.0)
        await self.wait_for("receipts and inbound queue settled",
                            lambda: deferToThread(self._settled), self.opts.timeout, status,
                            every=0.2)
        cpu1 = self.cpu_snapshot()
        self.busy_and_acks("fanout", cpu0, cpu1, wall0)
        await sleep(self.reactor, self.opts.settle)
        xact1 = await self.db(db_counters, self.harness_db)
        facts = await self.db(self._fanout_facts, tag)
        self.result["fanout"] = {"series": series, **facts}
        self.metrics["fanout_submitted_per_s"] = n / (facts["last_submitted"] - committed)
        self.metrics["fanout_round_trips_per_s"] = n / (facts["last_done"] - committed)
        self.metrics["fanout_first_submit_s"] = facts["first_submitted"] - committed
        self.metrics["fanout_xact_per_command"] = mepl_transactions(xact0, xact1) / n
        self.metrics.update(write_figures(xact0, xact1, n, "fanout"))
        self.cpu_per(cpu0, cpu1, n, "fanout_cpu_us")
        self.checks.update({
            "fanout commands done": (facts["states"].get("done", 0), n),
            "fanout mt messages": (facts["mt"], n),
            "fanout reply_ok events": (facts["reply_ok"], n),
        })

    def _settled(self) -> bool:
        stats = self.sim.stats
        if stats["receipts"] < stats["accepted"]:  # a receipt per accepted submit, sent yet?
            return False
        queue = self.harness_db.scalar("SELECT count(*) FROM inbound_queue")
        dlr = self.harness_db.scalar("SELECT count(*) FROM messages WHERE kind = 'dlr'")
        return bool(queue == 0 and dlr >= stats["receipts"])

    def _queue_fanout(self, tag: str) -> float:
        with self.harness_db.begin() as conn:
            count = insert_group_commands_txn(conn, GROUP, NewCommand(
                opcode="status_query", requested_by=tag,
                not_after=datetime.now(UTC) + timedelta(hours=2),
                arguments={"features": ["battery", "signal"]}))
        committed = time.time()
        if count != self.n:
            raise self.fail(f"the group command went to {count} devices, not {self.n}")
        return committed

    def _fanout_facts(self, tag: str) -> dict[str, Any]:
        with self.harness_db.begin() as conn:
            def one(sql: str) -> Any:
                return conn.execute(text(sql), {"tag": tag}).one()

            mine = "command_id IN (SELECT id FROM commands WHERE requested_by = :tag)"
            mt = one(f"SELECT count(*), extract(epoch FROM min(created_at)), "
                     f"extract(epoch FROM max(created_at)) FROM messages "
                     f"WHERE kind = 'mt' AND {mine}")
            done = one("SELECT extract(epoch FROM max(finished_at)) FROM commands "
                       "WHERE requested_by = :tag")
            events = dict(conn.execute(text(
                f"SELECT event, count(*) FROM command_events WHERE {mine} GROUP BY event"),
                {"tag": tag}).all())
            claimers = one(f"SELECT count(DISTINCT actor) FROM command_events "
                           f"WHERE event = 'claim' AND {mine}")
            states = dict(conn.execute(text(
                "SELECT state, count(*) FROM commands WHERE requested_by = :tag "
                "GROUP BY state"), {"tag": tag}).all())
        return {"mt": int(mt[0]), "first_submitted": float(mt[1]),
                "last_submitted": float(mt[2]), "last_done": float(done[0]),
                "submitted_events": int(events.get("submitted", 0)),
                "reply_ok": int(events.get("reply_ok", 0)),
                "events": {str(k): int(v) for k, v in events.items()},
                "claimers": int(claimers[0]),
                "states": {str(k): int(v) for k, v in states.items()}}

    # -- phase: inbound alerts ---------------------------------------------------
    async def alerts(self) -> None:
        self.phase_name = "alert phase"
        n = self.n
        now = self.reactor.seconds()
        frames = [d.handset.alert(make_alert("invalid_sim"), now) for d in self.devices]
        await sleep(self.reactor, self.opts.settle)
        xact0 = await self.db(db_counters, self.harness_db)
        cpu0 = self.cpu_snapshot()
        wall0 = time.perf_counter()
        self.sim.ack_seconds.clear()
        acked: list[float] = []
        refused: list[int] = []

        def answered(status: int) -> None:
            if status == 0:
                acked.append(time.time())
            else:
                refused.append(status)

        t0 = time.time()
        series = self.sampler.phase(alert_counts, lambda: {"stored": len(acked)}, t0)
        for device, frame in zip(self.devices, frames, strict=True):
            self.sim.inject_mo(device.msisdn, SERVER, frame, 0x04,
                               Udh(dest_port=SERVER_PORT, src_port=DEVICE_PORT)
                               ).addCallbacks(answered, lambda f: refused.append(-1))

        def status() -> str:
            return (f"{len(acked)} stored, {len(refused)} refused, "
                    f"progress {self.sampler.latest}")

        await self.wait_for(f"{n:,} alerts applied",
                            lambda: (self.sampler.latest or {}).get("applied", 0) >= n
                            and len(acked) + len(refused) >= n, self.opts.timeout, status)
        self.sampler.phase(None, None, 0.0)
        await self.wait_for("inbound queue empty", lambda: deferToThread(
            lambda: self.harness_db.scalar("SELECT count(*) FROM inbound_queue") == 0),
            self.opts.timeout, status, every=0.2)
        cpu1 = self.cpu_snapshot()
        self.busy_and_acks("alerts", cpu0, cpu1, wall0)
        await sleep(self.reactor, self.opts.settle)
        xact1 = await self.db(db_counters, self.harness_db)
        last_applied, hwm, applied = await self.db(self._alert_facts)
        self.result["alerts"] = {"series": series, "refused": refused}
        self.metrics["alerts_stored_per_s"] = len(acked) / (max(acked) - t0) if acked else None
        self.metrics["alerts_applied_per_s"] = n / (last_applied - t0)
        self.metrics["alerts_xact_per_alert"] = mepl_transactions(xact0, xact1) / n
        self.metrics.update(write_figures(xact0, xact1, n, "alerts"))
        self.cpu_per(cpu0, cpu1, n, "alerts_cpu_us")
        self.checks.update({"alerts stored": (len(acked), n), "alerts refused": (len(refused), 0),
                            "alerts applied (security_events)": (applied, n),
                            "alert counters (sum of counter_hwm)": (hwm, n)})

    def _alert_facts(self) -> tuple[float, int, int]:
        with self.harness_db.begin() as conn:
            applied, last = conn.execute(text(
                "SELECT count(*), extract(epoch FROM max(at)) FROM security_events "
                "WHERE kind = 'alert:invalid_sim'")).one()
            hwm = conn.execute(text("SELECT sum(counter_hwm) FROM devices")).scalar_one()
        return float(last), int(hwm or 0), int(applied)

    # -- the whole run -------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        try:
            await self.setup()
            await self.latency()
            await self.idle_transactions()
            await self.fanout()
            await self.alerts()
            self.phase_name = "end of run"
            self.finish_checks()
            for m in self.mepl:
                self.metrics[f"peak_rss_mb_mepl_{m.index}"] = peak_rss_mb(m.popen.pid)
            self.metrics["peak_pss_mb_postgres"] = self.sampler.peak_pg_pss or None
            self.metrics["peak_rss_mb_postgres_largest"] = self.sampler.peak_pg_rss or None
            self.metrics["peak_rss_mb_harness"] = peak_rss_mb(os.getpid())
        except BaseException:
            self.print_logs()
            raise
        finally:
            await self.teardown()
        self.load_after = os.getloadavg()
        self.result.update(metrics=self.metrics, checks={
            k: {"got": got, "expected": want, "ok": got == want}
            for k, (got, want) in self.checks.items()},
            load_before=list(self.load_before), load_after=list(self.load_after),
            mepl_log_bytes=[m.log.stat().st_size for m in self.mepl],
            mepl_exit=[m.popen.returncode for m in self.mepl], simulator=dict(self.sim.stats))
        return self.result

    def finish_checks(self) -> None:
        latency = len(self.latency_ids)
        self.checks.update({
            "handsets executed": (sum(d.executed for d in self.devices), self.n + latency),
            "handsets duplicates": (sum(d.duplicates for d in self.devices), 0),
            "handsets rejected": (sum(d.rejected for d in self.devices), 0),
            "smsc submit_sm accepted": (self.sim.stats["accepted"], self.n + latency),
        })

    def print_logs(self) -> None:
        for m in self.mepl:
            print(f"--- mepl process {m.index} (pid {m.popen.pid}, {m.log}), last lines:\n"
                  f"{m.tail()}", file=sys.stderr, flush=True)

    async def teardown(self) -> None:
        if hasattr(self, "sampler"):
            self.sampler.stop_event.set()
        for m in self.mepl:
            if m.popen.poll() is None:
                m.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(m.popen.poll() is None for m in self.mepl) and time.monotonic() < deadline:
            await sleep(self.reactor, 0.1)
        for m in self.mepl:
            if m.popen.poll() is None:
                print(f"mepl process {m.index} did not stop within 30 s: killed",
                      file=sys.stderr)
                m.popen.kill()
                m.popen.wait()
            elif m.popen.returncode != 0:
                print(f"mepl process {m.index} exited with status {m.popen.returncode}",
                      file=sys.stderr)
        if hasattr(self, "sampler"):
            await deferToThread(self.sampler.join, 10)
        for name in ("harness_db", "sampler_db"):
            db = getattr(self, name, None)
            if db is not None:
                db.close()
        if hasattr(self, "sim"):
            self.sim.stop()
            await self.port.stopListening()
        if hasattr(self, "db_name") and not self.opts.keep:
            await self.db(self.ctx.databases.drop, self.db_name)
        gc.unfreeze()
        self.devices = []
        gc.collect()


# ----------------------------------------------------------------- reporting
@dataclasses.dataclass
class Context:
    """What every run shares: options, keys, the server, the work directory."""

    options: argparse.Namespace
    workdir: Path
    state: Path
    databases: Databases
    keys: list[SigningKey]
    publics: list[bytes]
    key_id: int
    bundle: ProvisioningBundle


LINES: tuple[tuple[str, str, str], ...] = (
    ("enrol_devices_per_s", "setup: devices enrolled/s", "{:,.0f}"),
    ("latency_submit_p50_ms", "idle: queued -> submit_sm p50, ms", "{:,.1f}"),
    ("latency_submit_p99_ms", "idle: queued -> submit_sm p99, ms", "{:,.1f}"),
    ("latency_round_trip_p50_ms", "idle: queued -> done p50, ms", "{:,.1f}"),
    ("latency_round_trip_p99_ms", "idle: queued -> done p99, ms", "{:,.1f}"),
    ("idle_xact_per_s", "idle: transactions/s (polling)", "{:,.1f}"),
    ("idle_mepl_cpu_percent", "idle: MEPL CPU, % of a core", "{:,.1f}"),
    ("fanout_first_submit_s", "fan-out: queued -> first submit, s", "{:,.2f}"),
    ("fanout_submitted_per_s", "fan-out: commands submitted/s", "{:,.0f}"),
    ("fanout_round_trips_per_s", "fan-out: full round trips/s", "{:,.0f}"),
    ("fanout_xact_per_command", "fan-out: transactions per command", "{:,.2f}"),
    ("fanout_wal_bytes", "fan-out: WAL bytes per command", "{:,.0f}"),
    ("fanout_row_writes", "fan-out: row versions written per command", "{:,.1f}"),
    ("fanout_cpu_us_mepl", "fan-out: CPU us/command, MEPL (all)", "{:,.0f}"),
    ("fanout_cpu_us_mepl_1", "fan-out: CPU us/command, MEPL 1", "{:,.0f}"),
    ("fanout_cpu_us_mepl_2", "fan-out: CPU us/command, MEPL 2", "{:,.0f}"),
    ("fanout_cpu_us_postgres", "fan-out: CPU us/command, PostgreSQL", "{:,.0f}"),
    ("fanout_cpu_us_harness", "fan-out: CPU us/command, harness", "{:,.0f}"),
    ("fanout_cpu_busy_percent", "fan-out: all processes' CPU, % of the cores", "{:,.0f}"),
    ("fanout_ack_p50_ms", "fan-out: deliver_sm -> deliver_sm_resp p50, ms", "{:,.1f}"),
    ("fanout_ack_p99_ms", "fan-out: deliver_sm -> deliver_sm_resp p99, ms", "{:,.1f}"),
    ("alerts_stored_per_s", "alerts: MO stored/s (deliver_sm_resp)", "{:,.0f}"),
    ("alerts_applied_per_s", "alerts: verified + applied/s", "{:,.0f}"),
    ("alerts_xact_per_alert", "alerts: transactions per alert", "{:,.2f}"),
    ("alerts_wal_bytes", "alerts: WAL bytes per alert", "{:,.0f}"),
    ("alerts_row_writes", "alerts: row versions written per alert", "{:,.1f}"),
    ("alerts_cpu_busy_percent", "alerts: all processes' CPU, % of the cores", "{:,.0f}"),
    ("alerts_ack_p50_ms", "alerts: deliver_sm -> deliver_sm_resp p50, ms", "{:,.1f}"),
    ("alerts_ack_p99_ms", "alerts: deliver_sm -> deliver_sm_resp p99, ms", "{:,.1f}"),
    ("alerts_cpu_us_mepl", "alerts: CPU us/alert, MEPL (all)", "{:,.0f}"),
    ("alerts_cpu_us_mepl_1", "alerts: CPU us/alert, MEPL 1", "{:,.0f}"),
    ("alerts_cpu_us_mepl_2", "alerts: CPU us/alert, MEPL 2", "{:,.0f}"),
    ("alerts_cpu_us_postgres", "alerts: CPU us/alert, PostgreSQL", "{:,.0f}"),
    ("alerts_cpu_us_harness", "alerts: CPU us/alert, harness", "{:,.0f}"),
    ("peak_rss_mb_mepl_1", "peak RSS MB, MEPL 1", "{:,.0f}"),
    ("peak_rss_mb_mepl_2", "peak RSS MB, MEPL 2", "{:,.0f}"),
    ("peak_pss_mb_postgres", "peak PSS MB, PostgreSQL (all processes)", "{:,.0f}"),
    ("peak_rss_mb_postgres_largest", "peak RSS MB, largest PostgreSQL process", "{:,.0f}"),
    ("peak_rss_mb_harness", "peak RSS MB, harness", "{:,.0f}"),
)


def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, _, _ in LINES:
        values = [r["metrics"][key] for r in runs if r["metrics"].get(key) is not None]
        if values:
            out[key] = {"median": statistics.median(values), "min": min(values),
                        "max": max(values)}
    return out


def run_line(result: Mapping[str, Any]) -> str:
    m = result["metrics"]

    def f(key: str, fmt: str = "{:,.0f}") -> str:
        value = m.get(key)
        return "-" if value is None else fmt.format(value)

    before, after = result["load_before"][0], result["load_after"][0]
    return (f"run {result['run']}: latency p50/p99 {f('latency_submit_p50_ms', '{:.0f}')}/"
            f"{f('latency_submit_p99_ms', '{:.0f}')} ms to submit; fan-out "
            f"{f('fanout_submitted_per_s')} submitted/s, {f('fanout_round_trips_per_s')} "
            f"round trips/s, {f('fanout_xact_per_command', '{:.2f}')} tx/command, MEPL "
            f"{f('fanout_cpu_us_mepl')} + PostgreSQL {f('fanout_cpu_us_postgres')} us/command; "
            f"alerts {f('alerts_stored_per_s')} stored/s, {f('alerts_applied_per_s')} "
            f"applied/s; load average {before:.2f} -> {after:.2f}")


def print_summary(options: argparse.Namespace, runs: Sequence[Mapping[str, Any]],
                  summary: Mapping[str, Mapping[str, float]]) -> None:
    loads = [r["load_before"][0] for r in runs] + [r["load_after"][0] for r in runs]
    plural = "es" if options.processes > 1 else ""
    print(f"\nmedians over {len(runs)} run(s): {options.devices:,} devices, "
          f"{options.processes} mepl process{plural}, {os.cpu_count()} cores, "
          f"load average {min(loads):.2f}-{max(loads):.2f} (1 min, before/after each run)")
    print(f"  {'':44} {'median':>10}   {'min - max':>21}")
    for key, label, fmt in LINES:
        s = summary.get(key)
        if s is None:
            continue
        spread = f"{fmt.format(s['min'])} - {fmt.format(s['max'])}"
        print(f"  {label:44} {fmt.format(s['median']):>10}   {spread:>21}")


def failed_checks(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"run {r['run']}: {name}: got {c['got']}, expected {c['expected']}"
            for r in runs for name, c in r["checks"].items() if not c["ok"]]


# ---------------------------------------------------------------------- main
def react(main: Callable[[Any], defer.Deferred[Any]]) -> Any:
    """Run the reactor once around ``main`` (task.react would exit the process)."""
    from twisted.internet import reactor

    outcome: list[Any] = []

    loop: Any = reactor

    def start() -> None:
        d = main(loop)
        d.addBoth(outcome.append)
        d.addBoth(lambda _: loop.stop())

    loop.callWhenRunning(start)
    loop.run()
    if not outcome:
        raise KeyboardInterrupt
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Figures, their meaning and the machine's results: docs/benchmarks.md.")
    parser.add_argument("--devices", type=int, default=10_000,
                        help="simulated handsets, enrolled and in the fan-out (default "
                             "10000; 100000 takes about ten times as long)")
    parser.add_argument("--processes", type=int, choices=(1, 2), default=1,
                        help="mepl run processes sharing the database (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs, for medians (default 3)")
    parser.add_argument("--latency-samples", type=int, default=200,
                        help="single commands timed one at a time on the idle system "
                             "(default 200)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write every figure, check and progress series here")
    parser.add_argument("--database-url", metavar="URL",
                        help="an external PostgreSQL whose role may CREATE DATABASE "
                             "(default: an embedded server in a temporary directory)")
    parser.add_argument("--receipt-delay", type=float, default=0.2,
                        help="simulator: seconds from submit to its delivery receipt (0.2)")
    parser.add_argument("--reply-delay", type=float, default=0.01,
                        help="handsets: seconds from a command to its reply (0.01)")
    parser.add_argument("--sim-window", type=int, default=10,
                        help="simulator: deliver_sm window towards each bind (10)")
    parser.add_argument("--sample-interval", type=float, default=0.2,
                        help="seconds between progress samples (0.2)")
    parser.add_argument("--settle", type=float, default=1.5,
                        help="seconds of quiet around each phase, so PostgreSQL's statistics "
                             "(flushed about every second) count it whole (1.5)")
    parser.add_argument("--idle-window", type=float, default=3.0,
                        help="seconds over which the idle system's polling is measured (3)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up a phase after this many seconds (600)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn"),
                        help="the mepl processes' log level (info, as in production)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="extra mepl configuration, e.g. dispatch.poll_interval_s=0.05 or "
                             "smpp.links.sim.window=50 (repeatable)")
    parser.add_argument("--seed", default="mepl-bench-fanout",
                        help="seed of the device keys (the same fleet every run)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run databases and the work directory (printed)")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.runs < 1 or args.latency_samples < 0:
        parser.error("--devices and --runs must be at least 1, --latency-samples at least 0")
    if args.devices > 99_999_999:
        parser.error("--devices: at most 99,999,999 (phone numbers +4478NNNNNNNN)")
    for item in args.set:
        if "=" not in item or "." not in item.partition("=")[0]:
            parser.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))
    workdir = Path(tempfile.mkdtemp(prefix="mepl-bench-fanout-"))
    state = workdir / "state"
    server: EmbeddedServer | None = None
    runs: list[dict[str, Any]] = []
    load0 = os.getloadavg()
    print(f"bench_fanout: {options.devices:,} devices, {options.processes} mepl process(es), "
          f"{options.runs} run(s); load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
          f"work directory {workdir}", flush=True)
    try:
        t0 = time.perf_counter()
        store = ServerKeyStore(state / "keys")
        index = store.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER,))
        keys = device_keys(options.devices, options.seed.encode())
        publics = [k.public.raw for k in keys]
        print(f"keys: server key {index.active_key_id}, {len(keys):,} device keys derived in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        if options.database_url is None:
            server = start_embedded(state, database="postgres")
        ctx = Context(options, workdir, state, Databases(server, options.database_url), keys,
                      publics, index.active_key_id, store.bundle(imei(0)))

        async def all_runs(reactor: Any) -> None:
            for k in range(options.runs):
                result = await Run(reactor, ctx, k).run()
                runs.append(result)
                print(run_line(result), flush=True)

        react(lambda reactor: defer.ensureDeferred(all_runs(reactor)))
    except BenchError as exc:
        print(f"bench_fanout: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_fanout: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("bench_fanout: failed (traceback above)", file=sys.stderr)
        return 1
    finally:
        MeplProcess.stop_leftovers()
        if server is not None:
            server.stop()
        if options.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(runs)
    print_summary(options, runs, summary)
    problems = failed_checks(runs)
    for line in problems:
        print(f"CHECK FAILED: {line}", file=sys.stderr)
    load1 = os.getloadavg()
    print(f"load average at the end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if options.json is not None:
        options.json.write_text(json.dumps({
            "options": {k: (str(v) if isinstance(v, Path) else v)
                        for k, v in vars(options).items()},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "load_before": list(load0), "load_after": list(load1),
            "summary": summary, "runs": runs}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
