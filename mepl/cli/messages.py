"""``mepl messages list|show|security|pdus|archive``: a device's history both ways, decoded.

Every stored SMS part, receipt, callback and PDU is shown decoded
(:mod:`mepl.app.decode`): command frames with their opcode and arguments,
replies with their status and result items as text, alerts with their
arguments, and for frames from devices the verdict the server recorded
(``verified``, ``rejected: bad_signature``...).  Reads are not audited.
Phone numbers are printed in full, as ``mepl devices show`` prints them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from blobstore.database import Database
from blobstore.errors import AmbiguousDeviceError, DeviceNotFoundError
from blobstore.identity import IdentityError
from mepl.app.context import SyncTransactions
from mepl.app.decode import MessageView, hex_dump
from mepl.app.history import (
    MAX_LIMIT,
    MessageDetail,
    message_detail_txn,
    message_history_txn,
    security_events_txn,
)
from mepl.cli.archive import add_archive
from mepl.cli.common import GeneralConfig, add_config_options, fail, limit_type
from mepl.cli.db import run_with_database
from mepl.cli.pdus import add_pdus

NOT_FOUND = (IdentityError, DeviceNotFoundError, AmbiguousDeviceError)


limit_number = limit_type(MAX_LIMIT)
"""argparse type for ``--limit``: 1 to :data:`mepl.app.history.MAX_LIMIT`."""


def utc_time(when: datetime) -> str:
    """``2026-12-03 06:22:00Z``: a stored time for a column."""
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def _list(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        try:
            page = SyncTransactions(database.engine).run(
                "messages list", message_history_txn, args.device,
                default_region=general.default_region, before_id=args.before,
                limit=args.limit)
        except NOT_FOUND as exc:
            return fail(str(exc), status=1)
        if args.json:
            print(json.dumps(page.to_json(), indent=2, ensure_ascii=False))
            return 0
        device = page.device
        print(f"device {device.imei} (id {device.id}), phone {device.msisdn or '-'}, "
              f"state {device.state}")
        for view in page.messages:
            print(_line(view))
        if not page.messages:
            print("no messages" + (f" before id {args.before}" if args.before else ""))
        if page.next_before_id is not None:
            print(f"more: --before {page.next_before_id}")
        return 0

    return run_with_database(args, body)


def _line(view: MessageView) -> str:
    kind = f"{view.kind} {view.part}" if view.part and view.kind == "mo" else view.kind
    return (f"{view.id:>7}  {utc_time(view.at)}  {view.direction:<3}  {view.channel:<4}  "
            f"{kind:<6}  {view.summary}  [{view.verdict}]")


def _show(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        detail = SyncTransactions(database.engine).run("messages show", message_detail_txn,
                                                       args.id)
        if detail is None:
            return fail(f"no message with id {args.id}", status=1)
        if args.json:
            print(json.dumps(detail.to_json(raw=args.raw), indent=2, ensure_ascii=False))
            return 0
        _print_detail(detail, raw=args.raw)
        return 0

    return run_with_database(args, body)


def _print_detail(detail: MessageDetail, *, raw: bool) -> None:
    view = detail.message
    where = ", ".join(x for x in (view.channel, f"link {view.link}" if view.link else "") if x)
    rows: list[tuple[str, Any]] = [
        ("message", view.id), ("time", utc_time(view.at)),
        ("direction", f"{view.direction} ({where})"), ("kind", view.kind),
        ("peer", view.peer or "-"),
        ("device", f"{detail.device.imei} (id {detail.device.id})" if detail.device else "-"),
        ("command", f"{detail.command.id} ({detail.command.opcode}, {detail.command.state})"
         if detail.command else (view.command_id or "-")),
        ("part", view.part or "-"), ("verdict", view.verdict), ("summary", view.summary),
        ("octets", len(view.payload)), ("sha256", view.sha256),
    ]
    for name, value in rows:
        print(f"{name + ':':<11}{value}")
    print("decoded:")
    details = dict(view.details)
    pdus = details.pop("pdus", None)
    for key, value in _flatten(details):
        print(f"  {key}: {value}")
    if pdus is not None:  # a pdu_batch row: one line per PDU (--json has every field)
        print(f"PDUs ({len(pdus)}):")
        for pdu in pdus:
            print("  " + _pdu_line(pdu))
    if detail.security_events:
        print("security events:")
        for event in detail.security_events:
            print(f"  {event.id}  {utc_time(event.at)}  {event.kind}  "
                  f"{json.dumps(dict(event.details), ensure_ascii=False)}")
    if raw:
        print(f"stored bytes ({len(view.payload)} octets):")
        for line in hex_dump(view.payload):
            print(f"  {line}")


def _pdu_line(pdu: Mapping[str, Any]) -> str:
    """One PDU of a batch: time, command, sequence, status, reference, SMSC id, size."""
    fields = [str(pdu["at"]), str(pdu.get("command", "short frame"))]
    if "sequence" in pdu:
        fields += [f"seq {pdu['sequence']}", str(pdu["status"])]
    if "reference" in pdu:
        fields.append(f"ref {pdu['reference']}")
    if "smsc_message_id" in pdu:
        fields.append(f"smsc id {pdu['smsc_message_id']}")
    fields.append(f"{len(pdu['hex']) // 2} octets")
    return "  ".join(fields)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``details`` as ``key: value`` lines: nested objects dotted, lists indexed."""
    if isinstance(value, Mapping) and (value or not prefix):
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            out += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and any(isinstance(v, Mapping | list) for v in value):
        return [pair for i, item in enumerate(value) for pair in _flatten(item, f"{prefix}[{i}]")]
    if isinstance(value, str):
        return [(prefix, value)]
    return [(prefix, json.dumps(value, ensure_ascii=False))]


