"""Reading back the raw PDU log in tests, whichever way it was stored."""

from __future__ import annotations

from sqlalchemy import Connection, text

from blobstore.pdu_batches import KIND, unpack_batch
from sms_gateway.smpp.codec import HEADER, HEADER_LEN, command_name


def stored_pdus(conn: Connection) -> list[tuple[str, str, bytes]]:
    """Every stored PDU as (direction, command name, raw), from ``pdu`` and ``pdu_batch`` rows."""
    found: list[tuple[str, str, bytes]] = []
    rows = conn.execute(text(
        "SELECT direction, kind, payload FROM messages WHERE kind IN ('pdu', :batch) "
        "ORDER BY id"), {"batch": KIND}).all()
    for row in rows:
        raws = ([p.raw for p in unpack_batch(bytes(row.payload))] if row.kind == KIND
                else [bytes(row.payload)])
        for raw in raws:
            name = (command_name(HEADER.unpack_from(raw)[1]) if len(raw) >= HEADER_LEN
                    else "short frame")
            found.append((row.direction, name, raw))
    return found
