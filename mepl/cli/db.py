"""``mepl db upgrade|status``, and the helper every database-using command runs through.

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
import os
import sys
from collections.abc import Callable, Collection

from sqlalchemy.exc import DBAPIError

from blobstore.config import DatabaseConfig
from blobstore.database import Database, open_database
from blobstore.errors import SchemaOutOfDateError, StoreError, StoreUnavailableError
from blobstore.migrate import schema_status, upgrade
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl db``."""
    parser = subparsers.add_parser("db", help="database schema: upgrade, status")
    commands = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = commands.add_parser("upgrade", help="migrate the database schema to this mepl's version")
    add_config_options(up)
    up.set_defaults(func=_upgrade)
    status = commands.add_parser(
        "status", help="show the schema version (exit 1 when an upgrade is needed)")
    add_config_options(status)
    status.set_defaults(func=_status)
