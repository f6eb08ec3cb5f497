"""The raw PDUs of one SMPP link in a time window, decoded, oldest first (``mepl messages pdus``).

Reads both layouts of the PDU log (:mod:`blobstore.pdu_read`).  Each PDU is
shown as the bind read it: command, sequence, status, the dispatcher's
reference (``cmd-<command id>`` on a submit_sm and its response), the SMSC
id a submit_sm_resp gave, the id a delivery receipt reports, and the
addresses of a submit_sm or deliver_sm.  Filters narrow the page; the
window bounds the work (rows are streamed, and only the ``limit`` earliest
matches are kept).  Pages follow each other with an exact cursor: time,
row id and position in the row.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, select

from blobstore.pdu_batches import EPOCH, unpack_batch
from blobstore.pdu_read import (
    STORE_SLACK,
    PduRow,
    link_has_pdus_txn,
    pdu_links_txn,
    pdu_rows_txn,
)
from blobstore.schema import messages
from mepl.app.errors import InvalidRequest, NotFound
from sms_gateway.smpp import codec
from sms_gateway.smpp.receipts import is_receipt, normalise_id, receipt_from_sm
from sms_gateway.smpp.records import Direction, make_record

MAX_PDUS = 5000
"""The largest page."""
AROUND_MESSAGE = timedelta(minutes=2)
"""The window either side of a stored SMS for ``--message``."""
DEFAULT_WINDOW = timedelta(minutes=10)
"""The window when only one end of it (or neither) is given."""


class CursorError(ValueError):
    """A cursor this module did not write."""


@dataclass(frozen=True, order=True, slots=True)
class Cursor:
    """Where a PDU sits in the log: its time (µs since the epoch), its row, its place in the row."""

    at_us: int
    row_id: int
    index: int

    def __str__(self) -> str:
        return f"{self.at_us}.{self.row_id}.{self.index}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        """Read a cursor printed by :meth:`__str__`."""
        parts = value.strip().split(".")
        try:
            at_us, row_id, index = (int(p) for p in parts)
        except ValueError:
            raise CursorError(f"not a PDU cursor: {value!r} (as printed after 'more:')") from None
        if len(parts) != 3 or min(at_us, row_id, index) < 0:
            raise CursorError(f"not a PDU cursor: {value!r} (as printed after 'more:')")
        return cls(at_us, row_id, index)


@dataclass(frozen=True, slots=True)
class PduView:
    """One raw PDU, decoded as far as its bytes allow."""

    cursor: Cursor
    at: datetime
    direction: str
    link: str
    command: str
    sequence: int | None
    status: str | None
    reference: str | None
    smsc_message_id: str | None
    receipt_for: str | None
    source: str | None
    destination: str | None
    raw: bytes
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, the exact bytes as hex."""
        return {"cursor": str(self.cursor), "at": self.at.isoformat(),
                "direction": self.direction, "link": self.link, "message_id": self.cursor.row_id,
                "command": self.command, "sequence": self.sequence, "status": self.status,
                "reference": self.reference, "smsc_message_id": self.smsc_message_id,
                "receipt_for": self.receipt_for, "source": self.source,
                "destination": self.destination, "octets": len(self.raw), "note": self.note,
                "hex": self.raw.hex()}


@dataclass(frozen=True)
class PduQuery:
    """What to read: a link, a window and the filters (all given ones must match).

    ``smsc_ids``, ``references`` and ``addresses`` match together: a PDU
    passes when it has one of the ids (a submit_sm_resp's, or the one a
    receipt reports), one of the references, or one of the addresses as its
    source or destination.  Ids are compared without case, blanks and
    leading zeros; numbers by their digits (``+44 7700`` is ``447700``), an
    address without digits (an alphanumeric sender) as written, without case.
    """

    link: str
    since: datetime
    until: datetime
    direction: str | None = None
    commands: frozenset[str] = frozenset()
    smsc_ids: frozenset[str] = frozenset()
    references: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()
    after: Cursor | None = None
    limit: int = 200
    slack: timedelta = STORE_SLACK

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PDUS:
            raise ValueError(f"limit must be 1 to {MAX_PDUS}")
        if self.until <= self.since:
            raise ValueError("the window is empty: until must be after since")


