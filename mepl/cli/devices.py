"""``mepl devices add|show|list|update|import|enrol``: the device registry from the command line.

Bad input (a wrong IMEI check digit, an unparseable number, a duplicate
IMEI) exits with status 1 and a message that says what is wrong and where;
configuration and database problems exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from blobstore.audit import append_audit_txn
from blobstore.database import Database
from blobstore.devices import (
    DeviceRecord,
    add_device_txn,
    find_device_txn,
    get_device_txn,
    identity_history_txn,
    list_devices_txn,
    set_device_key_txn,
    set_device_state_txn,
    update_identity_txn,
)
from blobstore.errors import StoreError
from blobstore.groups import add_members_txn, ensure_group_txn
from blobstore.identity import IdentityError, parse_imei, parse_imsi, parse_msisdn
from blobstore.importer import ImportFormatError, import_csv
from blobstore.schema import DEVICE_STATES
from blobstore.server_keys import pin_device_txn
from mepl.cli.common import (
    GeneralConfig,
    add_config_options,
    config_error,
    fail,
    general_config,
    load_raw_config,
)
from mepl.cli.db import cli_actor, run_with_database
from mepl.cli.keys import signing_config
from mepl.config import ConfigError
from signing.errors import SigningError
from signing.keys import device_key_id
from signing.keystore import ServerKeyStore


def _bad(message: str) -> int:
    return fail(message, status=1)


def _add(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        option = "--imei"
        try:
            imei = parse_imei(args.imei)
            option = "--imsi"
            imsi = parse_imsi(args.imsi) if args.imsi else None
            option = "--phone"
            msisdn = parse_msisdn(args.phone, general.default_region) if args.phone else None
        except IdentityError as exc:
            return _bad(f"{option}: {exc}")
        try:
            with database.engine.begin() as conn:
                record = add_device_txn(conn, imei, imsi=imsi, msisdn=msisdn)
                for group in args.group:
                    ensure_group_txn(conn, group)
                    add_members_txn(conn, group, [record.id])
                _audit(conn, "device.add", imei, {"groups": list(args.group)})
                record = get_device_txn(conn, record.id)
        except (StoreError, ValueError) as exc:
            return _bad(str(exc))
        print(f"added device {record.imei} (id {record.id})")
        _print_device(record)
        return 0

    return run_with_database(args, body)


def _show(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        try:
            with database.engine.begin() as conn:
                record = find_device_txn(conn, args.identifier, general.default_region)
                history = identity_history_txn(conn, record.id)
        except (IdentityError, StoreError) as exc:
            return _bad(str(exc))
        if args.json:
            data = record.as_json()
            data["identity_history"] = [
                {"kind": h.kind, "old": h.old_value, "new": h.new_value,
                 "changed_at": h.changed_at.isoformat(), "source": h.source}
                for h in history
            ]
            print(json.dumps(data, indent=2))
            return 0
        _print_device(record)
        for h in history:
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
        after, count = 0, 0
        out = sys.stdout
        if args.json:
            out.write("[")
        else:
            out.write(f"{'IMEI':<15}  {'IMSI':<15}  {'PHONE':<16}  {'STATE':<13}  GROUPS\n")
        while args.limit is None or count < args.limit:
            page = 1000 if args.limit is None else min(1000, args.limit - count)
            with database.engine.begin() as conn:
                records = list_devices_txn(conn, group=args.group, after_id=after, limit=page)
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
        changes: dict[str, Any] = {}
        option = "--imsi"
        try:
            if args.imsi is not None:
                changes["imsi"] = parse_imsi(args.imsi) if args.imsi else None
            option = "--phone"
            if args.phone is not None:
                changes["msisdn"] = (
                    parse_msisdn(args.phone, general.default_region) if args.phone else None)
        except IdentityError as exc:
            return _bad(f"{option}: {exc}")
        try:
            with database.engine.begin() as conn:
                record = find_device_txn(conn, args.identifier, general.default_region)
                written = update_identity_txn(conn, record.id, source="cli", **changes)
                if args.state is not None:
                    set_device_state_txn(conn, record.id, args.state)
                details = {c.kind: {"old": c.old_value, "new": c.new_value} for c in written}
                if args.state is not None:
                    details["state"] = {"old": record.state, "new": args.state}
                _audit(conn, "device.update", record.imei, details)
                record = get_device_txn(conn, record.id)
        except (IdentityError, StoreError, ValueError) as exc:
            return _bad(str(exc))
        print(f"updated device {record.imei}: {len(written)} identity change(s)")
        _print_device(record)
        return 0

    return run_with_database(args, body)


def _enrol(args: argparse.Namespace) -> int:
    try:
        raw = bytes.fromhex(args.public_key)
    except ValueError:
        return _bad("--public-key: not hexadecimal")
    if len(raw) != 32:
        return _bad(f"--public-key: an Ed25519 public key has 32 octets, got {len(raw)}")
    key_id = device_key_id(raw)
    if args.server_key is not None and not 1 <= args.server_key <= 0xFFFF:
        return _bad("--server-key: server key ids are 1..65535")
    try:
        server_key = _enrolment_server_key(args)
    except ConfigError as exc:
        return config_error(exc)
    except SigningError as exc:
        return _bad(f"server key: {exc}")

    def body(database: Database, general: GeneralConfig) -> int:
        pinned: int | None = None
        try:
            with database.engine.begin() as conn:
                record = find_device_txn(conn, args.identifier, general.default_region)
                set_device_key_txn(conn, record.id, key_id, raw)
                if server_key is not None:
                    # A new handset (key) was provisioned with the key active now; the
                    # same handset enrolled again keeps the key it has accepted.
                    reprovisioned = record.public_key is None or record.public_key != raw
                    pinned = pin_device_txn(conn, record.id, server_key, replace=(
                        reprovisioned or args.server_key is not None))
                if record.state == "unprovisioned":
                    set_device_state_txn(conn, record.id, "provisioned")
                _audit(conn, "device.enrol", record.imei,
                       {"key_id": key_id, "public_key": raw.hex(), "server_key_id": pinned})
                record = get_device_txn(conn, record.id)
        except (IdentityError, StoreError, ValueError) as exc:
            return _bad(str(exc))
        server = (f"server key {pinned}" if pinned is not None else
                  "server key not recorded (no key store here: it is set when first sent to)")
        print(f"enrolled device {record.imei}: device key {key_id}, {server}")
        _print_device(record)
        return 0

    return run_with_database(args, body)


def _enrolment_server_key(args: argparse.Namespace) -> int | None:
    """The server key to record for an enrolled device: ``--server-key`` (checked against
    the key store when there is one), else the store's active key (the newest in the
    provisioning bundles it exports); None when there is no key store here."""
    raw = load_raw_config(args)
    store = ServerKeyStore(signing_config(raw).keys_path(general_config(raw).state_dir))
    wanted: int | None = args.server_key
    if not store.exists():
        return wanted
    index = store.load()
    return index.active_key_id if wanted is None else index.key(wanted).key_id


def _audit(conn: Connection, action: str, target: str, details: dict[str, Any]) -> None:
    append_audit_txn(conn, actor=cli_actor(), role="cli", action=action, target=target,
                     details=details)


def _import(args: argparse.Namespace) -> int:
    path: Path = args.file

    def body(database: Database, general: GeneralConfig) -> int:
        try:
            with path.open(newline="", encoding="utf-8-sig") as stream:
                report = import_csv(database.engine, stream, general.default_region,
                                    batch_size=args.batch_size)
        except OSError as exc:
            return fail(f"cannot read {path}: {exc.strerror}")
        except ImportFormatError as exc:
            return _bad(f"{path}: {exc}")
        except UnicodeDecodeError as exc:
            return _bad(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        for error in report.errors:
            print(error, file=sys.stderr)
        with database.engine.begin() as conn:
            _audit(conn, "device.import", str(path),
                   {"rows": report.rows, "imported": report.imported,
                    "bad": len(report.errors)})
        print(f"imported {report.imported} device(s) from {path}: "
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

    imp = actions.add_parser("import", help="bulk import from CSV (imei,imsi,phone,group)")
    imp.add_argument("file", type=Path, metavar="FILE.csv")
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
