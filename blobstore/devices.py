"""The device registry: add, find by any identifier, SIM identity changes, state, listing.

Functions named ``*_txn`` take an open :class:`~sqlalchemy.Connection` inside
a transaction (``DatabasePool.run_interaction`` or ``engine.begin()``) and
return plain data.  Identifiers must already be canonical (see
:mod:`blobstore.identity`); :func:`find_device_txn` parses what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.elements import ColumnElement

from blobstore.errors import (
    AmbiguousDeviceError,
    DeviceNotFoundError,
    DuplicateDeviceError,
)
from blobstore.identity import (
    IdentifierKind,
    IdentityError,
    is_valid_imei,
    lookup_candidates,
    parse_imsi,
    parse_msisdn,
)
from blobstore.schema import DEVICE_STATES, devices, group_members, groups, identity_history


@dataclass(frozen=True)
class DeviceRecord:
    """A device as stored (plain data)."""

    id: int
    imei: str
    imsi: str | None
    msisdn: str | None
    state: str
    key_id: int | None
    public_key: bytes | None
    counter_hwm: int
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime
    groups: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (public key as hex, times as ISO 8601)."""
        return {
            "id": self.id,
            "imei": self.imei,
            "imsi": self.imsi,
            "msisdn": self.msisdn,
            "state": self.state,
            "key_id": self.key_id,
            "public_key": self.public_key.hex() if self.public_key is not None else None,
            "counter_hwm": self.counter_hwm,
            "last_seen_at": _iso(self.last_seen_at),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "groups": list(self.groups),
        }


@dataclass(frozen=True)
class IdentityChange:
    """One row of a device's identity history."""

    kind: str
    old_value: str | None
    new_value: str | None
    changed_at: datetime
    source: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _groups_column() -> Any:
    return (
        select(func.array_agg(aggregate_order_by(groups.c.name, groups.c.name)))
        .select_from(group_members.join(groups, groups.c.id == group_members.c.group_id))
        .where(group_members.c.device_id == devices.c.id)
        .scalar_subquery()
        .label("groups")
    )


def _device_select() -> Any:
    return select(
        devices.c.id, devices.c.imei, devices.c.imsi, devices.c.msisdn, devices.c.state,
        devices.c.key_id, devices.c.public_key, devices.c.counter_hwm, devices.c.last_seen_at,
        devices.c.created_at, devices.c.updated_at, _groups_column(),
    )


def _record(row: Row[Any]) -> DeviceRecord:
    m = row._mapping
    key = m["public_key"]
    return DeviceRecord(
        id=m["id"], imei=m["imei"], imsi=m["imsi"], msisdn=m["msisdn"], state=m["state"],
        key_id=m["key_id"], public_key=bytes(key) if key is not None else None,
        counter_hwm=m["counter_hwm"], last_seen_at=m["last_seen_at"],
        created_at=m["created_at"], updated_at=m["updated_at"],
        groups=tuple(m["groups"] or ()),
    )


def check_canonical(imei: str, imsi: str | None, msisdn: str | None) -> None:
    """Raise :class:`IdentityError` unless the identifiers are in canonical form."""
    if not is_valid_imei(imei):
        raise IdentityError(f"IMEI {imei!r} is not 15 digits with a valid check digit")
    if imsi is not None and parse_imsi(imsi) != imsi:
        raise IdentityError(f"IMSI {imsi!r} is not canonical")
    if msisdn is not None and not _is_e164(msisdn):
        raise IdentityError(f"phone number {msisdn!r} is not in E.164 form")


def _is_e164(msisdn: str) -> bool:
    try:
        return msisdn.startswith("+") and parse_msisdn(msisdn) == msisdn
    except IdentityError:
        return False


def add_device_txn(conn: Connection, imei: str, *, imsi: str | None = None,
                   msisdn: str | None = None,
                   state: str = "unprovisioned") -> DeviceRecord:
    """Register a device; raises :class:`DuplicateDeviceError` if the IMEI exists.

    The identity history records changes only: a device's first IMSI and
    number are its current ones until the first change (whose ``old_value``
    then keeps them).
    """
    check_canonical(imei, imsi, msisdn)
    if state not in DEVICE_STATES:
        raise ValueError(f"unknown device state {state!r}")
    device_id = conn.execute(
        pg_insert(devices)
        .values(imei=imei, imsi=imsi, msisdn=msisdn, state=state)
        .on_conflict_do_nothing(index_elements=["imei"])
        .returning(devices.c.id)
    ).scalar()
    if device_id is None:
        raise DuplicateDeviceError(f"IMEI {imei} is already registered")
    return get_device_txn(conn, device_id)


