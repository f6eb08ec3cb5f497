"""Replay counters for signed frames, allocated atomically in the database.

A counter for (server key, device) is taken with one ``INSERT ... ON CONFLICT
DO UPDATE ... RETURNING``: the row lock makes concurrent allocations (from
threads or from several MEPL processes) serialise, so no counter is ever
handed out twice.  A counter taken by a transaction that rolls back is
reused by the next allocation, which is safe: no frame carrying it committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, literal_column
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blobstore.prepared import Prepared
from blobstore.schema import MAX_COUNTER, server_key_counters


class CounterExhaustedError(Exception):
    """The 48-bit counter space for this (key, device) is used up: rotate the key."""


def allocate_counter_txn(conn: Connection, key_id: int, device_id: int, count: int = 1) -> int:
    """Take ``count`` consecutive counters; return the first (counters start at 1)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    table = server_key_counters
    stmt: Any = pg_insert(table).values(
        key_id=key_id, device_id=device_id, next_counter=1 + count
    ).on_conflict_do_update(
        index_elements=[table.c.key_id, table.c.device_id],
        set_={"next_counter": table.c.next_counter + count},
    ).returning(literal_column("next_counter") - count)
    first = int(conn.execute(stmt).scalar_one())
    if first + count - 1 > MAX_COUNTER:
        raise CounterExhaustedError(
            f"server key {key_id} has no counters left for device {device_id}"
        )
    return first


_ALLOCATE_MANY = Prepared("allocate_counters", (
    "INSERT INTO server_key_counters (key_id, device_id, next_counter) "
    "SELECT k, d, 1 + n FROM unnest(:keys, :devices, :counts) AS v(k, d, n) "
    "ON CONFLICT (key_id, device_id) DO UPDATE "
    "SET next_counter = server_key_counters.next_counter + EXCLUDED.next_counter - 1 "
    "RETURNING key_id, device_id, next_counter"
), {"keys": "integer[]", "devices": "bigint[]", "counts": "bigint[]"})


def allocate_counters_txn(conn: Connection,
                          wanted: Mapping[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """Take ``n`` consecutive counters for each (key id, device id): the first of each.

    One statement for the batch, rows taken in (key, device) order (two
    batches never deadlock on each other); as :func:`allocate_counter_txn`
    otherwise.
    """
    pairs = sorted(wanted)
    if not pairs:
        return {}
    if any(wanted[p] < 1 for p in pairs):
        raise ValueError("count must be at least 1")
    firsts: dict[tuple[int, int], int] = {}
    for row in _ALLOCATE_MANY(conn, {"keys": [p[0] for p in pairs],
                                     "devices": [p[1] for p in pairs],
                                     "counts": [wanted[p] for p in pairs]}):
        pair = (int(row.key_id), int(row.device_id))
        first = int(row.next_counter) - wanted[pair]
        if first + wanted[pair] - 1 > MAX_COUNTER:
            raise CounterExhaustedError(
                f"server key {pair[0]} has no counters left for device {pair[1]}")
        firsts[pair] = first
    return firsts
