"""``mepl commands send|list|show|cancel``: queue signed commands and follow them.

A queued command is a committed row; any running ``mepl run`` claims it,
seals it for the device and sends it.  The rules (argument typing against
the command catalog, security priority, refusals and confirmations) are the
use cases' of :mod:`mepl.app.commands`; this module parses, runs them and
prints.  Every send and every cancel is audited.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

from blobstore.database import Database
from blobstore.lifecycle import CommandEventRecord
from mepl.app.commands import (
    PRIORITIES,
    Target,
    cancel_command_txn,
    command_json,
    event_json,
    list_commands_txn,
    queue_command_txn,
    show_command_txn,
)
from mepl.app.errors import AppError, NeedsConfirmation
from mepl.cli.common import GeneralConfig, add_config_options, fail
from mepl.cli.db import app_failure, cli_user, run_with_database, transactions
from mepl.commandargs import describe_arguments

_SEND_OPTIONS = ("device", "group", "opcode", "priority", "valid_for")


def _target(args: argparse.Namespace) -> Target:
    if args.all:
        return Target.fleet()
    if args.group:
        return Target.group(args.group)
    return Target.device(args.device)


def _send(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        try:
            queued = transactions(database).run(
                "commands send", queue_command_txn, cli_user(), _target(args), args.opcode,
                now=datetime.now(UTC), arguments=args.arg, priority=args.priority,
                valid_for=timedelta(minutes=args.valid_for), region=general.default_region,
                confirm=args.yes)
        except NeedsConfirmation as exc:
            return fail(f"{exc}: give --yes to queue it", status=1)
        suffix = f" (command {queued.command_id})" if queued.command_id is not None else ""
        if queued.left_out:
            suffix += f" ({queued.left_out} retired member(s) left out)"
        print(f"queued {queued.opcode} for {queued.count} device(s){suffix}")
        return 0

    return run_with_database(args, body, options=_SEND_OPTIONS)


def _list(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        records = transactions(database).run(
            "commands list", list_commands_txn, cli_user(), args.device, limit=args.limit,
            region=general.default_region)
        if args.json:
            print(json.dumps([command_json(r) for r in records], indent=2))
            return 0
        print(f"{'ID':>8}  {'OPCODE':<20} {'STATE':<10} {'TRIES':>5}  CREATED")
        for r in records:
            print(f"{r.id:>8}  {r.opcode:<20} {r.state:<10} {r.attempts:>5}  "
                  f"{r.created_at:%Y-%m-%d %H:%M:%S%z}")
        return 0

    return run_with_database(args, body, options=("device", "limit"))


def _event_line(event: CommandEventRecord) -> str:
    details = f"  {json.dumps(dict(event.details), sort_keys=True)}" if event.details else ""
    return (f"{event.at:%Y-%m-%d %H:%M:%S%z}  {event.from_state or '-':>9} -> "
            f"{event.to_state:<9}  {event.event:<15} {event.actor}{details}")


def _show(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        shown = transactions(database).run("commands show", show_command_txn, cli_user(),
                                           args.id)
        if args.json:
            data = command_json(shown.record)
            data["history"] = [event_json(e) for e in shown.history]
            print(json.dumps(data, indent=2))
            return 0
        print(json.dumps(command_json(shown.record), indent=2))
        print(f"history of command {shown.record.id}:")
        for event in shown.history:
            print(f"  {_event_line(event)}")
        return 0

    return run_with_database(args, body)


def _cancel(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        run, actor, status = transactions(database).run, cli_user(), 0
        for command_id in args.ids:
            try:
                done = run("commands cancel", cancel_command_txn, actor, command_id,
                           now=datetime.now(UTC))
            except AppError as exc:
                status = app_failure(exc)
                continue
            print(f"cancelled command {done.command_id} ({done.opcode} for {done.imei})")
        return status

    return run_with_database(args, body)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl commands``."""
    parser = subparsers.add_parser("commands", help="queue signed commands and follow them")
    actions = parser.add_subparsers(dest="commands_command", metavar="ACTION", required=True)
    send = actions.add_parser(
        "send", help="queue a command for one device, a group or the whole fleet",
        description="Queue a command; a running `mepl run` signs and sends it.\n"
                    "A retired device gets no command (a group's retired members are "
                    "left out).\nA wipe to a group or to the whole fleet is queued only "
                    "with --yes; without it\nnothing is queued, and the number of "
                    "devices it would reach is printed.\n\n"
                    "Arguments are given as --arg NAME=VALUE.  Opcodes and their "
                    "arguments:\n\n"
                    + describe_arguments(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", metavar="ID", help="IMEI, IMSI or phone number")
    target.add_argument("--group", metavar="NAME",
                        help="every member of this group that is not retired")
    target.add_argument("--all", action="store_true",
                        help="the whole fleet: every enrolled device that is not retired")
    send.add_argument("--opcode", required=True, help="e.g. lock, status_query, notify")
    send.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                      help="an argument, e.g. features=battery,sim or 'text=Call base' "
                           "(repeatable; forms above)")
    send.add_argument("--priority", choices=sorted(PRIORITIES), default="normal",
                      help="lock, wipe, rotate_key and set_trusted_numbers are always security")
    send.add_argument("--valid-for", type=int, default=1440, metavar="MINUTES",
                      help="not-after = now + this (default 1440)")
    send.add_argument("--yes", action="store_true",
                      help="confirm a wipe to a group or to the whole fleet")
    send.set_defaults(func=_send)
    lst = actions.add_parser("list", help="a device's commands, newest first")
    lst.add_argument("--device", required=True, metavar="ID", help="IMEI, IMSI or phone number")
    lst.add_argument("--limit", type=int, default=50, metavar="N")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)
    show = actions.add_parser(
        "show", help="one command, its frame and its result as JSON, then its history",
        description="Print the command as JSON (state, attempts, the exact frame sent, the "
                    "verified result), then its history: one line per state change, "
                    "with its time, from -> to, event, actor and details.")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true",
                      help="print one JSON object, the history in it as \"history\"")
    show.set_defaults(func=_show)
    cancel = actions.add_parser(
        "cancel", help="withdraw commands that are still queued",
        description="Cancel each command that is still queued (audited).  A command "
                    "already being sent, sent or finished is not cancelled: its state is "
                    "named, and the exit status is 1.")
    cancel.add_argument("ids", type=int, nargs="+", metavar="ID")
    cancel.set_defaults(func=_cancel)
    for sub in (send, lst, show, cancel):
        add_config_options(sub)