def get_device_txn(conn: Connection, device_id: int) -> DeviceRecord:
    """The device with primary key ``device_id``; raises :class:`DeviceNotFoundError`."""
    row = conn.execute(_device_select().where(devices.c.id == device_id)).first()
    if row is None:
        raise DeviceNotFoundError(f"no device with id {device_id}")
    return _record(row)


def device_by_imei_txn(conn: Connection, imei: str) -> DeviceRecord | None:
    """The device with this canonical IMEI, or None."""
    row = conn.execute(_device_select().where(devices.c.imei == imei)).first()
    return _record(row) if row is not None else None


def devices_by_msisdn_txn(conn: Connection, msisdn: str) -> list[DeviceRecord]:
    """Devices whose current number is ``msisdn`` (E.164); usually zero or one."""
    rows = conn.execute(
        _device_select().where(devices.c.msisdn == msisdn).order_by(devices.c.id)
    ).all()
    return [_record(r) for r in rows]


def find_device_txn(conn: Connection, identifier: str,
                    default_region: str | None = None) -> DeviceRecord:
    """Find a device by IMEI, IMSI or phone number, however written.

    The string is read as every identifier it could be (IMEI first, then
    IMSI, then phone number, see :func:`~blobstore.identity.lookup_candidates`);
    the first reading that matches a device wins.  Raises
    :class:`~blobstore.identity.IdentityError` for a string that is none of
    them, :class:`DeviceNotFoundError` when nothing matches and
    :class:`AmbiguousDeviceError` when one reading matches several devices.
    """
    candidates = lookup_candidates(identifier, default_region)
    columns = {
        IdentifierKind.IMEI: devices.c.imei,
        IdentifierKind.IMSI: devices.c.imsi,
        IdentifierKind.MSISDN: devices.c.msisdn,
    }
    clauses: list[ColumnElement[bool]] = [columns[c.kind] == c.value for c in candidates]
    rows = conn.execute(_device_select().where(or_(*clauses)).order_by(devices.c.id)).all()
    records = [_record(r) for r in rows]
    for candidate in candidates:
        attr = candidate.kind.value
        matches = [r for r in records if getattr(r, attr) == candidate.value]
        if len(matches) == 1:
            return matches[0]
        if matches:
            imeis = ", ".join(r.imei for r in matches)
            raise AmbiguousDeviceError(
                f"{len(matches)} devices have {attr.upper()} {candidate.value}: {imeis}"
            )
    readings = " or ".join(f"{c.kind.value.upper()} {c.value}" for c in candidates)
    raise DeviceNotFoundError(f"no device with {readings}")


_UNSET: Any = object()


def update_identity_txn(conn: Connection, device_id: int, *, imsi: str | None = _UNSET,
                        msisdn: str | None = _UNSET, source: str) -> list[IdentityChange]:
    """Change a device's current IMSI and/or number; record each change in the history.

    Arguments left out are not touched; passing None clears the value.
    Returns the changes written (none when the values are already current).
    """
    row = conn.execute(
        select(devices.c.imsi, devices.c.msisdn).where(devices.c.id == device_id)
        .with_for_update(key_share=True)
    ).first()
    if row is None:
        raise DeviceNotFoundError(f"no device with id {device_id}")
    changes: dict[str, tuple[str | None, str | None]] = {}
    if imsi is not _UNSET and imsi != row.imsi:
        if imsi is not None and parse_imsi(imsi) != imsi:
            raise IdentityError(f"IMSI {imsi!r} is not canonical")
        changes["imsi"] = (row.imsi, imsi)
    if msisdn is not _UNSET and msisdn != row.msisdn:
        if msisdn is not None and not _is_e164(msisdn):
            raise IdentityError(f"phone number {msisdn!r} is not in E.164 form")
        changes["msisdn"] = (row.msisdn, msisdn)
    if not changes:
        return []
    conn.execute(
        update(devices).where(devices.c.id == device_id)
        .values({**{k: new for k, (_, new) in changes.items()}, "updated_at": func.now()})
    )
    written = conn.execute(
        insert(identity_history).returning(
            identity_history.c.kind, identity_history.c.old_value, identity_history.c.new_value,
            identity_history.c.changed_at, identity_history.c.source,
            sort_by_parameter_order=True,
        ),
        [{"device_id": device_id, "kind": kind, "old_value": old, "new_value": new,
          "source": source} for kind, (old, new) in changes.items()],
    ).all()
    return [IdentityChange(r.kind, r.old_value, r.new_value, r.changed_at, r.source)
            for r in written]


