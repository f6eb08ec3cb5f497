"""``mepl groups add|list|show|add-member|remove-member``: device groups.

The use cases are :mod:`mepl.app.groups`'; this module parses, runs them and prints.
"""

from __future__ import annotations

import argparse
import json

from blobstore.database import Database
from mepl.app.groups import (
    change_members_txn,
    create_group_txn,
    list_groups_txn,
    show_group_txn,
)
from mepl.cli.common import GeneralConfig, add_config_options
from mepl.cli.db import cli_user, run_with_database, transactions


def _add(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        transactions(database).run("groups add", create_group_txn, cli_user(), args.name,
                                   args.description)
        print(f"added group {args.name}")
        return 0

    return run_with_database(args, body)


def _list(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        records = transactions(database).run("groups list", list_groups_txn, cli_user())
        if args.json:
            print(json.dumps([{"name": g.name, "description": g.description,
                               "members": g.members} for g in records], indent=2))
            return 0
        print(f"{'GROUP':<24}  {'MEMBERS':>8}  DESCRIPTION")
        for g in records:
            print(f"{g.name:<24}  {g.members:>8}  {g.description}")
        return 0

    return run_with_database(args, body)


def _show(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        shown = transactions(database).run("groups show", show_group_txn, cli_user(),
                                           args.name, limit=args.limit)
        group, members = shown.group, shown.members
        print(f"group {group.name}: {group.members} member(s)"
              + (f" - {group.description}" if group.description else ""))
        for record in members:
            print(f"  {record.imei}  {record.msisdn or '-':<16}  {record.state}")
        if group.members > len(members):
            print(f"  ... and {group.members - len(members)} more")
        return 0

    return run_with_database(args, body, options=("limit",))


def _change_members(args: argparse.Namespace, adding: bool) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        changed = transactions(database).run(
            "groups members", change_members_txn, cli_user(), args.name, args.devices,
            adding=adding, region=general.default_region)
        verb = "added to" if adding else "removed from"
        print(f"{changed} device(s) {verb} group {args.name}")
        return 0

    return run_with_database(args, body)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl groups``."""
    parser = subparsers.add_parser("groups", help="device groups")
    actions = parser.add_subparsers(dest="groups_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="create a group")
    add.add_argument("name")
    add.add_argument("--description", default="")
    add.set_defaults(func=_add)

    lst = actions.add_parser("list", help="list groups with member counts")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    show = actions.add_parser("show", help="show a group and its members")
    show.add_argument("name")
    show.add_argument("--limit", type=int, default=100, metavar="N",
                      help="list at most N members (default 100)")
    show.set_defaults(func=_show)

    add_member = actions.add_parser("add-member", help="add devices to a group")
    add_member.add_argument("name")
    add_member.add_argument("devices", nargs="+", metavar="DEVICE",
                            help="IMEI, IMSI or phone number")
    add_member.set_defaults(func=lambda a: _change_members(a, adding=True))

    remove = actions.add_parser("remove-member", help="remove devices from a group")
    remove.add_argument("name")
    remove.add_argument("devices", nargs="+", metavar="DEVICE",
                        help="IMEI, IMSI or phone number")
    remove.set_defaults(func=lambda a: _change_members(a, adding=False))

    for sub in (add, lst, show, add_member, remove):
        add_config_options(sub)
