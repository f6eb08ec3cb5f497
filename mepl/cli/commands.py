"""``mepl commands send|list|show``: queue signed commands and follow them.

A queued command is a committed row; any running ``mepl run`` claims it,
seals it for the device and sends it.  Arguments (``--arg features=battery,sim``)
are typed and checked against the command catalog by
:mod:`mepl.commandargs`, so a bad one is refused at once instead of failing
at dispatch.  Every send is audited.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from blobstore.audit import append_audit_txn
from blobstore.commands import (
    PRIORITY_BULK,
    PRIORITY_NORMAL,
    PRIORITY_SECURITY,
    CommandRecord,
    NewCommand,
    device_commands_txn,
    get_command_txn,
    insert_command_txn,
    insert_group_commands_txn,
)
from blobstore.database import Database
from blobstore.devices import find_device_txn
from blobstore.errors import StoreError
from blobstore.groups import get_group_txn
from blobstore.identity import IdentityError
from mepl.cli.common import (
    GeneralConfig,
    add_config_options,
    config_error,
    fail,
    general_config,
    load_raw_config,
)
from mepl.cli.db import cli_actor, run_with_database
from mepl.commandargs import ArgumentError, describe_arguments, parse_command_arguments
from mepl.config import ConfigError
from signing.commands import Opcode

PRIORITIES = {"security": PRIORITY_SECURITY, "normal": PRIORITY_NORMAL, "bulk": PRIORITY_BULK}
SECURITY_OPCODES = frozenset((Opcode.LOCK, Opcode.WIPE, Opcode.ROTATE_KEY,
                              Opcode.SET_TRUSTED_NUMBERS))


def _send(args: argparse.Namespace) -> int:
    try:
        region = general_config(load_raw_config(args)).default_region
    except ConfigError as exc:
        return config_error(exc)
    try:
        checked = parse_command_arguments(args.opcode, args.arg, region=region)
    except ArgumentError as exc:
        return fail(str(exc), status=1)
    opcode = checked.name
    arguments = checked.to_json()["args"]
    priority = PRIORITIES[args.priority]
    if args.priority == "normal" and checked.opcode in SECURITY_OPCODES:
        priority = PRIORITY_SECURITY

    def body(database: Database, general: GeneralConfig) -> int:
        command = NewCommand(opcode=opcode, requested_by=f"cli:{cli_actor()}",
                             arguments=arguments, priority=priority,
                             not_after=datetime.now(UTC) + timedelta(minutes=args.valid_for))
        try:
            with database.engine.begin() as conn:
                if args.group:
                    get_group_txn(conn, args.group)
                    count = insert_group_commands_txn(conn, args.group, command)
                    target, ids = f"group:{args.group}", []
                else:
                    device = find_device_txn(conn, args.device, general.default_region)
                    ids = [insert_command_txn(conn, device.id, command)]
                    count, target = 1, device.imei
                append_audit_txn(conn, actor=cli_actor(), role="cli", action="command.send",
                                 target=target, details={"opcode": opcode, "args": arguments,
                                                         "commands": count})
        except (IdentityError, StoreError) as exc:
            return fail(str(exc), status=1)
        suffix = f" (command {ids[0]})" if ids else ""
        print(f"queued {opcode} for {count} device(s){suffix}")
        return 0

    return run_with_database(args, body)


def _record_json(record: CommandRecord) -> dict[str, Any]:
    return {
        "id": record.id, "device_id": record.device_id, "opcode": record.opcode,
        "arguments": dict(record.arguments), "state": record.state,
        "priority": record.priority, "counter": record.counter, "key_id": record.key_id,
        "requested_by": record.requested_by, "created_at": record.created_at.isoformat(),
        "not_after": record.not_after.isoformat(), "attempts": record.attempts,
        "last_error": record.last_error,
        "result": dict(record.result) if record.result is not None else None,
        "frame": record.frame.hex() if record.frame is not None else None,
    }


def _list(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        try:
            with database.engine.begin() as conn:
                device = find_device_txn(conn, args.device, general.default_region)
                records = device_commands_txn(conn, device.id, limit=args.limit)
        except (IdentityError, StoreError) as exc:
            return fail(str(exc), status=1)
        if args.json:
            print(json.dumps([_record_json(r) for r in records], indent=2))
            return 0
        print(f"{'ID':>8}  {'OPCODE':<20} {'STATE':<10} {'TRIES':>5}  CREATED")
        for r in records:
            print(f"{r.id:>8}  {r.opcode:<20} {r.state:<10} {r.attempts:>5}  "
                  f"{r.created_at:%Y-%m-%d %H:%M:%S%z}")
        return 0

    return run_with_database(args, body)


def _show(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        with database.engine.begin() as conn:
            record = get_command_txn(conn, args.id)
        if record is None:
            return fail(f"no command with id {args.id}", status=1)
        print(json.dumps(_record_json(record), indent=2))
        return 0

    return run_with_database(args, body)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl commands``."""
    parser = subparsers.add_parser("commands", help="queue signed commands and follow them")
    actions = parser.add_subparsers(dest="commands_command", metavar="ACTION", required=True)
    send = actions.add_parser(
        "send", help="queue a command for one device or a whole group",
        description="Queue a command; a running `mepl run` signs and sends it.\n"
                    "Arguments are given as --arg NAME=VALUE.  Opcodes and their "
                    "arguments:\n\n"
                    + describe_arguments(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", metavar="ID", help="IMEI, IMSI or phone number")
    target.add_argument("--group", metavar="NAME", help="every member of this group")
    send.add_argument("--opcode", required=True, help="e.g. lock, status_query, notify")
    send.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                      help="an argument, e.g. features=battery,sim or 'text=Call base' "
                           "(repeatable; forms above)")
    send.add_argument("--priority", choices=sorted(PRIORITIES), default="normal",
                      help="lock, wipe, rotate_key and set_trusted_numbers are always security")
    send.add_argument("--valid-for", type=int, default=1440, metavar="MINUTES",
                      help="not-after = now + this (default 1440)")
    send.set_defaults(func=_send)
    lst = actions.add_parser("list", help="a device's commands, newest first")
    lst.add_argument("--device", required=True, metavar="ID", help="IMEI, IMSI or phone number")
    lst.add_argument("--limit", type=int, default=50, metavar="N")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)
    show = actions.add_parser("show", help="one command, its frame and its result, as JSON")
    show.add_argument("id", type=int)
    show.set_defaults(func=_show)
    for sub in (send, lst, show):
        add_config_options(sub)
