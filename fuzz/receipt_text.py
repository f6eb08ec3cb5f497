"""Delivery-receipt text: the SMPP appendix B text, Kannel's %A answer, Jasmin's fields.

Contract: :func:`~sms_gateway.smpp.receipts.parse_receipt_text`,
``parse_receipt_date`` and ``normalise_id`` never raise, whatever the text
(a receipt that says nothing useful is still stored); a receipt written by
:func:`~sms_gateway.smpp.receipts.format_receipt_text` reads back the same.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._common import Reader, instrumented, run

with instrumented(__name__ == "__main__"):
    from sms_gateway.events import DeliveryStatus
    from sms_gateway.http.jasmin import status_for
    from sms_gateway.smpp.receipts import (
        STAT_OF,
        STAT_WORDS,
        format_receipt_text,
        normalise_id,
        parse_receipt_date,
        parse_receipt_text,
    )

TARGET = "receipt_text"
KEYS = {"id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text"}
MODES = ("hex", "decimal", "as-is")
STATUSES = tuple(STAT_OF)


def one_input(data: bytes) -> None:
    """Parse arbitrary receipt text; round-trip one written from fuzz values."""
    r = Reader(data)
    head = r.u8()
    text = r.rest().decode("latin-1" if head & 1 else "utf-8", "replace")
    fields = parse_receipt_text(text)
    assert set(fields) <= KEYS, fields
    for key in ("submit date", "done date"):
        when = parse_receipt_date(fields.get(key))
        assert when is None or when.tzinfo is not None
    for mode in MODES:
        for out in (None, *MODES):
            normalise_id(fields.get("id", text[:40]), mode, out)
    STAT_WORDS.get(fields.get("stat", "").upper())
    status_for(text[:32])

    # Written by us, read back (two-digit years: 2000 to 2068 read back as written).
    message_id = "".join(ch for ch in text[:12] if ch.isalnum() and ch.isascii()) or "0"
    status = STATUSES[head % len(STATUSES)]
    when = datetime(2000 + head % 69, 1 + head % 12, 1 + head % 28, head % 24, head % 60,
                    tzinfo=UTC)
    written = format_receipt_text(message_id, status, when, when, text="x")
    back = parse_receipt_text(written)
    assert back["id"] == message_id and back["stat"] == STAT_OF[status], (written, back)
    assert parse_receipt_date(back["done date"]) == when
    assert STAT_WORDS[back["stat"]] is status or status is DeliveryStatus.ENROUTE


def seeds() -> list[bytes]:
    """Real receipt texts, and near-misses."""
    return [b"\x01id:1a2b3c sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 "
            b"stat:DELIVRD err:000 text:hello",
            b"\x00ID:00123 Sub:1 DLVRD:0 Submit Date:260101120000 Done Date:26013112"
            b"stat:undeliv err:0x45 Text:",
            b"\x01id:id:id: stat:stat: text:text:submit date:99999999999 done date:",
            b"\x00id:\xd9\xa1\xd9\xa2 submit date:\xd9\xa1\xd9\xa1\xd9\xa1\xd9\xa1\xd9\xa1"]


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
