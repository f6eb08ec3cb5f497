"""Reading the raw PDU log back: the rows of one SMPP link in a time window, streamed.

Both layouts of the log are read: ``pdu`` rows (``smpp.pdu_log = "all"``,
one PDU each, its time the row's ``created_at``) and ``pdu_batch`` rows
(``"batched"``, many PDUs each with its own time, :mod:`blobstore.pdu_batches`).
A batch row is written a little after its PDUs (the log's group commit,
longer under back-pressure), so the rows that can hold the PDUs of
``[since, until)`` are those created in ``[since - skew, until + slack)``:
a PDU is never stored before it crossed the wire, but its time is read on
the MEPL host's clock and the row's on the database's, which may be a
little behind.  ``ix_messages_pdu_log``
(migration 0014) finds them by (``link``, ``created_at``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from blobstore.pdu_batches import KIND as BATCH_KIND

PDU_KINDS = ("pdu", BATCH_KIND)
"""The ``messages.kind`` of raw PDU rows, in either layout."""
STORE_SLACK = timedelta(minutes=10)
"""How long after its PDUs a batch row may be written, at most, for a window's look-up."""
CLOCK_SKEW = timedelta(minutes=1)
"""How far the database's clock may be behind a MEPL host's, at most, for a look-up."""

_ROWS = text(
    "SELECT id, direction, kind, created_at, payload FROM messages "
    "WHERE kind IN ('pdu', 'pdu_batch') AND link = :link "
    "AND created_at >= :lower AND created_at < :upper "
    "AND (CAST(:direction AS text) IS NULL OR direction = :direction) "
    "ORDER BY created_at, id")


@dataclass(frozen=True, slots=True)
class PduRow:
    """One stored row of the raw PDU log (``kind`` says which layout)."""

    id: int
    direction: str
    kind: str
    created_at: datetime
    payload: bytes


def pdu_rows_txn(conn: Connection, *, link: str, since: datetime, until: datetime,
                 direction: str | None = None,
                 slack: timedelta = STORE_SLACK,
                 skew: timedelta = CLOCK_SKEW) -> Iterator[PduRow]:
    """The PDU log rows of ``link`` that can hold PDUs of ``[since, until)``, oldest first.

    Rows are streamed (a server-side cursor, 50 at a time), so a long
    window costs time, not memory; iterate inside the transaction.
    """
    params: dict[str, Any] = {"link": link, "lower": since - skew, "upper": until + slack,
                              "direction": direction}
    # Options on the statement, not the connection: SQLAlchemy 2 sets a connection's
    # options in place, and every later statement of the transaction would stream too.
    result = conn.execute(_ROWS.execution_options(stream_results=True, yield_per=50), params)
    for row in result:
        yield PduRow(int(row.id), str(row.direction), str(row.kind), row.created_at,
                     bytes(row.payload))


LINKS_QUERY = text(
    # A loose scan of ix_messages_pdu_log: one index look-up per link, however
    # many PDU rows each has.
    "WITH RECURSIVE found(link) AS ("
    "SELECT min(link) FROM messages WHERE kind IN ('pdu', 'pdu_batch') "
    "UNION ALL SELECT (SELECT min(m.link) FROM messages AS m "
    "WHERE m.kind IN ('pdu', 'pdu_batch') AND m.link > found.link) "
    "FROM found WHERE found.link IS NOT NULL) "
    "SELECT link FROM found WHERE link IS NOT NULL LIMIT :limit")
"""The links with PDU rows: a loose scan of ``ix_messages_pdu_log`` (tests EXPLAIN it)."""


def pdu_links_txn(conn: Connection, *, limit: int = 100) -> list[str]:
    """The links that have PDU rows stored (any time), in order; at most ``limit``."""
    return [str(link) for link in conn.execute(LINKS_QUERY, {"limit": limit}).scalars()]


HAS_LINK_QUERY = text("SELECT EXISTS (SELECT 1 FROM messages WHERE kind IN ('pdu', 'pdu_batch') "
                 "AND link = :link)")
"""Whether a link has PDU rows: one look-up in ``ix_messages_pdu_log`` (tests EXPLAIN it)."""


def link_has_pdus_txn(conn: Connection, link: str) -> bool:
    """Whether ``link`` has any PDU row stored, at any time (one index look-up)."""
    return bool(conn.execute(HAS_LINK_QUERY, {"link": link}).scalar_one())
