"""Reassembly of concatenated inbound SMS from the stored parts (several processes safe).

Each part is stored first, as an ``mo`` row with ``part_seq``/``part_total``
and its concatenation reference in ``meta`` (``concat_ref``, ``concat_bits``).
Then :func:`collect_parts_txn` locks the sender's parts of that reference and,
once every sequence number is there, marks them ``assembled`` and returns
them.  Whichever process commits the last part sees all of them; a process
that loses the race finds them already assembled and returns None, so each
message is processed exactly once, whichever binds and processes its parts
went through and across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update

from blobstore.messages import merge_meta
from blobstore.schema import messages


@dataclass(frozen=True)
class StoredPart:
    """One stored part: its row, sequence number, user data (UDH included), and its decoded
    text when the part was text (``meta.text``)."""

    message_id: int
    seq: int
    user_data: bytes
    text: str | None = None


@dataclass(frozen=True)
class Collected:
    """The outcome of one collection attempt."""

    parts: tuple[StoredPart, ...] | None
    conflicting: tuple[int, ...] = ()


def collect_parts_txn(conn: Connection, *, peer: str, reference: int, ref_bits: int,
                      total: int, since: datetime, mark: bool = True) -> Collected:
    """The complete set of ``peer``'s parts under ``reference``, or ``parts=None``.

    Parts stored before ``since`` are too old to join (the set expired).  A
    part repeating a sequence number with different bytes is marked with an
    error and listed in ``conflicting``; an identical repeat joins the set
    harmlessly.  With ``mark`` False the complete set is returned without
    being marked ``assembled``: the transaction that applies the message
    marks it with :func:`mark_assembled_txn`.
    """
    rows = conn.execute(
        select(messages.c.id, messages.c.part_seq, messages.c.payload, messages.c.sha256,
               messages.c.meta["text"].astext.label("text"))
        .where(and_(
            messages.c.kind == "mo", messages.c.direction == "in", messages.c.peer == peer,
            messages.c.part_total == total, messages.c.created_at >= since,
            messages.c.error.is_(None),
            messages.c.meta["concat_ref"].astext == str(reference),
            messages.c.meta["concat_bits"].astext == str(ref_bits),
            messages.c.meta["assembled"].astext.is_(None)))
        .order_by(messages.c.part_seq, messages.c.id)
        .with_for_update(key_share=True)
    ).all()
    first: dict[int, Any] = {}
    conflicting: list[int] = []
    for row in rows:
        kept = first.setdefault(int(row.part_seq), row)
        if kept is not row and bytes(kept.sha256) != bytes(row.sha256):
            conflicting.append(int(row.id))
    if conflicting:
        conn.execute(update(messages).where(messages.c.id.in_(conflicting))
                     .values(error="conflicting duplicate part"))
    if len(first) < total:
        return Collected(None, tuple(conflicting))
    if mark:
        mark_assembled_txn(conn, [int(r.id) for r in rows if int(r.id) not in conflicting])
    parts = tuple(StoredPart(int(first[seq].id), seq, bytes(first[seq].payload), first[seq].text)
                  for seq in range(1, total + 1))
    return Collected(parts, tuple(conflicting))


def mark_assembled_txn(conn: Connection, part_ids: list[int]) -> bool:
    """Mark the parts of one message ``assembled``; False if another transaction did first.

    The parts are locked, so of two processes applying the same message
    exactly one sees True.
    """
    rows = conn.execute(
        update(messages)
        .where(messages.c.id.in_(part_ids), messages.c.meta["assembled"].astext.is_(None))
        .values(meta=merge_meta(assembled=min(part_ids)))
        .returning(messages.c.id)
    ).all()
    return len(rows) == len(part_ids)