@dataclass(frozen=True)
class PduPage:
    """The earliest matching PDUs of the window, and the cursor of the next page."""

    query: PduQuery
    pdus: list[PduView]
    next_after: Cursor | None
    rows_read: int = 0
    other_links: tuple[str, ...] | None = None
    """When the link has no PDU rows at all: the links that have (a likely typo)."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"link": self.query.link, "since": self.query.since.isoformat(),
                "until": self.query.until.isoformat(), "rows_read": self.rows_read,
                "items": [p.to_json() for p in self.pdus],
                "next": None if self.next_after is None else str(self.next_after),
                **({} if self.other_links is None else {"other_links": list(self.other_links)})}


def pdu_page_txn(conn: Connection, query: PduQuery) -> PduPage:
    """The first ``query.limit`` PDUs of the window that pass the filters, oldest first."""
    since = query.since
    if query.after is not None:
        since = max(since, EPOCH + timedelta(microseconds=query.after.at_us))
    rows_read = [0]

    def counted(rows: Iterable[PduRow]) -> Iterator[PduRow]:
        for row in rows:
            rows_read[0] += 1
            yield row

    rows = counted(pdu_rows_txn(conn, link=query.link, since=since, until=query.until,
                                direction=query.direction, slack=query.slack))
    ids = frozenset(_id_forms(query.smsc_ids))
    if query.addresses:
        query = replace(query, addresses=frozenset(_address_key(a) for a in query.addresses))
    matching = (p for p in _pdus(rows, query.link) if _wanted(p, query, ids))
    first = heapq.nsmallest(query.limit + 1, matching, key=lambda p: p.cursor)
    more = len(first) > query.limit
    shown = first[:query.limit]
    others = None
    if rows_read[0] == 0 and not link_has_pdus_txn(conn, query.link):
        others = tuple(pdu_links_txn(conn))
    return PduPage(query, shown, shown[-1].cursor if more else None, rows_read[0], others)


@dataclass(frozen=True)
class AroundMessage:
    """What finds a stored SMS's PDUs: its link and time, and what identifies them."""

    link: str
    at: datetime
    smsc_ids: frozenset[str]
    references: frozenset[str]
    addresses: frozenset[str]


