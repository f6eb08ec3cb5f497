"""Raw PDUs stored many to a row: the ``pdu_batch`` messages of ``smpp.pdu_log = "batched"``.

One row per (direction, link) of each PDU log batch instead of one row per
PDU: the PDUs keep their exact bytes, order and time, and the store writes
two rows where it wrote hundreds (each with its index entries and WAL
record).  The payload is self-describing::

    batch  = "MPB1" record*
    record = at (int64, microseconds since the epoch, UTC)
             ref_len (uint16) pdu_len (uint32)      big-endian
             reference (ref_len octets, UTF-8; 0 = none) pdu (pdu_len octets)

``pdu`` is the PDU as it crossed the wire (bind passwords blanked).  Its
length is stored rather than read from the PDU's ``command_length``, so a
frame whose header lies is kept whole as well.  The row's ``meta`` is
``{"pdus": n}``; its ``sha256`` covers the whole payload.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from blobstore.copy import NULL, bytea_cell, text_cell
from blobstore.pdu_log import insert_pdus_txn
from blobstore.schema import DIRECTIONS

MAGIC = b"MPB1"
"""The first four octets of every batch payload (format 1)."""
KIND = "pdu_batch"
"""The ``messages.kind`` of a batch row."""
MAX_ROW_PAYLOAD = 1 << 20
"""A batch row's payload grows to about this many octets at most (a single larger PDU is kept
whole in a row of its own)."""
_HEAD = struct.Struct(">qHI")
_MAX_REFERENCE = 0xFFFF
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Records' times count microseconds from here."""

PduItem = tuple[str, str, bytes]
"""What the PDU log queues per PDU: direction, link and the packed record (:func:`pack_pdu`)."""


@dataclass(frozen=True, slots=True)
class BatchedPdu:
    """One PDU read back from a batch."""

    at: datetime
    reference: str | None
    raw: bytes


def pack_pdu(at: float, reference: str | None, raw: bytes) -> bytes:
    """One record: ``raw`` sent or received at ``at`` (epoch seconds), with its reference.

    A reference longer than 65,535 octets is cut (references are the
    dispatcher's own short ids).
    """
    ref = reference.encode("utf-8")[:_MAX_REFERENCE] if reference else b""
    return _HEAD.pack(round(at * 1_000_000), len(ref), len(raw)) + ref + raw


def unpack_batch(payload: bytes) -> list[BatchedPdu]:
    """Every PDU of a batch payload, in order; ``ValueError`` names what is wrong."""
    data = bytes(payload)
    if data[:4] != MAGIC:
        raise ValueError("not a PDU batch (no MPB1 header)")
    pdus: list[BatchedPdu] = []
    offset = len(MAGIC)
    while offset < len(data):
        if len(data) - offset < _HEAD.size:
            raise ValueError(f"record {len(pdus) + 1}: cut short in its header")
        at_us, ref_len, pdu_len = _HEAD.unpack_from(data, offset)
        offset += _HEAD.size
        end = offset + ref_len + pdu_len
        if end > len(data):
            raise ValueError(f"record {len(pdus) + 1}: cut short ({end - len(data)} octets "
                             "missing)")
        try:
            reference = data[offset:offset + ref_len].decode("utf-8") if ref_len else None
            at = EPOCH + timedelta(microseconds=at_us)
        except (UnicodeDecodeError, OverflowError) as exc:
            raise ValueError(f"record {len(pdus) + 1}: {exc}") from None
        pdus.append(BatchedPdu(at, reference, data[offset + ref_len:end]))
        offset = end
    return pdus


def batch_lines(items: Sequence[PduItem]) -> list[str]:
    """The ``messages`` rows (COPY text, without ``id``) for ``items``: one per (direction, link).

    Rows come in the order each (direction, link) first appears; records
    keep their order within a row.  A row's payload stops growing at
    :data:`MAX_ROW_PAYLOAD` octets (a flood of large PDUs makes several rows
    rather than one of tens of megabytes).
    """
    rows: dict[tuple[str, str], list[_Row]] = {}
    for direction, link, record in items:
        chunks = rows.setdefault((direction, link), [_Row()])
        if chunks[-1].count and len(chunks[-1].payload) + len(record) > MAX_ROW_PAYLOAD:
            chunks.append(_Row())
        chunks[-1].add(record)
    lines = []
    for (direction, link), chunks in rows.items():
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        for row in chunks:
            payload = bytes(row.payload)
            lines.append("\t".join((
                direction, "smpp", KIND, text_cell(link), NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, bytea_cell(payload), bytea_cell(hashlib.sha256(payload).digest()), NULL,
                text_cell(json.dumps({"pdus": row.count})),
            )))
    return lines


class _Row:
    """One batch row's payload as it grows, and how many records it holds."""

    __slots__ = ("count", "payload")

    def __init__(self) -> None:
        self.payload = bytearray(MAGIC)
        self.count = 0

    def add(self, record: bytes) -> None:
        self.payload += record
        self.count += 1


def insert_pdu_batches_txn(conn: Connection, items: Sequence[PduItem]) -> int:
    """Store ``items`` as batch rows with one COPY (that of the PDU log); returns how many PDUs."""
    insert_pdus_txn(conn, batch_lines(items))
    return len(items)
