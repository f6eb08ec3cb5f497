"""``mepl devices add|show|list|update|import|enrol``: the device registry from the command line.

Bad input (a wrong IMEI check digit, an unparseable number, a duplicate
IMEI) exits with status 1 and a message that says what is wrong and where;
configuration and database problems exit with status 2.  The rules are the
use cases' of :mod:`mepl.app.devices`; this module parses, runs them and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from blobstore.database import Database
from blobstore.devices import DeviceRecord
from blobstore.importer import Enrolling, ImportFormatError, import_csv
from blobstore.schema import DEVICE_STATES
from mepl.app.devices import (
    add_device_txn,
    device_page_txn,
    enrol_device_txn,
    record_import_txn,
    show_device_txn,
    update_device_txn,
)
from mepl.cli.common import (
    GeneralConfig,
    add_config_options,
    config_error,
    fail,
    general_config,
    load_raw_config,
)
from mepl.cli.db import cli_user, run_with_database, transactions
from mepl.cli.keys import signing_config
from mepl.config import ConfigError
from signing.errors import SigningError
from signing.keys import device_key_id, public_key_defect
from signing.keystore import KeyIndex, ServerKeyStore


def _bad(message: str) -> int:
    return fail(message, status=1)


def _add(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        record = transactions(database).run(
            "devices add", add_device_txn, cli_user(), args.imei, imsi=args.imsi,
            phone=args.phone, groups=args.group, region=general.default_region)
        print(f"added device {record.imei} (id {record.id})")
        _print_device(record)
        return 0

    return run_with_database(args, body, options=("imei", "imsi", "phone", "group"))


def _show(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        shown = transactions(database).run("devices show", show_device_txn, cli_user(),
                                           args.identifier, region=general.default_region)
        if args.json:
            print(json.dumps(shown.to_json(), indent=2))
            return 0
        _print_device(shown.record)
        for h in shown.history:
            print(f"  {h.changed_at:%Y-%m-%d %H:%M:%S%z} {h.kind}: "
                  f"{h.old_value or '-'} -> {h.new_value or '-'} ({h.source})")
        return 0

    return run_with_database(args, body)


def _print_device(record: DeviceRecord) -> None:
    print(f"IMEI:      {record.imei}")
    print(f"IMSI:      {record.imsi or '-'}")
    print(f"phone:     {record.msisdn or '-'}")
    print(f"state:     {record.state}")
    print(f"groups:    {', '.join(record.groups) or '-'}")
    print(f"key:       {record.key_id if record.key_id is not None else '-'}")
    seen = f"{record.last_seen_at:%Y-%m-%d %H:%M:%S%z}" if record.last_seen_at else "never"
    print(f"last seen: {seen}")
    print(f"created:   {record.created_at:%Y-%m-%d %H:%M:%S%z}")


def _list(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        run, actor = transactions(database).run, cli_user()
        after, count = 0, 0
        out = sys.stdout
        if args.json:
            out.write("[")
        else:
            out.write(f"{'IMEI':<15}  {'IMSI':<15}  {'PHONE':<16}  {'STATE':<13}  GROUPS\n")
        while args.limit is None or count < args.limit:
            page = 1000 if args.limit is None else min(1000, args.limit - count)
            records = run("devices list", device_page_txn, actor, group=args.group,
                          after_id=after, limit=page)
            for record in records:
                if args.json:
                    out.write(("," if count else "") + "\n  " + json.dumps(record.as_json()))
                else:
                    out.write(f"{record.imei:<15}  {record.imsi or '-':<15}  "
                              f"{record.msisdn or '-':<16}  {record.state:<13}  "
                              f"{','.join(record.groups) or '-'}\n")
                count += 1
            if len(records) < page:
                break
            after = records[-1].id
        if args.json:
            out.write("\n]\n")
        return 0

    return run_with_database(args, body)


def _update(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        updated = transactions(database).run(
            "devices update", update_device_txn, cli_user(), args.identifier, imsi=args.imsi,
            phone=args.phone, state=args.state, region=general.default_region)
        print(f"updated device {updated.record.imei}: {len(updated.changes)} identity "
              "change(s)")
        _print_device(updated.record)
        return 0

    return run_with_database(args, body, options=("imsi", "phone", "state"))


def _enrol(args: argparse.Namespace) -> int:
    try:
        keys = _key_index(args)
    except ConfigError as exc:
        return config_error(exc)
    except SigningError as exc:
        return _bad(f"server key: {exc}")

    def body(database: Database, general: GeneralConfig) -> int:
        enrolled = transactions(database).run(
            "devices enrol", enrol_device_txn, cli_user(), args.identifier, args.public_key,
            keys=keys, server_key=args.server_key, region=general.default_region)
        server = (f"server key {enrolled.server_key_id}"
                  if enrolled.server_key_id is not None else
                  "server key not recorded (no key store here: it is set when first sent to)")
        print(f"enrolled device {enrolled.record.imei}: device key {enrolled.key_id}, {server}")
        _print_device(enrolled.record)
        return 0

    return run_with_database(args, body, options=("public_key", "server_key"))


def _key_index(args: argparse.Namespace) -> KeyIndex | None:
    """The index of the key store here (its active key is the newest in the provisioning
    bundles it exports), or None when there is no key store here."""
    raw = load_raw_config(args)
    store = ServerKeyStore(signing_config(raw).keys_path(general_config(raw).state_dir))
    return store.load() if store.exists() else None


def _enrolling(args: argparse.Namespace) -> Enrolling | None:
    """How rows with a public_key are enrolled: pinned to --server-key, else to the
    active key of the key store here; None when neither is known."""
    keys = _key_index(args)
    server_key = args.server_key
    if server_key is None and keys is not None:
        server_key = keys.active_key_id
    if server_key is None:
        return None
    return Enrolling(device_key_id, server_key, public_key_defect)


def _import(args: argparse.Namespace) -> int:
    path: Path = args.file

    def body(database: Database, general: GeneralConfig) -> int:
        try:
            enrolling = _enrolling(args)
            with path.open(newline="", encoding="utf-8-sig") as stream:
                report = import_csv(database.engine, stream, general.default_region,
                                    batch_size=args.batch_size, enrolling=enrolling)
        except OSError as exc:
            return fail(f"cannot read {path}: {exc.strerror}")
        except ImportFormatError as exc:
            return _bad(f"{path}: {exc}")
        except UnicodeDecodeError as exc:
            return _bad(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        for error in report.errors:
            print(error, file=sys.stderr)
        transactions(database).run("devices import", record_import_txn, cli_user(),
                                   str(path), report)
        enrolled = f", {report.enrolled} enrolled with their keys" if report.enrolled else ""
        print(f"imported {report.imported} device(s) from {path}{enrolled}: "
              f"{report.rows} row(s), {len(report.errors)} bad")
        return 1 if report.errors else 0

    return run_with_database(args, body)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl devices``."""
    parser = subparsers.add_parser("devices", help="the device registry")
    actions = parser.add_subparsers(dest="devices_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="register a device")
    add.add_argument("--imei", required=True, help="15 digits (or a 16-digit IMEISV)")
    add.add_argument("--imsi", help="the SIM's IMSI (6-15 digits)")
    add.add_argument("--phone", help="the SIM's phone number (any written form)")
    add.add_argument("--group", action="append", default=[], metavar="NAME",
                     help="add to this group, created if needed (repeatable)")
    add.set_defaults(func=_add)

    show = actions.add_parser("show", help="show a device found by IMEI, IMSI or phone number")
    show.add_argument("identifier", help="IMEI, IMSI or phone number, however written")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)

    lst = actions.add_parser("list", help="list devices")
    lst.add_argument("--group", metavar="NAME", help="only members of this group")
    lst.add_argument("--limit", type=int, metavar="N", help="at most N devices")
    lst.add_argument("--json", action="store_true", help="print a JSON array")
    lst.set_defaults(func=_list)

    upd = actions.add_parser("update", help="change a device's IMSI, phone number or state")
    upd.add_argument("identifier", help="IMEI, IMSI or phone number, however written")
    upd.add_argument("--imsi", help="new IMSI (empty to clear)")
    upd.add_argument("--phone", help="new phone number (empty to clear)")
    upd.add_argument("--state", choices=DEVICE_STATES, help="new state")
    upd.set_defaults(func=_update)

    imp = actions.add_parser(
        "import", help="bulk import from CSV (imei,imsi,phone,group,public_key)",
        description="Bulk import devices from CSV with a header naming imei (required) and "
                    "any of imsi, phone, group, public_key.  A row with a public_key (the "
                    "handset's Ed25519 key, 64 hex digits) is enrolled at once: provisioned, "
                    "pinned to the server key it was provisioned with (--server-key, else "
                    "the active key of the key store here).  Bad rows are reported as "
                    "`line N: ...` and skipped; good rows go in by COPY, one transaction "
                    "per batch.")
    imp.add_argument("file", type=Path, metavar="FILE.csv")
    imp.add_argument("--server-key", type=int, metavar="ID",
                     help="the server key the handsets in the file were provisioned with")
    imp.add_argument("--batch-size", type=int, default=10_000, metavar="N",
                     help="rows per transaction (default 10000)")
    imp.set_defaults(func=_import)

    enrol = actions.add_parser(
        "enrol", help="register the device's public key (from `mepl handset init`)",
        description="Register the device's Ed25519 public key, so its signed replies and "
                    "alerts verify; an unprovisioned device becomes provisioned.  A new key "
                    "starts a new reply/alert counter space.  The server key the device was "
                    "provisioned with (the active one; --server-key to say otherwise) is "
                    "recorded: commands to it are signed with that key until it "
                    "acknowledges a rotation.  Enrolling the same device key again keeps "
                    "the server key on record.")
    enrol.add_argument("identifier", help="IMEI, IMSI or phone number, however written")
    enrol.add_argument("--public-key", required=True, metavar="HEX",
                       help="the device's 32-octet Ed25519 public key in hex")
    enrol.add_argument("--server-key", type=int, metavar="ID",
                       help="the newest server key in the bundle the handset was provisioned "
                            "with, if that was before the last `mepl keys rotate` "
                            "(default: the active key)")
    enrol.set_defaults(func=_enrol)

    for sub in (add, show, lst, upd, imp, enrol):
        add_config_options(sub)
