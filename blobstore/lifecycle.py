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
- :func:`transition_many_txn`: a batch of (command, event) pairs, each with
  its own details and fields, in three statements whatever the batch size
  (lock, update, events): the inbound worker's receipts and replies.

Each state change appends a ``command_events`` row in the same
transaction: the command's history, and the feed of live events.

Row locks here (and in the inbound apply) are ``FOR NO KEY UPDATE``: they
exclude each other as ``FOR UPDATE`` would, but not the ``KEY SHARE`` locks
PostgreSQL's foreign-key checks take when a row pointing at the command is
written (an event, a message linked to it).  With ``FOR UPDATE`` those
checks made two batches that lock in the same id order deadlock anyway
(seen with two processes: a reply batch and a receipt batch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, select, update

from blobstore.prepared import Prepared
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
        .where(commands.c.id == command_id).with_for_update(key_share=True)
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


@dataclass(frozen=True)
class Change:
    """One event for one command in a :func:`transition_many_txn` batch.

    ``fields``: only ``result``, ``last_error`` and ``next_attempt_at``
    (set when the state changes, as :func:`transition_txn` does).
    """

    command_id: int
    event: str
    actor: str
    details: Mapping[str, Any] | None = None
    fields: Mapping[str, Any] | None = None


_MANY_FIELDS = ("result", "last_error", "next_attempt_at")

_LOCK_MANY = Prepared("lock_commands", (
    "SELECT id, state, device_id FROM commands WHERE id = ANY(:ids) "
    "ORDER BY id FOR NO KEY UPDATE"
), {"ids": "bigint[]"})
_UPDATE_MANY = Prepared("update_commands", (
    "UPDATE commands AS c SET state = v.state, updated_at = :now, "
    "finished_at = CASE WHEN v.terminal THEN :now ELSE c.finished_at END, "
    "claimed_by = CASE WHEN v.state = 'queued' THEN NULL ELSE c.claimed_by END, "
    "claimed_at = CASE WHEN v.state = 'queued' THEN NULL ELSE c.claimed_at END, "
    "result = CASE WHEN v.set_result THEN CAST(v.result AS jsonb) ELSE c.result END, "
    "last_error = CASE WHEN v.set_error THEN v.last_error ELSE c.last_error END, "
    "next_attempt_at = CASE WHEN v.set_next THEN v.next_attempt_at ELSE c.next_attempt_at END "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[]), "
    "CAST(:terminal AS boolean[]), CAST(:set_result AS boolean[]), CAST(:results AS text[]), "
    "CAST(:set_error AS boolean[]), CAST(:errors AS text[]), CAST(:set_next AS boolean[]), "
    "CAST(:nexts AS timestamptz[])) "
    "AS v(id, state, terminal, set_result, result, set_error, last_error, set_next, "
    "next_attempt_at) WHERE c.id = v.id AND c.id = ANY(CAST(:ids AS bigint[]))"
), {"now": "timestamptz", "ids": "bigint[]", "states": "text[]", "terminal": "boolean[]",
    "set_result": "boolean[]", "results": "text[]", "set_error": "boolean[]",
    "errors": "text[]", "set_next": "boolean[]", "nexts": "timestamptz[]"})
_INSERT_EVENTS = Prepared("insert_events", (
    "INSERT INTO command_events (command_id, device_id, from_state, to_state, event, "
    "actor, at, details) SELECT v.command_id, v.device_id, v.from_state, v.to_state, "
    "v.event, v.actor, coalesce(v.at, now()), CAST(v.details AS jsonb) "
    "FROM unnest(:command_ids, :device_ids, :from_states, :to_states, :events, :actors, "
    ":ats, :details) WITH ORDINALITY "
    "AS v(command_id, device_id, from_state, to_state, event, actor, at, details, n) "
    "ORDER BY v.n"  # ids in the order given: a command's history reads by id
), {"command_ids": "bigint[]", "device_ids": "bigint[]", "from_states": "text[]",
    "to_states": "text[]", "events": "text[]", "actors": "text[]", "ats": "timestamptz[]",
    "details": "text[]"})


def transition_many_txn(conn: Connection, changes: Sequence[Change], *, machine: Machine,
                        now: datetime) -> list[Transition | None]:
    """Apply each change in order; one result per change (None: no such command).

    Rows are locked in id order (no deadlock between two batches); a
    command named twice takes its events in the order given.  Raises what
    ``machine.next_state`` raises, for the whole batch.
    """
    for change in changes:
        _check_fields(change.fields or {})
        if set(change.fields or {}) - set(_MANY_FIELDS):
            raise TypeError("transition_many_txn sets only " + ", ".join(_MANY_FIELDS))
    ids = sorted({c.command_id for c in changes})
    current: dict[int, tuple[str, int]] = {
        int(r.id): (str(r.state), int(r.device_id))
        for r in _LOCK_MANY(conn, {"ids": ids})} if ids else {}
    done: list[Transition | None] = []
    final: dict[int, dict[str, Any]] = {}
    events: list[_Event] = []
    for change in changes:
        now_state = current.get(change.command_id)
        if now_state is None:
            done.append(None)
            continue
        state, device_id = now_state
        to_state = str(machine.next_state(state, change.event))
        step = Transition(change.command_id, device_id, state, to_state)
        done.append(step)
        if not step.changed:
            continue
        current[change.command_id] = (to_state, device_id)
        row = final.setdefault(change.command_id, {})
        row["state"] = to_state
        row.update(change.fields or {})
        events.append((change.command_id, device_id, state, to_state, change.event,
                       change.actor, now,
                       _with_note(change.details, machine.note(state, change.event))))
    if final:
        _UPDATE_MANY(conn, _many_params(final, machine, now))
        _insert_events(conn, events)
    return done