def identity_history_txn(conn: Connection, device_id: int) -> list[IdentityChange]:
    """A device's identity history, oldest first."""
    rows = conn.execute(
        select(identity_history.c.kind, identity_history.c.old_value,
               identity_history.c.new_value, identity_history.c.changed_at,
               identity_history.c.source)
        .where(identity_history.c.device_id == device_id)
        .order_by(identity_history.c.changed_at, identity_history.c.id)
    ).all()
    return [IdentityChange(r.kind, r.old_value, r.new_value, r.changed_at, r.source)
            for r in rows]


def set_device_state_txn(conn: Connection, device_id: int, state: str) -> str:
    """Set a device's state; return the previous one."""
    if state not in DEVICE_STATES:
        raise ValueError(f"unknown device state {state!r}; one of {', '.join(DEVICE_STATES)}")
    old = conn.execute(
        select(devices.c.state).where(devices.c.id == device_id).with_for_update(key_share=True)
    ).scalar()
    if old is None:
        raise DeviceNotFoundError(f"no device with id {device_id}")
    conn.execute(update(devices).where(devices.c.id == device_id)
                 .values(state=state, updated_at=func.now()))
    return str(old)


def set_device_key_txn(conn: Connection, device_id: int, key_id: int,
                       public_key: bytes) -> None:
    """Store the device's public key (at enrolment or rotation).

    The device's reply/alert counters belong to its key: a new key starts a
    new counter space, so the stored window is reset when the key changes
    (and kept when the same key is stored again).
    """
    current = conn.execute(
        select(devices.c.public_key).where(devices.c.id == device_id)
        .with_for_update(key_share=True)
    ).first()
    if current is None:
        raise DeviceNotFoundError(f"no device with id {device_id}")
    values: dict[str, Any] = {"key_id": key_id, "public_key": public_key,
                              "updated_at": func.now()}
    if current.public_key is None or bytes(current.public_key) != public_key:
        values.update(counter_hwm=0, counter_window=0)
    conn.execute(update(devices).where(devices.c.id == device_id).values(values))


def touch_last_seen_txn(conn: Connection, device_id: int, at: datetime) -> None:
    """Record that the device was heard from at ``at`` (never moves backwards)."""
    conn.execute(
        update(devices).where(and_(
            devices.c.id == device_id,
            or_(devices.c.last_seen_at.is_(None), devices.c.last_seen_at < at),
        )).values(last_seen_at=at)
    )


def list_devices_txn(conn: Connection, *, group: str | None = None, after_id: int = 0,
                     limit: int = 1000, state: str | None = None,
                     prefix: str | None = None) -> list[DeviceRecord]:
    """Devices ordered by id, ``limit`` at a time after ``after_id`` (keyset paging);
    only in ``state``, only those whose IMEI, IMSI or number starts with ``prefix``."""
    query = _device_select().where(devices.c.id > after_id)
    if group is not None:
        query = query.where(devices.c.id.in_(_members_of(group)))
    if state is not None:
        query = query.where(devices.c.state == state)
    if prefix:
        query = query.where(or_(devices.c.imei.startswith(prefix, autoescape=True),
                                devices.c.imsi.startswith(prefix, autoescape=True),
                                devices.c.msisdn.startswith(prefix, autoescape=True)))
    rows = conn.execute(query.order_by(devices.c.id).limit(limit)).all()
    return [_record(r) for r in rows]


def _members_of(group: str) -> Select[Any]:
    return (select(group_members.c.device_id)
            .join(groups, groups.c.id == group_members.c.group_id)
            .where(groups.c.name == group))


def reachable_device_ids(*, group: str | None = None, enrolled: bool = False) -> Select[Any]:
    """A SELECT of the ids of the devices commands may go to: not retired, members of
    ``group`` (any device when None), with a public key when ``enrolled``.

    For :func:`~blobstore.commands.insert_fanout_commands_txn` (the fan-out
    stays in the database) and :func:`count_selected_txn`.
    """
    query = select(devices.c.id).where(devices.c.state != "retired")
    if group is not None:
        query = query.where(devices.c.id.in_(_members_of(group)))
    if enrolled:
        query = query.where(devices.c.public_key.is_not(None))
    return query


def count_selected_txn(conn: Connection, ids: Select[Any]) -> int:
    """How many rows the SELECT ``ids`` returns (counted in the database)."""
    return int(conn.execute(select(func.count()).select_from(ids.subquery())).scalar_one())


def count_devices_txn(conn: Connection) -> int:
    """Number of registered devices."""
    return int(conn.execute(select(func.count()).select_from(devices)).scalar_one())


def device_ids_for_imeis_txn(conn: Connection, imeis: Sequence[str]) -> dict[str, int]:
    """Map each registered IMEI among ``imeis`` to its device id."""
    rows = conn.execute(select(devices.c.imei, devices.c.id).where(devices.c.imei.in_(imeis)))
    return {r.imei: r.id for r in rows}
