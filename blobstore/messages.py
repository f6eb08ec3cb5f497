"""The message store: every SMS, PDU and callback, raw bytes kept as a BLOB.

The store computes each row's SHA-256 itself.  A gateway's own message id
goes in ``external_id``; (direction, link, external_id) is unique (in
``message_keys``: ``messages`` is partitioned by month and cannot hold that
index), so a gateway retrying a callback is detected with
:func:`insert_unique_message_txn` instead of being processed twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from sqlalchemy import Connection, cast, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB

from blobstore.copy import NULL, bytea_cell, copy_from_text, text_cell
from blobstore.prepared import Prepared
from blobstore.schema import CHANNELS, DIRECTIONS, messages

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

Direction = Literal["in", "out"]
ChannelName = Literal["smpp", "http"]


@dataclass(frozen=True)
class NewMessage:
    """A message to store.  ``payload`` is the exact bytes sent or received.

    ``kind`` says what the bytes are (``mo``, ``mt``, ``dlr``, ``pdu``,
    ``callback``, ``malformed``...); ``error`` says why input was rejected
    (it is stored anyway, for forensics).  Text fields cannot hold NUL in
    PostgreSQL: a NUL in them is stored as U+FFFD.  ``created_at`` defaults to the
    database's commit-time clock.
    """

    direction: Direction
    channel: ChannelName
    kind: str
    payload: bytes
    link: str | None = None
    peer: str | None = None
    device_id: int | None = None
    command_id: int | None = None
    smsc_message_id: str | None = None
    external_id: str | None = None
    part_seq: int | None = None
    part_total: int | None = None
    error: str | None = None
    meta: Mapping[str, Any] | None = None
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, got {self.channel!r}")
        if not isinstance(self.payload, bytes | bytearray | memoryview):
            raise TypeError("payload must be bytes")
        if not _KIND.match(self.kind):
            raise ValueError(f"kind must be lower-case letters, digits, _ or -, got {self.kind!r}")
        if (self.part_seq is None) != (self.part_total is None):
            raise ValueError("part_seq and part_total go together")

    @cached_property
    def copy_text(self) -> str:
        """This row in COPY text format, without the id and time columns (computed once)."""
        payload = bytes(self.payload)
        meta = meta_json(self.meta)
        return "\t".join((
            self.direction, self.channel, text_cell(self.kind), text_cell(self.link),
            text_cell(self.peer), _int_cell(self.device_id), _int_cell(self.command_id),
            text_cell(self.smsc_message_id), text_cell(self.external_id),
            _int_cell(self.part_seq), _int_cell(self.part_total), bytea_cell(payload),
            bytea_cell(hashlib.sha256(payload).digest()), text_cell(self.error),
            text_cell(meta),
        ))

    def row(self) -> dict[str, Any]:
        """The column values for this message, with the SHA-256 of the payload."""
        payload = bytes(self.payload)
        values: dict[str, Any] = {
            "direction": self.direction,
            "channel": self.channel,
            "kind": self.kind,
            "link": _no_nul(self.link),
            "peer": _no_nul(self.peer),
            "device_id": self.device_id,
            "command_id": self.command_id,
            "smsc_message_id": _no_nul(self.smsc_message_id),
            "external_id": _no_nul(self.external_id),
            "part_seq": self.part_seq,
            "part_total": self.part_total,
            "payload": payload,
            "sha256": hashlib.sha256(payload).digest(),
            "error": _no_nul(self.error),
            "meta": None if self.meta is None else json.loads(meta_json(self.meta) or "null"),
        }
        if self.created_at is not None:
            values["created_at"] = self.created_at
        return values


def meta_json(meta: Mapping[str, Any] | None) -> str | None:
    """``meta`` as the JSON text stored in the ``meta`` column (NUL escapes made U+FFFD)."""
    # JSONB refuses \u0000 too.
    if meta is None:
        return None
    text = json.dumps(meta if isinstance(meta, dict) else dict(meta))
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def _no_nul(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; the exact bytes are in the payload.
    return None if value is None else value.replace("\x00", "\ufffd")


@dataclass(frozen=True)
class StoredMessage:
    """A stored message (plain data)."""

    id: int
    direction: str
    channel: str
    kind: str
    link: str | None
    peer: str | None
    device_id: int | None
    command_id: int | None
    smsc_message_id: str | None
    external_id: str | None
    part_seq: int | None
    part_total: int | None
    payload: bytes
    sha256: bytes
    error: str | None
    meta: Mapping[str, Any] | None
    created_at: datetime


def insert_message_txn(conn: Connection, message: NewMessage) -> int:
    """Store one message; return its id."""
    return int(conn.execute(
        messages.insert().values(message.row()).returning(messages.c.id)
    ).scalar_one())


COPY_COLUMNS = (
    "id", "direction", "channel", "kind", "link", "peer", "device_id", "command_id",
    "smsc_message_id", "external_id", "part_seq", "part_total", "payload", "sha256",
    "error", "meta",
)
"""A message row's columns in COPY text: ``id``, then :attr:`NewMessage.copy_text`'s."""
_COPY_PLAIN = f"COPY messages ({', '.join(COPY_COLUMNS)}) FROM STDIN"
_COPY_DATED = f"COPY messages ({', '.join(COPY_COLUMNS)}, created_at) FROM STDIN"


def _int_cell(value: int | None) -> str:
    return NULL if value is None else str(int(value))


_NEXT_IDS = Prepared("message_ids", (
    "SELECT nextval('messages_id_seq') AS id FROM generate_series(1, :n)"
), {"n": "integer"})


def insert_messages_txn(conn: Connection, batch: Sequence[NewMessage]) -> list[int]:
    """Store many messages with COPY; return their ids in ``batch`` order.

    Ids are drawn from the sequence first, so the order is exact.  Rows
    without ``created_at`` get the transaction's ``now()``, as an INSERT
    would.  Each row's COPY text is :attr:`NewMessage.copy_text`, computed
    once (the batcher computes it on arrival, off the worker threads).
    """
    if not batch:
        return []
    ids = [int(r.id) for r in _NEXT_IDS(conn, {"n": len(batch)})]
    plain = "".join(f"{i}\t{m.copy_text}\n" for i, m in zip(ids, batch, strict=True)
                    if m.created_at is None)
    dated = "".join(f"{i}\t{m.copy_text}\t{m.created_at.isoformat()}\n"
                    for i, m in zip(ids, batch, strict=True) if m.created_at is not None)
    if plain:
        copy_from_text(conn, _COPY_PLAIN, plain)
    if dated:
        copy_from_text(conn, _COPY_DATED, dated)
    return ids


_CLAIM_KEY = text(
    "INSERT INTO message_keys (direction, link, external_id, message_id, created_at) "
    "VALUES (:direction, :link, :external_id, nextval('messages_id_seq'), "
    "coalesce(CAST(:created_at AS timestamptz), now())) "
    "ON CONFLICT DO NOTHING RETURNING message_id")
_KNOWN_KEY = text(
    "SELECT message_id FROM message_keys "
    "WHERE direction = :direction AND link = :link AND external_id = :external_id")


def insert_unique_message_txn(conn: Connection, message: NewMessage) -> tuple[int, bool]:
    """Store a message unless its (direction, link, external_id) is already stored.

    Returns ``(id, duplicate)``: the new row's id and False, or the id of the
    row already stored and True.  Without ``external_id`` it always inserts.
    The key is claimed in ``message_keys`` (a missing link counts as ``''``);
    a concurrent transaction claiming the same key makes this one wait for it.
    """
    if message.external_id is None:
        return insert_message_txn(conn, message), False
    key = {"direction": message.direction, "link": message.link or "",
           "external_id": message.external_id}
    # The key is dated as its message, so it goes with the message's partition.
    new_id = conn.execute(_CLAIM_KEY, {**key, "created_at": message.created_at}).scalar()
    if new_id is None:
        return int(conn.execute(_KNOWN_KEY, key).scalar_one()), True
    conn.execute(messages.insert().values({**message.row(), "id": int(new_id)}))
    return int(new_id), False


def set_smsc_message_id_txn(conn: Connection, message_id: int, smsc_message_id: str) -> None:
    """Record the SMSC's id for a submitted part (from submit_sm_resp)."""
    conn.execute(update(messages).where(messages.c.id == message_id)
                 .values(smsc_message_id=smsc_message_id))