_Event = tuple[int, int, str | None, str, str, str, datetime | None, Mapping[str, Any]]
"""command id, device id, from state, to state, event, actor, time (None: now()), details."""


def _insert_events(conn: Connection, events: Sequence[_Event]) -> None:
    if events:
        _INSERT_EVENTS(conn, {
            "command_ids": [e[0] for e in events], "device_ids": [e[1] for e in events],
            "from_states": [e[2] for e in events], "to_states": [e[3] for e in events],
            "events": [e[4] for e in events], "actors": [e[5] for e in events],
            "ats": [e[6] for e in events], "details": [json.dumps(e[7]) for e in events]})


def _many_params(final: Mapping[int, Mapping[str, Any]], machine: Machine,
                 now: datetime) -> dict[str, Any]:
    rows = list(final.items())
    return {
        "now": now, "ids": [i for i, _ in rows], "states": [r["state"] for _, r in rows],
        "terminal": [r["state"] in machine.TERMINAL for _, r in rows],
        "set_result": ["result" in r for _, r in rows],
        "results": [json.dumps(r["result"]) if r.get("result") is not None else None
                    for _, r in rows],
        "set_error": ["last_error" in r for _, r in rows],
        "errors": [r.get("last_error") for _, r in rows],
        "set_next": ["next_attempt_at" in r for _, r in rows],
        "nexts": [r.get("next_attempt_at") for _, r in rows],
    }


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
        .order_by(*order_by).limit(limit).with_for_update(skip_locked=skip_locked, key_share=True)
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


_BY_IDS = Prepared("transition_ids", (
    # The rows are locked by id alone and their state is checked after the lock.
    # With the state in the locking scan too, a generic plan made while the table
    # was tiny read the (state, priority, created_at, id) index instead: every
    # entry of the source state, dead ones included, tested against each id and
    # then sorted (66 ms a call, more than half of PostgreSQL's CPU in a fan-out).
    "WITH chosen AS (SELECT id, state AS from_state FROM commands "
    "WHERE id = ANY(:ids) ORDER BY id FOR NO KEY UPDATE) "
    "UPDATE commands AS c SET state = :target, updated_at = :now, "
    "finished_at = CASE WHEN :terminal THEN :now ELSE c.finished_at END, "
    "claimed_by = CASE WHEN :target = 'queued' THEN NULL ELSE c.claimed_by END, "
    "claimed_at = CASE WHEN :target = 'queued' THEN NULL ELSE c.claimed_at END "
    # c.id = ANY too: an index look-up, never a join the planner could make a key scan
    "FROM chosen WHERE c.id = chosen.id AND c.id = ANY(:ids) "
    "AND chosen.from_state = ANY(:sources) "
    "RETURNING c.id, c.device_id, chosen.from_state"
), {"ids": "bigint[]", "sources": "text[]", "target": "text", "now": "timestamptz",
    "terminal": "boolean"})


def transition_ids_txn(conn: Connection, event: str, command_ids: Iterable[int], *,
                       machine: Machine, now: datetime, actor: str,
                       details: Mapping[str, Any] | None = None) -> list[Transition]:
    """Apply ``event`` to these commands, those in a state it moves out of (one statement).

    What :func:`bulk_transition_txn` does for a list of ids, as a prepared
    statement; locked rows are waited for, in id order.  Returns what changed,
    by id.
    """
    ids = sorted(set(command_ids))
    if not ids:
        return []
    to_state = str(machine.target(event))
    rows = _BY_IDS(conn, {"ids": ids, "sources": sorted(str(s) for s in machine.sources(event)),
                          "target": to_state, "now": now,
                          "terminal": to_state in machine.TERMINAL}).all()
    done = sorted((Transition(int(r.id), int(r.device_id), str(r.from_state), to_state)
                   for r in rows), key=lambda t: t.command_id)
    record_events_txn(conn, done, event=event, actor=actor, now=now, details=details)
    return done


def record_events_txn(conn: Connection, transitions: Iterable[Transition], *, event: str,
                      actor: str, now: datetime | None,
                      details: Mapping[str, Any] | None = None) -> None:
    """Append one ``command_events`` row per transition (``from_state`` None on creation).

    ``now`` None stamps the rows with the database's transaction time.
    """
    note = dict(details or {})
    _insert_events(conn, [(t.command_id, t.device_id, t.from_state or None, t.to_state, event,
                           actor, now, note) for t in transitions])


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
