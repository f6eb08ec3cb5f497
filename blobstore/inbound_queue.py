"""The durable inbound queue: stored inbound items waiting for their one apply transaction.

An item is queued in the transaction that stores its bytes, before the SMSC
or gateway is acknowledged.  Workers in any MEPL process claim due items
with a lease (``claimed_by``/``claimed_at``; rows locked by another claim
are skipped); a claim older than the lease is taken over, so a process that
dies mid-item loses nothing.  The transaction that applies an item locks
its row first (:func:`lock_entry_txn`) and deletes it (:func:`finish_txn`):
applied exactly once, or not at all and claimed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update

from blobstore.prepared import Prepared
from blobstore.schema import inbound_queue, messages


@dataclass(frozen=True)
class QueueEntry:
    """A claimed inbound item and the stored row it points at."""

    id: int
    message_id: int
    kind: str
    link: str | None
    smsc_message_id: str | None
    attempts: int
    channel: str
    message_kind: str
    peer: str | None
    payload: bytes
    part_seq: int | None
    part_total: int | None
    meta: Any
    received_at: datetime


def enqueue_txn(conn: Connection, message_id: int, kind: str, *, link: str | None = None,
                smsc_message_id: str | None = None) -> None:
    """Queue stored message ``message_id`` (``callback``, ``mo`` or ``dlr``) for applying."""
    conn.execute(insert(inbound_queue).values(
        message_id=message_id, kind=kind, link=link, smsc_message_id=smsc_message_id))


_ENQUEUE = Prepared("enqueue", (
    "INSERT INTO inbound_queue (message_id, kind, link, smsc_message_id) "
    "SELECT v.message_id, v.kind, v.link, v.smsc FROM unnest(:ids, :kinds, :links, :smscs) "
    "WITH ORDINALITY AS v(message_id, kind, link, smsc, n) ORDER BY v.n"  # ids in order given
), {"ids": "bigint[]", "kinds": "text[]", "links": "text[]", "smscs": "text[]"})


_ENQUEUE_LEASED = Prepared("enqueue_leased", (
    # Claimed at birth by the worker of the process that stored them: that
    # worker applies them from memory, no claim needed; if it stops first,
    # the lease runs out and any worker claims them.  No NOTIFY (migration 0011).
    "INSERT INTO inbound_queue (message_id, kind, link, smsc_message_id, claimed_by, "
    "claimed_at, attempts) "
    "SELECT v.message_id, v.kind, v.link, v.smsc, :worker, :now, 1 "
    "FROM unnest(:ids, :kinds, :links, :smscs) "
    "WITH ORDINALITY AS v(message_id, kind, link, smsc, n) ORDER BY v.n "
    "RETURNING id, message_id"
), {"ids": "bigint[]", "kinds": "text[]", "links": "text[]", "smscs": "text[]",
    "worker": "text", "now": "timestamptz"})


@dataclass(frozen=True)
class Lease:
    """Queue rows claimed at birth by ``worker`` at ``at`` (see :func:`enqueue_many_txn`)."""

    worker: str
    at: datetime


def enqueue_many_txn(conn: Connection,
                     items: Sequence[tuple[int, str, str | None, str | None]], *,
                     lease: Lease | None = None) -> dict[int, int]:
    """Queue several stored messages: (message id, kind, link, SMSC id of a receipt) each.

    With ``lease`` the rows are claimed at birth (one attempt counted) and
    the answer maps each message id to its queue row's id; without, they
    are left for any worker to claim (a NOTIFY wakes the workers) and the
    answer is empty.
    """
    if not items:
        return {}
    params: dict[str, Any] = {
        "ids": [i[0] for i in items], "kinds": [i[1] for i in items],
        "links": [i[2] for i in items], "smscs": [i[3] for i in items]}
    if lease is None:
        _ENQUEUE(conn, params)
        return {}
    rows = _ENQUEUE_LEASED(conn, {**params, "worker": lease.worker, "now": lease.at}).all()
    return {int(r.message_id): int(r.id) for r in rows}


_CLAIM = Prepared("claim_inbound", (
    # Rows are found by id (= ANY of an array): index look-ups whatever the
    # planner estimates, never a join it could turn into a scan of a whole key.
    "WITH due AS MATERIALIZED (SELECT id FROM inbound_queue WHERE state = 'pending' "
    "AND available_at <= :now AND (claimed_at IS NULL OR claimed_at < :stale) "
    "ORDER BY available_at, id LIMIT :limit FOR NO KEY UPDATE SKIP LOCKED), "
    "claimed AS MATERIALIZED (UPDATE inbound_queue AS q SET claimed_by = :worker, "
    "claimed_at = :now, attempts = q.attempts + 1 WHERE q.id = ANY(ARRAY(SELECT id FROM due)) "
    "RETURNING q.id, q.message_id, q.kind, q.link, q.smsc_message_id, q.attempts) "
    "SELECT c.id, c.message_id, c.kind, c.link, c.smsc_message_id, c.attempts, m.channel, "
    "m.kind AS message_kind, m.peer, m.payload, m.part_seq, m.part_total, m.meta, "
    "m.created_at FROM claimed AS c JOIN messages AS m ON m.id = c.message_id "
    "WHERE m.id = ANY(ARRAY(SELECT message_id FROM claimed)) ORDER BY c.id"
), {"now": "timestamptz", "stale": "timestamptz", "limit": "integer", "worker": "text"})
"""The claim, prepared once per session: it runs on every round of every worker."""


def claim_entries_txn(conn: Connection, *, worker: str, now: datetime, lease: timedelta,
                      limit: int) -> list[QueueEntry]:
    """Claim up to ``limit`` due items (oldest first) with their stored rows."""
    rows = _CLAIM(conn, {"now": now, "stale": now - lease, "limit": limit,
                         "worker": worker}).all()
    return [QueueEntry(int(r.id), int(r.message_id), r.kind, r.link, r.smsc_message_id,
                       int(r.attempts), r.channel, r.message_kind, r.peer, bytes(r.payload),
                       r.part_seq, r.part_total, r.meta, r.created_at) for r in rows]


def lock_entry_txn(conn: Connection, entry_id: int, worker: str) -> bool:
    """Lock a claimed item for applying; False if it is gone or another worker took it over."""
    row = conn.execute(
        select(inbound_queue.c.claimed_by).where(inbound_queue.c.id == entry_id)
        .with_for_update(key_share=True)
    ).first()
    return row is not None and row.claimed_by == worker


def finish_txn(conn: Connection, entry_id: int) -> None:
    """The item is applied: remove it from the queue."""
    conn.execute(delete(inbound_queue).where(inbound_queue.c.id == entry_id))


def requeue_txn(conn: Connection, entry_id: int, *, available_at: datetime,
                error: str | None = None) -> None:
    """Give a claimed item back, to be claimed again at ``available_at``."""
    conn.execute(update(inbound_queue).where(inbound_queue.c.id == entry_id).values(
        claimed_by=None, claimed_at=None, available_at=available_at, last_error=error))


def fail_entry_txn(conn: Connection, entry_id: int, error: str) -> None:
    """Park an item that failed too often (kept, with its error, for an operator)."""
    conn.execute(update(inbound_queue).where(inbound_queue.c.id == entry_id).values(
        state="failed", claimed_by=None, claimed_at=None, last_error=error))


def wait_for_submit_txn(conn: Connection, entry_id: int, *, message_id: int, link: str,
                        smsc_message_id: str) -> None:
    """Keep a receipt whose submit is not recorded yet, keyed by (link, SMSC id)."""
    conn.execute(update(inbound_queue).where(inbound_queue.c.id == entry_id).values(
        state="waiting", kind="dlr", message_id=message_id, link=link,
        smsc_message_id=smsc_message_id, claimed_by=None, claimed_at=None))


_WAKE_RECEIPTS = Prepared("wake_receipts", (
    "UPDATE inbound_queue SET state = 'pending', available_at = :now "
    "WHERE kind = 'dlr' AND link = :link AND smsc_message_id = ANY(:ids)"
), {"link": "text", "ids": "text[]", "now": "timestamptz"})


def wake_receipts_txn(conn: Connection, *, link: str, smsc_message_ids: Sequence[str],
                      now: datetime) -> int:
    """Receipts waiting for these submits (or in flight) become due now; returns how many.

    Called in the transaction that records the submit.  Receipt items are
    locked by the transaction applying them, so whichever of the two commits
    second sees the other: a receipt is never left waiting for a submit that
    is recorded.
    """
    return _WAKE_RECEIPTS(conn, {"link": link, "ids": list(smsc_message_ids),
                                 "now": now}).rowcount


_WAKE_FOUND = text(
    "UPDATE inbound_queue AS q SET state = 'pending', available_at = :now "
    "WHERE q.state = 'waiting' AND EXISTS (SELECT 1 FROM messages AS m "
    "WHERE m.link = q.link AND m.smsc_message_id = q.smsc_message_id "
    "AND m.kind = 'mt' AND m.direction = 'out' AND m.command_id IS NOT NULL)"
)


def wake_found_txn(conn: Connection, *, now: datetime) -> int:
    """Receipts waiting for a submit that is recorded after all become due; how many.

    The safety net of :func:`wake_receipts_txn`: a receipt stored while the
    submit's transaction was running, and found without its part by a
    worker before that transaction committed, is not seen by the submit's
    wake-up (its statement ran before the receipt was committed).  Run by
    housekeeping, before waiting receipts are expired.
    """
    return int(conn.execute(_WAKE_FOUND, {"now": now}).rowcount)


def expire_waiting_txn(conn: Connection, *, before: datetime) -> int:
    """Drop receipts that waited since before ``before`` for a submit never recorded.

    Their stored rows keep the bytes and say why (``error``).
    """
    ids = select(inbound_queue.c.message_id).where(
        inbound_queue.c.state == "waiting", inbound_queue.c.created_at < before)
    conn.execute(update(messages).where(messages.c.id.in_(ids))
                 .values(error="receipt for a message never submitted here"))
    return int(conn.execute(delete(inbound_queue).where(
        inbound_queue.c.state == "waiting", inbound_queue.c.created_at < before)).rowcount)


def queue_depth_txn(conn: Connection) -> dict[str, int]:
    """Items in the queue by state."""
    rows = conn.execute(select(inbound_queue.c.state, func.count())
                        .group_by(inbound_queue.c.state)).all()
    return {str(state): int(n) for state, n in rows}
