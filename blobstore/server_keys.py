"""Which server key each device has accepted (frames to it are sealed with that key).

A device without a row is pinned to the key in use when it is first sealed
for (or enrolled); it moves to a newer key only when its signed reply to the
``rotate_key`` that announced it is applied (:func:`accept_key_txn`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blobstore.schema import device_server_keys


def device_keys_txn(conn: Connection, device_ids: Collection[int], *,
                    default_key: int) -> dict[int, int]:
    """The accepted key of each device; devices with none are pinned to ``default_key``."""
    if not device_ids:
        return {}
    ids = sorted(set(device_ids))
    conn.execute(pg_insert(device_server_keys)
                 .values([{"device_id": i, "key_id": default_key} for i in ids])
                 .on_conflict_do_nothing(index_elements=["device_id"]))
    rows = conn.execute(select(device_server_keys.c.device_id, device_server_keys.c.key_id)
                        .where(device_server_keys.c.device_id.in_(ids))).all()
    return {int(r.device_id): int(r.key_id) for r in rows}


def accept_key_txn(conn: Connection, device_id: int, key_id: int, now: datetime) -> None:
    """The device proved (signed reply) that it accepted server key ``key_id``."""
    conn.execute(pg_insert(device_server_keys)
                 .values(device_id=device_id, key_id=key_id, updated_at=now)
                 .on_conflict_do_update(index_elements=["device_id"],
                                        set_={"key_id": key_id, "updated_at": now}))


def key_counts_txn(conn: Connection) -> dict[int, int]:
    """How many devices are on each server key."""
    rows = conn.execute(select(device_server_keys.c.key_id, func.count())
                        .group_by(device_server_keys.c.key_id)).all()
    return {int(k): int(n) for k, n in rows}
