"""Which server key each device has accepted (frames to it are sealed with that key).

A device is pinned when it is enrolled, to the key active then (its
provisioning bundle holds it): :func:`pin_device_txn`.  ``mepl keys rotate``
pins any enrolled device still without a row to the key active before the
rotation (:func:`pin_unpinned_txn`).  A device that somehow has no row is
pinned to the dispatcher's default key when it is first sealed for.  A device
moves to a newer key only when its signed reply to the ``rotate_key`` that
announced it is applied (:func:`accept_key_txn`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blobstore.prepared import Prepared
from blobstore.schema import device_server_keys, devices

_PIN_MISSING = Prepared("pin_missing", (
    "INSERT INTO device_server_keys (device_id, key_id) SELECT id, :key FROM unnest(:ids) AS "
    "v(id) ORDER BY id ON CONFLICT (device_id) DO NOTHING"
), {"ids": "bigint[]", "key": "integer"})
_ACCEPTED_KEYS = Prepared("accepted_keys", (
    "SELECT device_id, key_id FROM device_server_keys WHERE device_id = ANY(:ids)"
), {"ids": "bigint[]"})


def device_keys_txn(conn: Connection, device_ids: Collection[int], *,
                    default_key: int) -> dict[int, int]:
    """The accepted key of each device; devices with none are pinned to ``default_key``."""
    if not device_ids:
        return {}
    ids = sorted(set(device_ids))
    _PIN_MISSING(conn, {"ids": ids, "key": default_key})
    # A second statement (a new snapshot): it sees a row another transaction
    # committed while the insert above skipped it as a conflict.
    return {int(r.device_id): int(r.key_id) for r in _ACCEPTED_KEYS(conn, {"ids": ids})}


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


def pin_device_txn(conn: Connection, device_id: int, key_id: int, *, replace: bool) -> int:
    """Record that the device was provisioned with server key ``key_id`` (at enrolment);
    return the key now on record.

    ``replace`` overwrites a key already on record (a re-provisioned handset,
    or the operator said so); otherwise a device that has a key keeps it, so
    enrolling the same handset again never moves it to a key it does not have.
    """
    insert = pg_insert(device_server_keys).values(device_id=device_id, key_id=key_id)
    if replace:
        conn.execute(insert.on_conflict_do_update(
            index_elements=["device_id"], set_={"key_id": key_id, "updated_at": func.now()}))
    else:
        conn.execute(insert.on_conflict_do_nothing(index_elements=["device_id"]))
    return int(conn.execute(select(device_server_keys.c.key_id)
                            .where(device_server_keys.c.device_id == device_id)).scalar_one())


def pin_unpinned_txn(conn: Connection, key_id: int) -> int:
    """Pin every enrolled device (it has a public key) without a key on record to
    ``key_id``, in one statement; return how many were pinned."""
    source = select(devices.c.id, literal(key_id)).where(devices.c.public_key.is_not(None))
    return int(conn.execute(
        pg_insert(device_server_keys).from_select(["device_id", "key_id"], source)
        .on_conflict_do_nothing(index_elements=["device_id"])
    ).rowcount)


def unpinned_count_txn(conn: Connection) -> int:
    """How many enrolled devices (with a public key) have no server key on record."""
    return int(conn.execute(
        select(func.count()).select_from(devices)
        .where(devices.c.public_key.is_not(None),
               ~select(device_server_keys.c.device_id)
               .where(device_server_keys.c.device_id == devices.c.id).exists())
    ).scalar_one())
