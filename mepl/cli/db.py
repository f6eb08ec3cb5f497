"""``mepl db upgrade|status|partitions|shell``, and the helper database commands run through.

:func:`run_with_database` opens the configured store (starting the embedded
PostgreSQL in the state directory when no URL is set), refuses a schema that
is not at this code's head revision, runs the command body, and always
closes the store again.  A body runs use cases (:mod:`mepl.app`) through
:func:`transactions` as :func:`cli_user`; their refusals
(:class:`~mepl.app.errors.AppError`) exit with status 1 and their message.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from blobstore.config import DatabaseConfig
from blobstore.database import Database, open_database
from blobstore.errors import SchemaOutOfDateError, StoreError, StoreUnavailableError
from blobstore.migrate import schema_status, upgrade
from blobstore.partitions import (
    MONTHS_AHEAD,
    Partition,
    PartitionError,
    ensure_partitions_txn,
    list_partitions_txn,
)
from blobstore.pool import is_transient
from mepl.app.context import Actor, SyncTransactions
from mepl.app.errors import AppError
from mepl.cli.common import (
    GeneralConfig,
    add_config_options,
    config_error,
    fail,
    general_config,
    load_raw_config,
)
from mepl.config import ConfigError, build

Body = Callable[[Database, GeneralConfig], int]


def cli_actor() -> str:
    """Who is running the command, for audit rows."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cli_user() -> Actor:
    """The user running the command, as the actor of use cases (role ``cli``)."""
    return Actor(cli_actor(), "cli")


def transactions(database: Database) -> SyncTransactions:
    """The runner of use-case transactions on ``database``, retrying as configured."""
    return SyncTransactions(database.engine, attempts=database.config.retry_attempts,
                            backoff_s=database.config.retry_backoff_ms / 1000)


def app_failure(exc: AppError, options: Collection[str] = ()) -> int:
    """Report a use case's refusal and return exit status 1.

    When the refused input is one of ``options`` (the command's own option
    names, as the use case names its fields), the message starts with the option
    (``--imei: ...``).
    """
    field = getattr(exc, "field", None)
    prefix = f"--{field.replace('_', '-')}: " if field is not None and field in options else ""
    return fail(f"{prefix}{exc}", status=1)


