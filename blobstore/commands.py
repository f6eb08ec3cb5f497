"""The command queue of record: one row per command per device.

A command exists once its row is committed (state ``queued``, with its
``create`` event).  Dispatchers in any number of MEPL processes claim work
with ``FOR UPDATE SKIP LOCKED`` (security commands first: lower
``priority`` is sooner), so no two claim the same row.  Every later state
change goes through :mod:`blobstore.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Text, insert, literal, select, text

from blobstore.lifecycle import Transition, record_events_txn
from blobstore.schema import command_events, commands, group_members, groups

PRIORITY_SECURITY = 10
PRIORITY_NORMAL = 100
PRIORITY_BULK = 500


@dataclass(frozen=True)
class NewCommand:
    """A command to queue for one device (or, through a group, for many)."""

    opcode: str
    requested_by: str
    not_after: datetime
    arguments: Mapping[str, Any] | None = None
    priority: int = PRIORITY_NORMAL
    created_at: datetime | None = None
    fanout_id: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= 1000:
            raise ValueError("priority must be between 0 and 1000 (lower is sooner)")
        if self.not_after.tzinfo is None:
            raise ValueError("not_after must be timezone-aware")


@dataclass(frozen=True)
class CommandRecord:
    """A command row (plain data)."""

    id: int
    device_id: int
    opcode: str
    arguments: Mapping[str, Any]
    state: str
    priority: int
    counter: int | None
    key_id: int | None
    requested_by: str
    created_at: datetime
    updated_at: datetime
    not_after: datetime
    next_attempt_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    finished_at: datetime | None
    attempts: int
    last_error: str | None
    result: Mapping[str, Any] | None
    frame: bytes | None


def command_record(row: Any) -> CommandRecord:
    """A :class:`CommandRecord` from a row with the ``commands`` columns (others ignored)."""
    values = {k: v for k, v in row._mapping.items() if k in _FIELDS}
    if values["frame"] is not None:
        values["frame"] = bytes(values["frame"])
    return CommandRecord(**values)


COMMAND_FIELDS = tuple(CommandRecord.__dataclass_fields__)
"""The ``commands`` columns a :class:`CommandRecord` holds, in order."""
_FIELDS = frozenset(COMMAND_FIELDS)


def _values(command: NewCommand) -> dict[str, Any]:
    return {
        "opcode": command.opcode,
        "arguments": dict(command.arguments or {}),
        "priority": command.priority,
        "requested_by": command.requested_by,
        "not_after": command.not_after,
    } | ({} if command.created_at is None else {"created_at": command.created_at}) | (
        {} if command.fanout_id is None else {"fanout_id": command.fanout_id})


def _created(conn: Connection, rows: Any, command: NewCommand,
             details: Mapping[str, Any] | None) -> list[int]:
    created = [Transition(int(r.id), int(r.device_id), "", "queued") for r in rows]
    record_events_txn(conn, created, event="create", actor=command.requested_by,
                      now=command.created_at, details=details)
    return [t.command_id for t in created]


def insert_command_txn(conn: Connection, device_id: int, command: NewCommand, *,
                       details: Mapping[str, Any] | None = None) -> int:
    """Queue ``command`` for one device (with its ``create`` event); return the command id."""
    rows = conn.execute(
        insert(commands).values(device_id=device_id, **_values(command))
        .returning(commands.c.id, commands.c.device_id)
    ).all()
    return _created(conn, rows, command, details)[0]


def insert_group_commands_txn(conn: Connection, group: str, command: NewCommand) -> int:
    """Queue ``command`` for every member of ``group`` in one statement; return how many.

    The fan-out runs inside the database (INSERT ... SELECT), so a million
    members cost no more memory here than ten.
    """
    members = (select(group_members.c.device_id)
               .join(groups, groups.c.id == group_members.c.group_id)
               .where(groups.c.name == group))
    return insert_fanout_commands_txn(conn, members, command, details={"group": group})


def insert_fanout_commands_txn(conn: Connection, device_ids: Select[Any], command: NewCommand,
                               *, details: Mapping[str, Any]) -> int:
    """Queue ``command`` for every device id ``device_ids`` selects (its only column), with
    their ``create`` events carrying ``details``, in one statement; return how many."""
    values = _values(command)
    source = device_ids.add_columns(
        literal(values["opcode"]),
        literal(values["arguments"], commands.c.arguments.type),
        literal(values["priority"]),
        literal(values["requested_by"]),
        literal(values["not_after"], commands.c.not_after.type),
        literal(command.fanout_id, commands.c.fanout_id.type),
    )
    created = insert(commands).from_select(
        ["device_id", "opcode", "arguments", "priority", "requested_by", "not_after",
         "fanout_id"], source
    ).returning(commands.c.id, commands.c.device_id).cte("created")
    # The create events in the same statement: nothing per device passes through Python.
    events = insert(command_events).from_select(
        ["command_id", "device_id", "from_state", "to_state", "event", "actor", "details"],
        select(created.c.id, created.c.device_id, literal(None, Text()), literal("queued"),
               literal("create"), literal(command.requested_by),
               literal(dict(details), command_events.c.details.type)))
    return int(conn.execute(events).rowcount)


def get_command_txn(conn: Connection, command_id: int) -> CommandRecord | None:
    """One command, or None."""
    row = conn.execute(select(commands).where(commands.c.id == command_id)).first()
    return command_record(row) if row is not None else None


def device_commands_txn(conn: Connection, device_id: int, *,
                        limit: int = 100) -> list[CommandRecord]:
    """A device's commands, newest first."""
    rows = conn.execute(
        select(commands).where(commands.c.device_id == device_id)
        .order_by(commands.c.created_at.desc(), commands.c.id.desc()).limit(limit)
    ).all()
    return [command_record(r) for r in rows]


def count_commands_by_state_txn(conn: Connection) -> dict[str, int]:
    """Number of commands in each state (states with none are left out)."""
    rows = conn.execute(text("SELECT state, count(*) FROM commands GROUP BY state"))
    return {str(r[0]): int(r[1]) for r in rows}
