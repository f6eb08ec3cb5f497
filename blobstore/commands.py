"""The command queue of record: one row per command per device, and its lifecycle.

A command exists once its row is committed (state ``queued``).  Dispatchers
in any number of MEPL processes claim work with ``FOR UPDATE SKIP LOCKED``
(security commands first: lower ``priority`` is sooner), so no two claim the
same row.  Every state change goes through :func:`transition_command_txn`,
which only moves a row along :data:`TRANSITIONS` and says whether it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, literal, select, text, update

from blobstore.errors import InvalidTransitionError
from blobstore.schema import COMMAND_STATES, commands, group_members, groups

PRIORITY_SECURITY = 10
PRIORITY_NORMAL = 100
PRIORITY_BULK = 500

TERMINAL_STATES = frozenset({"done", "failed", "expired", "cancelled"})
# state -> states it may move to
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "queued": frozenset({"sending", "cancelled", "expired", "failed"}),
    "sending": frozenset({"sent", "queued", "failed", "expired", "cancelled"}),
    "sent": frozenset({"delivered", "replied", "failed", "expired", "queued"}),
    "delivered": frozenset({"replied", "failed", "expired", "queued"}),
    "replied": frozenset({"done", "failed"}),
    "done": frozenset(),
    "failed": frozenset(),
    "expired": frozenset(),
    "cancelled": frozenset(),
}


@dataclass(frozen=True)
class NewCommand:
    """A command to queue for one device (or, through a group, for many)."""

    opcode: str
    requested_by: str
    not_after: datetime
    arguments: Mapping[str, Any] | None = None
    priority: int = PRIORITY_NORMAL

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


def _record(row: Any) -> CommandRecord:
    values = dict(row._mapping)
    if values["frame"] is not None:
        values["frame"] = bytes(values["frame"])
    return CommandRecord(**values)


def _values(command: NewCommand) -> dict[str, Any]:
    return {
        "opcode": command.opcode,
        "arguments": dict(command.arguments or {}),
        "priority": command.priority,
        "requested_by": command.requested_by,
        "not_after": command.not_after,
    }


def insert_command_txn(conn: Connection, device_id: int, command: NewCommand) -> int:
    """Queue ``command`` for one device; return the command id."""
    return int(conn.execute(
        insert(commands).values(device_id=device_id, **_values(command)).returning(commands.c.id)
    ).scalar_one())


def insert_group_commands_txn(conn: Connection, group: str, command: NewCommand) -> int:
    """Queue ``command`` for every member of ``group`` in one statement; return how many.

    The fan-out runs inside the database (INSERT ... SELECT), so a million
    members cost no more memory here than ten.
    """
    values = _values(command)
    source = (
        select(
            group_members.c.device_id,
            literal(values["opcode"]),
            literal(values["arguments"], commands.c.arguments.type),
            literal(values["priority"]),
            literal(values["requested_by"]),
            literal(values["not_after"], commands.c.not_after.type),
        )
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(groups.c.name == group)
    )
    result = conn.execute(
        insert(commands).from_select(
            ["device_id", "opcode", "arguments", "priority", "requested_by", "not_after"], source
        )
    )
    return int(result.rowcount)


def get_command_txn(conn: Connection, command_id: int) -> CommandRecord | None:
    """One command, or None."""
    row = conn.execute(select(commands).where(commands.c.id == command_id)).first()
    return _record(row) if row is not None else None


def device_commands_txn(conn: Connection, device_id: int, *,
                        limit: int = 100) -> list[CommandRecord]:
    """A device's commands, newest first."""
    rows = conn.execute(
        select(commands).where(commands.c.device_id == device_id)
        .order_by(commands.c.created_at.desc(), commands.c.id.desc()).limit(limit)
    ).all()
    return [_record(r) for r in rows]


def claim_commands_txn(conn: Connection, *, worker: str, now: datetime,
                       limit: int = 100) -> list[CommandRecord]:
    """Claim up to ``limit`` due commands for ``worker``: queued -> sending.

    Rows locked by another dispatcher are skipped, not waited for.  Order:
    priority (lower first), then age.  Each claim counts as an attempt.
    """
    due = (
        select(commands.c.id)
        .where(commands.c.state == "queued", commands.c.next_attempt_at <= now,
               commands.c.not_after > now)
        .order_by(commands.c.priority, commands.c.created_at, commands.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = conn.execute(
        update(commands).where(commands.c.id.in_(due))
        .values(state="sending", claimed_by=worker, claimed_at=now,
                attempts=commands.c.attempts + 1, updated_at=now)
        .returning(*commands.c)
    ).all()
    claimed = [_record(r) for r in rows]
    claimed.sort(key=lambda c: (c.priority, c.created_at, c.id))
    return claimed


def transition_command_txn(conn: Connection, command_id: int, to_state: str, *,
                           now: datetime, expected: str | None = None,
                           **fields: Any) -> bool:
    """Move a command to ``to_state`` if :data:`TRANSITIONS` allows it from its current state.

    ``expected`` narrows the allowed current state to one.  ``fields`` sets
    other columns at the same time (``last_error``, ``result``, ``counter``,
    ``key_id``, ``frame``, ``next_attempt_at``).  Terminal states set
    ``finished_at``; going back to ``queued`` clears the claim.  Returns
    False (and changes nothing) when the row is not in an allowed state,
    for example because another process moved it first.
    """
    if to_state not in COMMAND_STATES:
        raise InvalidTransitionError(f"unknown command state {to_state!r}")
    allowed = {s for s, targets in TRANSITIONS.items() if to_state in targets}
    if expected is not None:
        if expected not in allowed:
            raise InvalidTransitionError(f"a command cannot go from {expected} to {to_state}")
        allowed = {expected}
    unknown = set(fields) - {"last_error", "result", "counter", "key_id", "frame",
                             "next_attempt_at"}
    if unknown:
        raise TypeError(f"cannot set {', '.join(sorted(unknown))} in a transition")
    values: dict[str, Any] = {"state": to_state, "updated_at": now, **fields}
    if to_state in TERMINAL_STATES:
        values["finished_at"] = now
    if to_state == "queued":
        values["claimed_by"] = None
        values["claimed_at"] = None
    result = conn.execute(
        update(commands)
        .where(and_(commands.c.id == command_id, commands.c.state.in_(sorted(allowed))))
        .values(values)
    )
    return int(result.rowcount) == 1


def expire_commands_txn(conn: Connection, now: datetime) -> int:
    """Expire every unfinished command past its not-after time; return how many."""
    result = conn.execute(
        update(commands)
        .where(commands.c.state.in_(["queued", "sending", "sent", "delivered"]),
               commands.c.not_after <= now)
        .values(state="expired", finished_at=now, updated_at=now)
    )
    return int(result.rowcount)


def release_stale_claims_txn(conn: Connection, *, claimed_before: datetime,
                             now: datetime) -> int:
    """Requeue commands stuck in ``sending`` since before ``claimed_before``.

    A dispatcher that died between claiming and submitting leaves its rows
    in ``sending``; this puts them back in the queue.  Returns how many.
    """
    result = conn.execute(
        update(commands)
        .where(commands.c.state == "sending", commands.c.claimed_at < claimed_before)
        .values(state="queued", claimed_by=None, claimed_at=None, updated_at=now)
    )
    return int(result.rowcount)


def count_commands_by_state_txn(conn: Connection) -> dict[str, int]:
    """Number of commands in each state (states with none are left out)."""
    rows = conn.execute(text("SELECT state, count(*) FROM commands GROUP BY state"))
    return {str(r[0]): int(r[1]) for r in rows}
