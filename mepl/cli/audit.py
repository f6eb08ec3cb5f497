"""``mepl audit list``: the audit trail of administrators' actions, newest first.

Every change made from the command line (devices, groups, commands, keys)
is an audit row: who (the OS user), in which role, what action on which
target, with details.  The table is append-only (the database refuses
updates and deletes).
"""

from __future__ import annotations

import argparse
import json

from blobstore.database import Database
from mepl.app.context import SyncTransactions
from mepl.app.history import MAX_LIMIT, audit_json, audit_list_txn
from mepl.cli.common import GeneralConfig, add_config_options, iso_time
from mepl.cli.db import run_with_database
from mepl.cli.messages import limit_number, utc_time


def _list(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        rows = SyncTransactions(database.engine).run(
            "audit list", audit_list_txn, actor=args.actor, action=args.action,
            since=args.since, limit=args.limit)
        if args.json:
            print(json.dumps([audit_json(r) for r in rows], indent=2, ensure_ascii=False))
            return 0
        for row in rows:
            print(f"{row.id:>7}  {utc_time(row.at)}  {row.actor:<12}  {row.role:<5}  "
                  f"{row.action:<18}  {row.target or '-'}  "
                  f"{json.dumps(dict(row.details), ensure_ascii=False)}")
        if not rows:
            print("no audit rows")
        return 0

    return run_with_database(args, body)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl audit``."""
    parser = subparsers.add_parser("audit", help="the audit trail of administrators' actions")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    lst = actions.add_parser(
        "list", help="audit rows, newest first, filtered by actor, action and time",
        description="One line per audit row: id, time (UTC), actor, role, action, target, "
                    "details (JSON).")
    lst.add_argument("--actor", metavar="A", help="only this actor (e.g. an OS user name)")
    lst.add_argument("--action", metavar="X",
                     help="only this action (e.g. device.add, command.send, keys.rotate)")
    lst.add_argument("--since", type=iso_time, metavar="ISO",
                     help="only rows at or after this time (ISO 8601; UTC without an offset)")
    lst.add_argument("--limit", type=limit_number, default=100, metavar="N",
                     help=f"at most N rows (1 to {MAX_LIMIT}, default 100)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)
    add_config_options(lst)