def run_with_database(args: argparse.Namespace, body: Body, *,
                      check_schema: bool = True, options: Collection[str] = ()) -> int:
    """Open the store from ``args``' configuration and run ``body(database, general)``.

    Exit status 2 with a message for a configuration error, an unreachable
    database or (when ``check_schema``) a schema that needs ``mepl db upgrade``;
    status 1 for a use case's refusal (see :func:`app_failure` for ``options``).
    """
    try:
        raw = load_raw_config(args)
        general = general_config(raw)
        config = build(DatabaseConfig, raw.get("database", {}), "database")
    except ConfigError as exc:
        return config_error(exc)
    try:
        database = open_database(config, general.state_dir)
    except (DBAPIError, OSError, StoreError) as exc:
        return fail(f"cannot open the database: {_first_line(exc)}")
    try:
        if check_schema:
            database.check_schema()
        return body(database, general)
    except AppError as exc:
        return app_failure(exc, options)
    except SchemaOutOfDateError as exc:
        return fail(str(exc))
    except StoreUnavailableError as exc:
        return fail(str(exc))
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except DBAPIError as exc:
        if is_transient(exc):
            return fail(f"cannot reach the database: {_first_line(exc)}")
        return fail(f"database error: {_first_line(exc)}")
    finally:
        database.close()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _upgrade(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        before, head = schema_status(database.engine)
        if before == head:
            print(f"database schema is at {head}: up to date")
            return 0
        upgrade(database.engine)
        after, _ = schema_status(database.engine)
        print(f"database schema upgraded from {before or 'empty'} to {after}")
        return 0

    return run_with_database(args, body, check_schema=False)


def _status(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        current, head = schema_status(database.engine)
        where = "embedded in " + str(database.embedded.pgdata) if database.embedded else (
            database.display_url)
        print(f"database: {where}")
        print(f"schema: {current or 'empty'} (this mepl needs {head})")
        if current != head:
            print("run `mepl db upgrade` to migrate")
            return 1
        print("up to date")
        return 0

    return run_with_database(args, body, check_schema=False)


# ---------------------------------------------------------------- mepl db partitions
def _size(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1024:
        return f"{value} B"
    size = value / 1024
    for unit in ("kB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def partition_line(p: Partition) -> str:
    """One line of ``mepl db partitions``: name, range, state, rows, size, archive."""
    rows = "-" if p.rows_estimate is None else f"~{p.rows_estimate:,}"
    state = p.state if p.attached or p.state == "dropped" else f"{p.state} (NOT ATTACHED)"
    archive = f"  archive {p.archive_file} ({p.archive_rows:,} rows)" if p.archive_file else ""
    return (f"{p.name:32} {p.range_text():26} {state:9} {rows:>12} "
            f"{_size(p.bytes):>9}{archive}")


def _partitions(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        runner = transactions(database)
        created: list[str] = []
        if args.ensure:
            try:
                created = runner.run(
                    "ensure message partitions", ensure_partitions_txn,
                    now=database_now(database), months_ahead=args.months_ahead)
            except PartitionError as exc:
                return fail(str(exc), status=1)
        listed = runner.run("list message partitions", list_partitions_txn)
        if args.json:
            print(json.dumps({"created": created, "partitions": [p.to_json() for p in listed]},
                             indent=2))
            return 0
        for name in created:
            print(f"created {name}")
        print(f"{'partition':32} {'range (UTC)':26} {'state':9} {'rows':>12} {'size':>9}")
        for p in listed:
            print(partition_line(p))
        return 0

    return run_with_database(args, body)


def _now_txn(conn: Connection) -> datetime:
    now: datetime = conn.execute(text("SELECT now()")).scalar_one()
    return now


def database_now(database: Database) -> datetime:
    """The database server's clock (partition months follow it, not this host's)."""
    return transactions(database).run("database clock", _now_txn)


# ---------------------------------------------------------------- mepl db shell
def connection_line(url: URL | str) -> tuple[str, str | None]:
    """The libpq connection line of ``url`` (``host=... port=... dbname=... user=...``)
    and, apart, its password (never part of the line)."""
    url = make_url(url)
    params: dict[str, str] = {}
    query = {k: ",".join(v) if isinstance(v, tuple) else str(v) for k, v in url.query.items()}
    host = url.host or query.pop("host", None)
    port = str(url.port) if url.port is not None else query.pop("port", None)
    if host and port is None and not host.startswith("/"):
        # a failover cluster's ?host=a:5432&host=b:5433: libpq wants host=a,b port=5432,5433
        pairs = [_host_port(item) for item in host.split(",")]
        host = ",".join(h for h, _ in pairs)
        port = ",".join(p for _, p in pairs) if any(p for _, p in pairs) else None
    for key, value in (("host", host), ("port", port), ("dbname", url.database),
                       ("user", url.username)):
        if value:
            params[key] = value
    query.pop("host", None)
    query.pop("port", None)
    params.update(sorted(query.items()))
    return " ".join(f"{k}={_conninfo_value(v)}" for k, v in params.items()), url.password


def _host_port(item: str) -> tuple[str, str]:
    """``host:port`` split for libpq (a socket directory or a bare host has no port)."""
    host, sep, port = item.rpartition(":")
    if sep and port.isdigit() and not item.startswith("/"):
        return host.strip("[]"), port
    return item, ""


def _conninfo_value(value: str) -> str:
    """A libpq connection-string value, single-quoted when it needs to be."""
    if value and not any(ch.isspace() or ch in "'\\" for ch in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def find_psql(*, embedded: bool) -> str | None:
    """The ``psql`` to run: for the embedded server the one bundled with it (same
    version) first, then the one on ``PATH``; for an external server the other way round."""
    bundled = None
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall/bin/psql"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            bundled = str(candidate)
    on_path = shutil.which("psql")
    return (bundled or on_path) if embedded else (on_path or bundled)


def run_psql(psql: str, line: str, password: str | None, extra: Sequence[str]) -> int:
    """Run ``psql -d LINE EXTRA...`` in the foreground; return its exit status.

    The password goes in the child's ``PGPASSWORD``, not on its command line.
    Ctrl-C belongs to psql (it cancels the running query), so it does not end
    this process while psql runs.
    """
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    child = subprocess.Popen([psql, "-d", line, *extra], env=env)  # noqa: S603
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def _shell(args: argparse.Namespace) -> int:
    if args.print and args.psql_args:
        return fail("--print runs no psql: it takes no psql arguments", status=1)

    def body(database: Database, general: GeneralConfig) -> int:
        line, password = connection_line(database.engine.url)
        psql = None if args.print else find_psql(embedded=database.embedded is not None)
        if psql is not None:
            return run_psql(psql, line, password, args.psql_args)
        if not args.print:
            print("mepl: psql is not installed; connect with the line below "
                  "(e.g. psql -d '<line>')", file=sys.stderr)
        print(line)
        if password:
            print("mepl: note: the password is not printed: give it in PGPASSWORD or "
                  "~/.pgpass", file=sys.stderr)
        if database.embedded is not None:
            print("mepl: note: the embedded server runs only while a mepl process uses it "
                  "(e.g. `mepl run`), and its socket directory may change when it restarts",
                  file=sys.stderr)
        return 0

    return run_with_database(args, body, check_schema=False)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl db``."""
    parser = subparsers.add_parser(
        "db", help="database schema: upgrade, status; message partitions; psql: shell")
    commands = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = commands.add_parser("upgrade", help="migrate the database schema to this mepl's version")
    add_config_options(up)
    up.set_defaults(func=_upgrade)
    status = commands.add_parser(
        "status", help="show the schema version (exit 1 when an upgrade is needed)")
    add_config_options(status)
    status.set_defaults(func=_status)
    parts = commands.add_parser(
        "partitions", help="list the monthly partitions of the message store; --ensure: "
                           "create the months ahead",
        description="List the partitions of `messages` (one per UTC month, the first one "
                    "holding everything from before partitioning, and a default one that "
                    "should stay empty) with their range, state (attached, archived: "
                    "exported but kept, dropped: exported and removed), estimated rows (from "
                    "the planner's statistics; - until the partition was analyzed) and "
                    "size.  `mepl run` creates the months ahead by itself; --ensure does it "
                    "now.  Archive and drop old months with `mepl messages archive`.")
    parts.add_argument("--ensure", action="store_true",
                       help="first create any missing month up to --months-ahead")
    parts.add_argument("--months-ahead", type=int, default=MONTHS_AHEAD, metavar="N",
                       help=f"months after the current one to have (default {MONTHS_AHEAD})")
    parts.add_argument("--json", action="store_true", help="print JSON")
    add_config_options(parts)
    parts.set_defaults(func=_partitions)
    shell = commands.add_parser(
        "shell", help="run psql on the configured database (the embedded one by default)",
        description="Run psql on the configured database: the embedded server in the state "
                    "directory (started for the session, stopped after it unless another "
                    "mepl process uses it) or database.url.  Arguments after -- go to psql: "
                    "mepl db shell -- -c 'SELECT count(*) FROM messages'.  The psql bundled "
                    "with the embedded server is used for it; otherwise psql from PATH.  "
                    "Without psql, or with --print, the libpq connection line "
                    "(host=... port=... dbname=... user=...) is printed instead; a password "
                    "is never printed (psql gets it in PGPASSWORD).  The embedded server's "
                    "login is its superuser: handle it with care.")
    shell.add_argument("--print", action="store_true",
                       help="print the connection line instead of running psql")
    shell.add_argument("psql_args", nargs="*", metavar="PSQL_ARG",
                       help="arguments for psql, after --")
    add_config_options(shell)
    shell.set_defaults(func=_shell)