def _security(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        try:
            events = SyncTransactions(database.engine).run(
                "messages security", security_events_txn, args.device,
                default_region=general.default_region, limit=args.limit)
        except NOT_FOUND as exc:
            return fail(str(exc), status=1)
        if args.json:
            print(json.dumps(events.to_json(), indent=2, ensure_ascii=False))
            return 0
        print(f"device {events.device.imei} (id {events.device.id})")
        for event in events.events:
            print(f"{event.id:>7}  {utc_time(event.at)}  {event.kind:<18}  "
                  f"message {event.message_id or '-'}  "
                  f"{json.dumps(dict(event.details), ensure_ascii=False)}")
        if not events.events:
            print("no security events")
        return 0

    return run_with_database(args, body)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl messages``."""
    parser = subparsers.add_parser(
        "messages", help="a device's messages both ways, decoded: list, show, security; "
                         "a link's raw PDUs; archive old months")
    actions = parser.add_subparsers(dest="messages_command", metavar="ACTION", required=True)
    lst = actions.add_parser(
        "list", help="a device's messages both ways, newest first, one line each",
        description="One line per stored message of the device: id, time (UTC), direction, "
                    "channel, kind (with part n/m), the decoded summary and, in brackets, "
                    "the verdict (verified, rejected: REASON, receipt: STATUS...).  Frames "
                    "that failed verification before their device was known (a forged "
                    "signature, garbage) are not linked to any device: `mepl messages show "
                    "ID` shows them.")
    lst.add_argument("--device", required=True, metavar="ID",
                     help="IMEI, IMSI or phone number, however written")
    lst.add_argument("--limit", type=limit_number, default=50, metavar="N",
                     help=f"at most N messages (1 to {MAX_LIMIT}, default 50)")
    lst.add_argument("--before", type=int, metavar="ID",
                     help="only messages with ids below ID: the next page, as the last line "
                          "`more: --before ID` says")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)
    show = actions.add_parser(
        "show", help="one message: every decoded field, its command, security events",
        description="Every decoded field of one stored message (frame fields, result items "
                    "as text, receipt status, SMPP command, HTTP request line), its device "
                    "and command, and the security events it caused.")
    show.add_argument("id", type=int, help="the message id (first column of `list`)")
    show.add_argument("--raw", action="store_true",
                      help="also print a hex dump of the exact bytes stored")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)
    security = actions.add_parser(
        "security", help="a device's security events, newest first",
        description="Verified alerts (alert:sim_changed, alert:lost...) and what the server "
                    "noticed (sender_mismatch, unverified_number, stale_alert).")
    security.add_argument("--device", required=True, metavar="ID",
                          help="IMEI, IMSI or phone number, however written")
    security.add_argument("--limit", type=limit_number, default=100, metavar="N",
                          help=f"at most N events (1 to {MAX_LIMIT}, default 100)")
    security.add_argument("--json", action="store_true", help="print JSON")
    security.set_defaults(func=_security)
    for sub in (lst, show, security):
        add_config_options(sub)
    add_pdus(actions)
    add_archive(actions)
