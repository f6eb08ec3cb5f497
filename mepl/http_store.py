"""The adapter from the HTTP callback store contract to the real message store.

``sms_gateway`` does not import ``blobstore``; the composition root wires
them like this: a :class:`BatchingCallbackStore` whose batches are one
transaction each through ``DatabasePool.run_interaction``.  Each callback is
one ``messages`` row: direction ``in``, channel ``http``, kind ``mo`` /
``dlr`` / ``malformed``, link = gateway name, peer = remote address, the
whole request (:meth:`RawCallback.wire_bytes`) as the payload BLOB, and
external_id = ``<kind>:<gateway id>``, claimed in ``message_keys`` (unique
on direction, link, external_id) so a retried callback is caught.  Every new, well-formed
``mo``/``dlr`` callback is queued (``inbound_queue``, kind ``callback``) in
the same transaction, so what is acknowledged is always applied, by this
process or another.

Speed: one batch costs one statement through the DBAPI cursor
(``execute_values``): a ``message_keys`` ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` feeding the ``messages`` INSERT of the new rows, plus a
SELECT only when some were already stored; per-row SQLAlchemy parameter
processing cost more than the HTTP request itself.  The conflict target is
``message_keys``' primary key, so concurrent batches cannot race.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Connection
from twisted.internet.defer import Deferred

from blobstore.messages import NewMessage
from blobstore.pool import InteractionRunner
from sms_gateway.http import BatchingCallbackStore, RawCallback, StoredCallback

# Constant column names only; values always go through the driver's parameters.
_COLUMNS = ("direction", "channel", "kind", "link", "peer", "external_id", "payload", "sha256",
            "error")
_INSERT = f"INSERT INTO messages ({', '.join(_COLUMNS)}) VALUES %s RETURNING id"  # noqa: S608
# The gateway id is claimed in message_keys (unique; messages is partitioned and
# cannot be); only the rows whose key was new are stored, with the key's id.
_INSERT_UNIQUE = (
    "WITH v (kind, link, peer, external_id, payload, sha256, error) AS (VALUES %s), "
    "k AS (INSERT INTO message_keys (direction, link, external_id, message_id) "
    "SELECT 'in', link, external_id, nextval('messages_id_seq') FROM v "
    "ON CONFLICT DO NOTHING RETURNING link, external_id, message_id) "
    "INSERT INTO messages (id, direction, channel, kind, link, peer, external_id, payload, "
    "sha256, error) SELECT k.message_id, 'in', 'http', v.kind, v.link, v.peer, v.external_id, "
    "v.payload, v.sha256, v.error FROM k JOIN v ON v.link = k.link "
    "AND v.external_id = k.external_id RETURNING id, link, external_id")
_ENQUEUE = "INSERT INTO inbound_queue (message_id, kind, link) VALUES %s"
_KNOWN = ("SELECT link, external_id, message_id FROM message_keys WHERE direction = 'in' "
          "AND link = ANY(%s) AND external_id = ANY(%s)")


def external_id(raw: RawCallback) -> str | None:
    """The stored external_id: the kind folded in, so an MO and a DLR never collide."""
    return None if raw.external_id is None else f"{raw.kind}:{raw.external_id}"


def to_new_message(raw: RawCallback) -> NewMessage:
    """The message row for one raw callback (the slow, per-row path)."""
    return NewMessage(direction="in", channel="http", kind=raw.kind, payload=raw.wire_bytes(),
                      link=raw.gateway, peer=raw.remote or None, external_id=external_id(raw),
                      error=raw.error)


def store_callbacks_txn(conn: Connection, raws: Sequence[RawCallback]) -> list[StoredCallback]:
    """Insert a batch of callbacks in one transaction; duplicates get the stored row's id.

    Callbacks with a gateway id go in one statement (key claimed in
    ``message_keys``, message stored if the key was new); the ones it skipped
    (already stored) are looked up after.
    Malformed callbacks (no id) go in one plain multi-row INSERT.
    """
    cursor: Any = conn.connection.cursor()
    try:
        return _store_batch(cursor, raws)
    finally:
        cursor.close()


def _row(raw: RawCallback, eid: str | None) -> tuple[Any, ...]:
    payload = raw.wire_bytes()
    return ("in", "http", raw.kind, raw.gateway, raw.remote or None, eid, payload,
            hashlib.sha256(payload).digest(), raw.error)


def _keyed_row(raw: RawCallback, eid: str) -> tuple[Any, ...]:
    return _row(raw, eid)[2:]  # direction and channel are constants of the statement


def _store_batch(cursor: Any, raws: Sequence[RawCallback]) -> list[StoredCallback]:
    plain: list[int] = []
    keyed: dict[tuple[str, str], int] = {}  # first index of each (link, external_id)
    for index, raw in enumerate(raws):
        eid = external_id(raw)
        if eid is None:
            plain.append(index)
        else:
            keyed.setdefault((raw.gateway, eid), index)
    new: dict[int, int] = {}
    if plain:
        rows = execute_values(cursor, _INSERT, [_row(raws[i], None) for i in plain],
                              page_size=len(plain), fetch=True)
        # One statement: the sequence hands out ids in VALUES order.
        new.update(zip(plain, sorted(int(r[0]) for r in rows), strict=True))
    stored: dict[tuple[str, str], int] = {}
    if keyed:
        rows = execute_values(cursor, _INSERT_UNIQUE,
                              [_keyed_row(raws[i], key[1]) for key, i in keyed.items()],
                              page_size=len(keyed), fetch=True)
        for row_id, link, eid in rows:
            new[keyed[(link, eid)]] = int(row_id)
        missing = [key for key, i in keyed.items() if i not in new]
        if missing:
            cursor.execute(_KNOWN, (sorted({k[0] for k in missing}),
                                    sorted({k[1] for k in missing})))
            stored = {(link, eid): int(row_id) for link, eid, row_id in cursor.fetchall()}
    queued = [(new[i], raws[i].gateway) for i in sorted(new)
              if raws[i].kind in ("mo", "dlr") and raws[i].error is None]
    if queued:
        execute_values(cursor, _ENQUEUE, queued, template="(%s, 'callback', %s)",
                       page_size=len(queued))
    out: list[StoredCallback] = []
    for index, raw in enumerate(raws):
        if index in new:
            out.append(StoredCallback(new[index], False))
            continue
        key = (raw.gateway, str(external_id(raw)))
        first = keyed[key]
        out.append(StoredCallback(new[first] if first in new else stored[key], True))
    return out


def blobstore_callback_store(runner: InteractionRunner, *, max_batch: int = 500,
                             max_in_flight: int = 1) -> BatchingCallbackStore:
    """A group-committing CallbackStore over ``runner`` (a DatabasePool)."""

    def store_batch(raws: Sequence[RawCallback]) -> Deferred[Sequence[StoredCallback]]:
        d: Deferred[Sequence[StoredCallback]] = runner.run_interaction(
            "store_http_callbacks", store_callbacks_txn, list(raws))
        return d

    return BatchingCallbackStore(store_batch, max_batch=max_batch, max_in_flight=max_in_flight)
