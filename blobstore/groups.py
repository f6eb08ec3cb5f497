"""Device groups: create, list, membership (the targets of fan-out commands)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from blobstore.errors import DuplicateGroupError, GroupNotFoundError
from blobstore.schema import group_members, groups

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class GroupRecord:
    """A group and its number of members."""

    id: int
    name: str
    description: str
    created_at: datetime
    members: int


def check_group_name(name: str) -> str:
    """Return ``name`` if it is a valid group name, else raise ValueError saying why."""
    if not _NAME.match(name):
        raise ValueError(
            f"group name {name!r} must be 1-64 letters, digits or _ . : - "
            "and start with a letter or digit"
        )
    return name


def create_group_txn(conn: Connection, name: str, description: str = "") -> int:
    """Create a group; raises :class:`DuplicateGroupError` if the name is taken."""
    check_group_name(name)
    group_id = conn.execute(
        pg_insert(groups).values(name=name, description=description)
        .on_conflict_do_nothing(index_elements=["name"]).returning(groups.c.id)
    ).scalar()
    if group_id is None:
        raise DuplicateGroupError(f"group {name} already exists")
    return int(group_id)


def ensure_group_txn(conn: Connection, name: str) -> int:
    """The id of group ``name``, creating it if needed (safe under concurrency)."""
    check_group_name(name)
    conn.execute(pg_insert(groups).values(name=name).on_conflict_do_nothing(
        index_elements=["name"]))
    return group_id_txn(conn, name)


def group_id_txn(conn: Connection, name: str) -> int:
    """The id of group ``name``; raises :class:`GroupNotFoundError`."""
    group_id = conn.execute(select(groups.c.id).where(groups.c.name == name)).scalar()
    if group_id is None:
        raise GroupNotFoundError(f"no group named {name}")
    return int(group_id)


def _members_column() -> Any:
    return (
        select(func.count()).select_from(group_members)
        .where(group_members.c.group_id == groups.c.id).scalar_subquery()
    )


def list_groups_txn(conn: Connection) -> list[GroupRecord]:
    """Every group with its member count, by name."""
    rows = conn.execute(
        select(groups.c.id, groups.c.name, groups.c.description, groups.c.created_at,
               _members_column()).order_by(groups.c.name)
    ).all()
    return [GroupRecord(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]


def get_group_txn(conn: Connection, name: str) -> GroupRecord:
    """One group with its member count; raises :class:`GroupNotFoundError`."""
    row = conn.execute(
        select(groups.c.id, groups.c.name, groups.c.description, groups.c.created_at,
               _members_column()).where(groups.c.name == name)
    ).first()
    if row is None:
        raise GroupNotFoundError(f"no group named {name}")
    return GroupRecord(row[0], row[1], row[2], row[3], int(row[4]))


def add_members_txn(conn: Connection, name: str, device_ids: Sequence[int]) -> int:
    """Add devices to group ``name``; return how many were not members yet."""
    group_id = group_id_txn(conn, name)
    if not device_ids:
        return 0
    result = conn.execute(
        pg_insert(group_members).on_conflict_do_nothing()
        .returning(group_members.c.device_id),
        [{"group_id": group_id, "device_id": d} for d in device_ids],
    )
    return len(result.all())


def remove_members_txn(conn: Connection, name: str, device_ids: Sequence[int]) -> int:
    """Remove devices from group ``name``; return how many were members."""
    group_id = group_id_txn(conn, name)
    result = conn.execute(
        delete(group_members).where(
            group_members.c.group_id == group_id, group_members.c.device_id.in_(device_ids)
        )
    )
    return int(result.rowcount)


def group_device_ids_txn(conn: Connection, name: str, *, after_id: int = 0,
                         limit: int = 10_000) -> list[int]:
    """Ids of the devices in group ``name``, ordered, ``limit`` at a time after ``after_id``."""
    group_id = group_id_txn(conn, name)
    rows = conn.execute(
        select(group_members.c.device_id)
        .where(group_members.c.group_id == group_id, group_members.c.device_id > after_id)
        .order_by(group_members.c.device_id).limit(limit)
    )
    return [int(r[0]) for r in rows]
