"""``mepl messages pdus``: the raw PDUs of one SMPP link in a time window, one line each.

Reads the raw PDU log in either layout (``smpp.pdu_log = "batched"`` or
``"all"``) through :mod:`mepl.app.pdus`.  ``--message ID`` finds the PDUs
of one stored SMS: its link, two minutes either side, and its SMSC id and
command reference, or its sender.  Reads are not audited; phone numbers are printed in
full, as ``mepl messages show`` prints them.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from blobstore.database import Database
from mepl.app.context import SyncTransactions
from mepl.app.errors import InvalidRequest, NotFound
from mepl.app.pdus import MAX_PDUS, Cursor, CursorError, PduPage, PduView, find_pdus_txn
from mepl.cli.common import GeneralConfig, add_config_options, fail, iso_time, limit_type
from mepl.cli.db import run_with_database


def _cursor(text: str) -> str:
    try:
        Cursor.parse(text)
    except CursorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _pdus(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        try:
            page = SyncTransactions(database.engine).run(
                "messages pdus", find_pdus_txn, now=datetime.now(UTC), link=args.link,
                message_id=args.message, since=args.since, until=args.until,
                direction=args.direction, commands=args.command or (),
                smsc_ids=args.smsc_id or (), references=args.reference or (),
                addresses=args.address or (), after=args.after, limit=args.limit)
        except NotFound as exc:
            return fail(str(exc), status=1)
        except InvalidRequest as exc:
            option = f" (--{exc.field.replace('_', '-')})" if exc.field else ""
            return fail(f"{exc}{option}")
        if args.json:
            print(json.dumps(page.to_json(), indent=2, ensure_ascii=False))
        else:
            _print(page)
        return 0

    return run_with_database(args, body)


def _print(page: PduPage) -> None:
    query = page.query
    print(f"link {query.link}, {_time(query.since)} to {_time(query.until)}: "
          f"{len(page.pdus)} PDUs from {page.rows_read} stored rows")
    if page.other_links is not None:
        known = ", ".join(page.other_links) or "none"
        print(f"no PDUs stored for link {query.link} at any time; links with PDUs: {known}")
    for pdu in page.pdus:
        print(pdu_line(pdu))
    if page.next_after is not None:
        print(f"more: --after {page.next_after}")


def _time(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}Z"


def pdu_line(pdu: PduView) -> str:
    """One PDU: time, direction, command, sequence, status, ids, addresses, size, row."""
    fields: list[Any] = [_time(pdu.at), f"{pdu.direction:<3}", pdu.command]
    if pdu.sequence is not None:
        fields += [f"seq {pdu.sequence}", pdu.status]
    if pdu.reference is not None:
        fields.append(f"ref {pdu.reference}")
    if pdu.smsc_message_id is not None:
        fields.append(f"smsc id {pdu.smsc_message_id}")
    if pdu.receipt_for is not None:
        fields.append(f"receipt for {pdu.receipt_for}")
    if pdu.source is not None or pdu.destination is not None:
        fields.append(f"{pdu.source or '-'} -> {pdu.destination or '-'}")
    if pdu.note is not None:
        fields.append(f"({pdu.note})")
    fields.append(f"{len(pdu.raw)} octets  [message {pdu.cursor.row_id}]")
    return "  ".join(str(f) for f in fields)


def add_pdus(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl messages pdus``."""
    pdus = actions.add_parser(
        "pdus", help="the raw PDUs of an SMPP link in a time window, oldest first",
        description="One line per raw PDU stored by the PDU log (smpp.pdu_log \"batched\" or "
                    "\"all\"): time (UTC, to the microsecond), direction, command, sequence, "
                    "status, the dispatcher's reference (cmd-<command id>), the SMSC id of a "
                    "submit_sm_resp, the id a delivery receipt reports, the addresses and the "
                    "stored row.  Without --since/--until: the last ten minutes.  --json adds "
                    "each PDU's bytes as hex.")
    pdus.add_argument("--link", metavar="LINK", help="the SMPP link (as in the configuration)")
    pdus.add_argument("--message", type=int, metavar="ID",
                      help="the PDUs of one stored SMS: its link, two minutes either side, "
                           "matched by its SMSC id and its command's reference (mt, dlr) or "
                           "by its sender (mo)")
    pdus.add_argument("--since", type=iso_time, metavar="ISO",
                      help="from this time (ISO 8601; without an offset, UTC)")
    pdus.add_argument("--until", type=iso_time, metavar="ISO",
                      help="up to this time, excluded (default: since + 10 minutes, or now)")
    pdus.add_argument("--direction", choices=("in", "out"), help="only PDUs received or sent")
    pdus.add_argument("--command", action="append", metavar="NAME",
                      help="only this command, e.g. submit_sm_resp (repeatable)")
    pdus.add_argument("--smsc-id", action="append", metavar="ID",
                      help="only the submit_sm_resp giving this SMSC id and the receipts "
                           "reporting it; case, blanks and leading zeros ignored (repeatable)")
    pdus.add_argument("--reference", action="append", metavar="REF",
                      help="only PDUs with this reference, e.g. cmd-42 (repeatable)")
    pdus.add_argument("--address", action="append", metavar="NUMBER",
                      help="only submit_sm and deliver_sm to or from this number, compared by "
                           "its digits (repeatable; --smsc-id, --reference and --address: "
                           "any of them matches)")
    pdus.add_argument("--limit", type=limit_type(MAX_PDUS), default=200, metavar="N",
                      help=f"at most N PDUs (1 to {MAX_PDUS}, default 200)")
    pdus.add_argument("--after", type=_cursor, metavar="CURSOR",
                      help="the next page, as the last line `more: --after CURSOR` says")
    pdus.add_argument("--json", action="store_true", help="print JSON, with each PDU's hex")
    pdus.set_defaults(func=_pdus)
    add_config_options(pdus)