def _stored(row: Any) -> StoredMessage:
    values: dict[str, Any] = dict(row._mapping)
    values["payload"] = bytes(values["payload"])
    values["sha256"] = bytes(values["sha256"])
    return StoredMessage(**values)


def get_message_txn(conn: Connection, message_id: int) -> StoredMessage | None:
    """One stored message, or None."""
    row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
    return _stored(row) if row is not None else None


def messages_by_smsc_id_txn(conn: Connection, link: str,
                            smsc_message_id: str) -> list[StoredMessage]:
    """Messages on ``link`` with this SMSC message id (to match a delivery receipt)."""
    rows = conn.execute(
        select(messages).where(messages.c.link == link,
                               messages.c.smsc_message_id == smsc_message_id)
        .order_by(messages.c.id)
    ).all()
    return [_stored(r) for r in rows]


def device_messages_txn(conn: Connection, device_id: int, *,
                        limit: int = 100) -> list[StoredMessage]:
    """A device's messages, newest first."""
    rows = conn.execute(
        select(messages).where(messages.c.device_id == device_id)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc()).limit(limit)
    ).all()
    return [_stored(r) for r in rows]


def merge_meta(**values: Any) -> Any:
    """A SET value that merges ``values`` into a row's ``meta`` (JSONB ``||``), keeping
    the keys already there."""
    return func.coalesce(messages.c.meta, cast({}, JSONB)).op("||")(cast(values, JSONB))
