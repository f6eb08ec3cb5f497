"""Device groups: create, list, show with members, add and remove members (audited)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from blobstore import groups as store
from blobstore.audit import append_audit_txn
from blobstore.devices import DeviceRecord, find_device_txn, list_devices_txn
from blobstore.groups import GroupRecord
from mepl.app.context import Actor
from mepl.app.errors import InvalidRequest, store_errors


@dataclass(frozen=True)
class GroupDetails:
    """A group (with its member count) and its first members, by device id."""

    group: GroupRecord
    members: tuple[DeviceRecord, ...]


def create_group_txn(conn: Connection, actor: Actor, name: str,
                     description: str = "") -> GroupRecord:
    """Create a group; audited as ``group.add``."""
    try:
        store.check_group_name(name)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="name") from None
    with store_errors():
        store.create_group_txn(conn, name, description)
    append_audit_txn(conn, actor=actor.name, role=actor.role, action="group.add",
                     target=name)
    return store.get_group_txn(conn, name)


def list_groups_txn(conn: Connection, actor: Actor) -> list[GroupRecord]:
    """Every group with its member count, by name (not audited)."""
    return store.list_groups_txn(conn)


def show_group_txn(conn: Connection, actor: Actor, name: str, *,
                   limit: int = 100) -> GroupDetails:
    """A group and at most ``limit`` of its members (not audited)."""
    if limit < 0:
        raise InvalidRequest("the limit must not be negative", field="limit")
    with store_errors():
        group = store.get_group_txn(conn, name)
    members = list_devices_txn(conn, group=name, limit=limit) if limit else []
    return GroupDetails(group, tuple(members))


def change_members_txn(conn: Connection, actor: Actor, name: str, devices: Sequence[str], *,
                       adding: bool, region: str | None = None) -> int:
    """Add ``devices`` (any written identifiers) to group ``name``, or remove them.

    All or nothing: an identifier that matches no device refuses the whole
    request.  Returns how many memberships changed; audited as
    ``group.add_member`` or ``group.remove_member``.
    """
    with store_errors(field="devices"):
        ids = [find_device_txn(conn, d, region).id for d in devices]
    with store_errors():
        if adding:
            changed = store.add_members_txn(conn, name, ids)
        else:
            changed = store.remove_members_txn(conn, name, ids)
    append_audit_txn(conn, actor=actor.name, role=actor.role,
                     action="group.add_member" if adding else "group.remove_member",
                     target=name, details={"devices": list(devices)})
    return changed