def around_message_txn(conn: Connection, message_id: int) -> AroundMessage:
    """A stored SMS's link and time, with what identifies its PDUs (for ``--message``).

    A command part (``mt``) is found by its SMSC id and its command's
    reference; a receipt (``dlr``) by its SMSC id; a message from a device
    (``mo``) by the device's number as the deliver_sm's source.
    """
    row = conn.execute(select(messages.c.link, messages.c.created_at, messages.c.kind,
                              messages.c.channel, messages.c.peer,
                              messages.c.smsc_message_id, messages.c.command_id)
                       .where(messages.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"no message with id {message_id}")
    if row.link is None or row.channel != "smpp" or row.kind in ("pdu", "pdu_batch"):
        raise NotFound(f"message {message_id} is not an SMS of an SMPP link "
                       "(`mepl messages show` reads a PDU row itself)")
    ids = frozenset({row.smsc_message_id} if row.smsc_message_id else ())
    refs = frozenset({f"cmd-{row.command_id}"} if row.command_id is not None
                     and row.kind == "mt" else ())
    peers = frozenset({row.peer} if row.peer and row.kind == "mo" else ())
    return AroundMessage(str(row.link), row.created_at, ids, refs, peers)


def find_pdus_txn(conn: Connection, *, now: datetime, link: str | None = None,
                  message_id: int | None = None, since: datetime | None = None,
                  until: datetime | None = None, direction: str | None = None,
                  commands: Iterable[str] = (), smsc_ids: Iterable[str] = (),
                  references: Iterable[str] = (), addresses: Iterable[str] = (),
                  after: str | None = None, limit: int = 200) -> PduPage:
    """The use case of ``mepl messages pdus`` and ``GET /v1/pdus``: a page of a link's PDUs.

    ``message_id`` takes the link, a window of :data:`AROUND_MESSAGE` either
    side (unless ``since`` or ``until`` is given) and what identifies the
    message's PDUs from that stored SMS; otherwise ``link`` is needed.
    Without either end the window is the :data:`DEFAULT_WINDOW` up to
    ``now``; with one end, :data:`DEFAULT_WINDOW` from or to it.  Raises
    :class:`InvalidRequest` (naming the field) or :class:`NotFound`.
    """
    ids, refs, numbers = set(smsc_ids), set(references), set(addresses)
    if message_id is not None:
        around = around_message_txn(conn, message_id)
        if link is not None and link != around.link:
            raise InvalidRequest(f"message {message_id} is on link {around.link}, not {link}",
                                 field="link")
        link = around.link
        if since is None and until is None:
            since, until = around.at - AROUND_MESSAGE, around.at + AROUND_MESSAGE
        ids |= around.smsc_ids
        refs |= around.references
        numbers |= around.addresses
        if not (ids or refs or numbers):
            raise InvalidRequest(f"message {message_id} has no SMSC id, no command and no "
                                 "sender yet: nothing to match its PDUs by", field="message")
    if link is None:
        raise InvalidRequest("give a link or a message", field="link")
    if since is None:
        until = now if until is None else until
        since = until - DEFAULT_WINDOW
    elif until is None:
        until = since + DEFAULT_WINDOW
    if until <= since:
        raise InvalidRequest("the window is empty: until must be after since", field="until")
    if not 1 <= limit <= MAX_PDUS:
        raise InvalidRequest(f"limit must be 1 to {MAX_PDUS}", field="limit")
    try:
        cursor = None if after is None else Cursor.parse(after)
    except CursorError as exc:
        raise InvalidRequest(str(exc), field="after") from None
    return pdu_page_txn(conn, PduQuery(
        link=link, since=since, until=until, direction=direction, commands=frozenset(commands),
        smsc_ids=frozenset(ids), references=frozenset(refs), addresses=frozenset(numbers),
        after=cursor, limit=limit))


def _wanted(pdu: PduView, query: PduQuery, ids: frozenset[str]) -> bool:
    if not query.since <= pdu.at < query.until:
        return False
    if query.after is not None and pdu.cursor <= query.after:
        return False
    if query.commands and pdu.command not in query.commands:
        return False
    if not (query.smsc_ids or query.references or query.addresses):
        return True
    if pdu.reference is not None and pdu.reference in query.references:
        return True
    if query.addresses and not query.addresses.isdisjoint(
            {_address_key(a) for a in (pdu.source, pdu.destination) if a}):
        return True
    return any(v is not None and not ids.isdisjoint(_id_forms([v]))
               for v in (pdu.smsc_message_id, pdu.receipt_for))


def _address_key(address: str) -> str:
    digits = "".join(ch for ch in address if ch.isdigit())
    return digits or address.strip().casefold()


def _id_forms(values: Iterable[str]) -> Iterator[str]:
    for value in values:
        plain = value.strip().lower()
        yield plain
        yield "hex:" + normalise_id(plain, "hex")
        yield "dec:" + normalise_id(plain, "decimal")


def _pdus(rows: Iterable[PduRow], link: str) -> Iterator[PduView]:
    for row in rows:
        if row.kind == "pdu":
            yield view_pdu(row.id, row.direction, link, 0, row.created_at, None, row.payload)
            continue
        try:
            batch = unpack_batch(row.payload)
        except ValueError as exc:
            yield PduView(Cursor(_micros(row.created_at), row.id, 0), row.created_at,
                          row.direction, link, "unreadable batch", None, None, None, None,
                          None, None, None, row.payload, note=str(exc))
            continue
        for index, pdu in enumerate(batch):
            yield view_pdu(row.id, row.direction, link, index, pdu.at, pdu.reference, pdu.raw)


def view_pdu(row_id: int, direction: str, link: str, index: int, at: datetime,
             reference: str | None, raw: bytes) -> PduView:
    """One stored PDU (``index`` in row ``row_id``) as the bind reads it, body fields added."""
    cursor = Cursor(_micros(at), row_id, index)
    if len(raw) < codec.HEADER_LEN:
        return PduView(cursor, at, direction, link, "short frame", None, None, reference,
                       None, None, None, None, raw, note=f"{len(raw)} octets")
    record = make_record(cast(Direction, direction), link, raw, 0.0)
    source = destination = receipt_for = note = None
    if record.command in ("submit_sm", "deliver_sm"):
        try:
            sm = codec.decode_short_message(raw[codec.HEADER_LEN:])
        except codec.CodecError as exc:
            note = f"body not decoded: {exc}"
        else:
            source, destination = sm.source_addr or None, sm.destination_addr or None
            if record.command == "deliver_sm" and is_receipt(sm):
                receipt_for = _receipt_id(sm, link, at)
    return PduView(cursor, at, direction, link, record.command, record.sequence,
                   codec.describe_status(record.status), reference, record.message_id,
                   receipt_for, source, destination, record.raw, note)


def _receipt_id(sm: codec.ShortMessage, link: str, at: datetime) -> str | None:
    # The bind's own reading of a receipt (TLV first, then the text), the id as written.
    try:
        receipt = receipt_from_sm(sm, link=link, received_at=at, id_mode="as-is")
    except ValueError:  # a NUL inside the id
        return None
    return receipt.message_id or None


def _micros(at: datetime) -> int:
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
