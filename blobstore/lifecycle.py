"""The one writer of command states: every transition locks its row and appends an event.

The transition table itself is the MEPL's (``mepl.core.lifecycle``); this
package only knows it through :class:`Machine`, so ``blobstore`` stays
independent of ``mepl``.  Two ways in:

- :func:`transition_txn`: one command, one event.  The row is locked
  (``FOR UPDATE``) before its state is read, so two processes applying
  events to one command (two part receipts, a receipt and a reply)
  serialise instead of deciding on the same stale state.
- :func:`bulk_transition_txn`: one event for every command matching a
  condition, in the states the table moves with that event (claims,
  expiry, resends); rows locked by someone else are skipped, not waited for.

Each state change appends a ``command_events`` row in the same
transaction: the command's history, and the feed of live events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, insert, select, update

from blobstore.schema import command_events, commands

_SETTABLE = frozenset({"last_error", "result", "counter", "key_id", "frame", "next_attempt_at",
                       "claimed_by", "claimed_at", "attempts"})


class Machine(Protocol):
    """The transition table, as ``mepl.core.lifecycle`` provides it."""

    TERMINAL: frozenset[Any]

    def next_state(self, state: str, event: str) -> str:
        """The next state, or raise for a transition the table does not allow."""

    def sources(self, event: str) -> frozenset[Any]:
        """The states ``event`` moves a command out of."""

    def target(self, event: str) -> str:
        """The state ``event`` moves every one of :meth:`sources` to."""

    def note(self, state: str, event: str) -> str | None:
        """A remark for the history, or None."""


@dataclass(frozen=True)
class Transition:
    """What one event did to one command."""

    command_id: int
    device_id: int
    from_state: str
    to_state: str

    @property
    def changed(self) -> bool:
        """Whether the state changed (an event row was appended)."""
        return self.from_state != self.to_state


def _state_values(to_state: str, machine: Machine, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"state": to_state, "updated_at": now}
    if to_state in machine.TERMINAL:
        values["finished_at"] = now
    if to_state == "queued":
        values["claimed_by"] = None
        values["claimed_at"] = None
    return values


def _check_fields(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise TypeError(f"cannot set {', '.join(sorted(unknown))} in a transition")


def transition_txn(conn: Connection, command_id: int, event: str, *, machine: Machine,
                   now: datetime, actor: str, details: Mapping[str, Any] | None = None,
                   **fields: Any) -> Transition | None:
    """Apply ``event`` to one command; None if there is no such command.

    ``fields`` set other columns at the same time (``result``,
    ``last_error``...), and only when the state changes.  Raises what
    ``machine.next_state`` raises for a pair the table does not allow.
    """
    _check_fields(fields)
    row = conn.execute(
        select(commands.c.state, commands.c.device_id)
        .where(commands.c.id == command_id).with_for_update()
    ).first()
    if row is None:
        return None
    to_state = str(machine.next_state(row.state, event))
    done = Transition(command_id, int(row.device_id), str(row.state), to_state)
    if not done.changed:
        return done
    conn.execute(update(commands).where(commands.c.id == command_id)
                 .values(**_state_values(to_state, machine, now), **fields))
    record_events_txn(conn, [done], event=event, actor=actor, now=now,
                      details=_with_note(details, machine.note(row.state, event)))
    return done


def _with_note(details: Mapping[str, Any] | None, note: str | None) -> dict[str, Any]:
    out = dict(details or {})
    if note:
        out["note"] = note
    return out


def bulk_transition_txn(conn: Connection, event: str, *, machine: Machine, now: datetime,
                        actor: str, where: Sequence[ColumnElement[bool]] = (),
                        order_by: Sequence[Any] = (), limit: int | None = None,
                        values: Mapping[str, Any] | None = None,
                        details: Mapping[str, Any] | None = None,
                        returning: Sequence[Any] = (),
                        skip_locked: bool = True) -> list[Any]:
    """Apply ``event`` to every command matching ``where`` in a state it moves out of.

    Rows locked by another transaction are skipped (with ``skip_locked``
    False: waited for, for a batch that must not miss any).  Returns one row per
    command changed, with ``id``, ``device_id``, ``from_state`` and the
    ``returning`` columns (their new values).
    """
    fields = dict(values or {})
    _check_fields(fields)
    to_state = str(machine.target(event))
    chosen = (
        select(commands.c.id, commands.c.state.label("from_state"))
        .where(commands.c.state.in_(sorted(str(s) for s in machine.sources(event))), *where)
        .order_by(*order_by).limit(limit).with_for_update(skip_locked=skip_locked)
        .cte("chosen")
    )
    rows = conn.execute(
        update(commands).where(commands.c.id == chosen.c.id)
        .values(**_state_values(to_state, machine, now), **fields)
        .returning(commands.c.id, commands.c.device_id, chosen.c.from_state, *returning)
    ).all()
    record_events_txn(
        conn, [Transition(int(r.id), int(r.device_id), str(r.from_state), to_state)
               for r in rows],
        event=event, actor=actor, now=now, details=dict(details or {}))
    return list(rows)


def record_events_txn(conn: Connection, transitions: Iterable[Transition], *, event: str,
                      actor: str, now: datetime | None,
                      details: Mapping[str, Any] | None = None) -> None:
    """Append one ``command_events`` row per transition (``from_state`` None on creation).

    ``now`` None stamps the rows with the database's transaction time.
    """
    when = {} if now is None else {"at": now}
    rows = [{"command_id": t.command_id, "device_id": t.device_id,
             "from_state": t.from_state or None, "to_state": t.to_state, "event": event,
             "actor": actor, "details": dict(details or {}), **when}
            for t in transitions]
    if rows:
        conn.execute(insert(command_events), rows)


@dataclass(frozen=True)
class CommandEventRecord:
    """One row of a command's history (plain data)."""

    id: int
    command_id: int
    device_id: int
    from_state: str | None
    to_state: str
    event: str
    actor: str
    at: datetime
    details: Mapping[str, Any]


def command_history_txn(conn: Connection, command_id: int) -> list[CommandEventRecord]:
    """A command's events, oldest first."""
    rows = conn.execute(select(command_events).where(command_events.c.command_id == command_id)
                        .order_by(command_events.c.id)).all()
    return [CommandEventRecord(**dict(r._mapping)) for r in rows]


def events_after_txn(conn: Connection, after_id: int, *,
                     limit: int = 500) -> list[CommandEventRecord]:
    """Events with an id above ``after_id``, oldest first (a live feed resumes from here)."""
    rows = conn.execute(select(command_events).where(command_events.c.id > after_id)
                        .order_by(command_events.c.id).limit(limit)).all()
    return [CommandEventRecord(**dict(r._mapping)) for r in rows]
