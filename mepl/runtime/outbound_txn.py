"""The transactions of the outbound flow: claim and seal, submitted, failed, housekeeping.

Each function is one whole transaction for :meth:`DatabasePool.run_interaction`.
The frame is sealed *inside* the claiming transaction, so a counter and the
exact bytes that carry it are committed together before anything is sent: a
resend after a crash or a temporary failure sends the same bytes, never a
second counter.  Each frame is sealed with the server key the device has
accepted (``device_server_keys``), not simply the newest one.  Every state
change goes through the lifecycle table and leaves a ``command_events`` row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from blobstore.commands import COMMAND_FIELDS, CommandRecord, command_record
from blobstore.counters import allocate_counters_txn
from blobstore.inbound_queue import expire_waiting_txn, wake_found_txn, wake_receipts_txn
from blobstore.lifecycle import (
    Transition,
    bulk_transition_txn,
    record_events_txn,
    transition_ids_txn,
    transition_txn,
)
from blobstore.messages import NewMessage, insert_messages_txn
from blobstore.prepared import Prepared
from blobstore.schema import commands, messages
from blobstore.server_keys import device_keys_txn
from mepl.core import lifecycle
from mepl.core.lifecycle import Event


@dataclass(frozen=True)
class ClaimedCommand:
    """A command claimed for sending, with what sealing and routing need."""

    command_id: int
    device_id: int
    imei: str
    msisdn: str | None
    opcode: str
    arguments: Mapping[str, Any]
    not_after: datetime
    key_id: int
    counter: int
    frame: bytes | None


@dataclass(frozen=True)
class ReadyCommand:
    """A claimed command whose sealed frame is committed: ready to submit."""

    command_id: int
    device_id: int
    msisdn: str
    frame: bytes
    attempts: int


Sealer = Callable[[ClaimedCommand], bytes]


_CLAIM_SOURCES = sorted(str(s) for s in lifecycle.sources(Event.CLAIM))
_CLAIM_TARGET = str(lifecycle.target(Event.CLAIM))
# The claim statements below set only these columns: they would need more for a
# target that ends a command (finished_at) or puts it back in the queue
# (claimed_*).  They read ix_commands_queue, an index of queued commands only
# (migration 0009).
if (_CLAIM_SOURCES != ["queued"] or _CLAIM_TARGET in lifecycle.TERMINAL
        or _CLAIM_TARGET == "queued"):
    raise RuntimeError("the claim statement no longer fits the lifecycle table")
_DUE_COMMANDS = Prepared("due_commands", (
    # The claim's order is the index's (ix_commands_queue: priority, created_at, id
    # of queued commands; the state is written out, so the partial index matches
    # a generic plan): the scan stops at the limit.  Rows are locked here and
    # written once, by _CLAIM_ROWS, with the sealed frames: one row version per
    # claim instead of two.  (The f-string adds column names only.)
    f"SELECT {', '.join(COMMAND_FIELDS)} FROM commands "  # noqa: S608
    "WHERE state = 'queued' AND next_attempt_at <= :now AND not_after > :now "
    "ORDER BY priority, created_at, id LIMIT :limit FOR NO KEY UPDATE SKIP LOCKED"
), {"now": "timestamptz", "limit": "integer"})
_CLAIM_ROWS = Prepared("claim_rows", (
    # By id (= ANY, an index look-up whatever the plan); a NULL frame keeps the
    # stored one (a resend, or a command that could not be sealed).
    "UPDATE commands AS c SET state = :target, updated_at = :now, claimed_by = :worker, "
    "claimed_at = :now, attempts = c.attempts + 1, counter = coalesce(v.counter, c.counter), "
    "key_id = coalesce(v.key_id, c.key_id), frame = coalesce(v.frame, c.frame) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:counters AS bigint[]), "
    "CAST(:keys AS integer[]), CAST(:frames AS bytea[])) AS v(id, counter, key_id, frame) "
    "WHERE c.id = v.id AND c.id = ANY(CAST(:ids AS bigint[]))"
), {"target": "text", "now": "timestamptz", "worker": "text", "ids": "bigint[]",
    "counters": "bigint[]", "keys": "integer[]", "frames": "bytea[]"})


_CLAIMED_DEVICES = Prepared("claimed_devices", (
    "SELECT id, imei, msisdn, state FROM devices WHERE id = ANY(:ids)"
), {"ids": "bigint[]"})


def _lock_due_txn(conn: Connection, *, now: datetime, limit: int) -> list[CommandRecord]:
    """Lock up to ``limit`` due queued commands (others' locked rows skipped), in claim order."""
    return [command_record(r) for r in _DUE_COMMANDS(conn, {"now": now, "limit": limit})]


def claim_locked_txn(conn: Connection, due: Sequence[CommandRecord], *, worker: str,
                     now: datetime, sealed: Mapping[int, tuple[int, int, bytes]]) -> None:
    """Write the claim of the ``due`` rows this transaction locked (queued -> sending).

    ``sealed`` is ``{command id: (counter, key id, frame)}``: the new frames,
    written with the claim.  One UPDATE for the batch, one ``claim`` event
    per command.
    """
    if not due:
        return
    by_id = sorted(due, key=lambda c: c.id)
    new = [sealed.get(c.id, (None, None, None)) for c in by_id]
    _CLAIM_ROWS(conn, {"target": _CLAIM_TARGET, "now": now, "worker": worker,
                       "ids": [c.id for c in by_id], "counters": [n[0] for n in new],
                       "keys": [n[1] for n in new], "frames": [n[2] for n in new]})
    record_events_txn(conn, [Transition(c.id, c.device_id, _CLAIM_SOURCES[0], _CLAIM_TARGET)
                             for c in by_id], event=Event.CLAIM, actor=worker, now=now)


def claim_commands_txn(conn: Connection, *, worker: str, now: datetime,
                       limit: int) -> list[CommandRecord]:
    """Claim up to ``limit`` due commands for ``worker``: queued -> sending.

    Rows locked by another dispatcher are skipped, not waited for.  Order:
    priority (lower first), then age.  Each claim counts as an attempt.
    Returns the records as claimed.
    """
    due = _lock_due_txn(conn, now=now, limit=limit)
    claim_locked_txn(conn, due, worker=worker, now=now, sealed={})
    return [replace(c, state=_CLAIM_TARGET, updated_at=now, claimed_by=worker, claimed_at=now,
                    attempts=c.attempts + 1) for c in due]


def claim_and_seal_txn(conn: Connection, *, worker: str, now: datetime, limit: int,
                       key_id: int, seal: Sealer) -> list[ReadyCommand]:
    """Claim due commands (queued -> sending), seal the new ones, commit their frames.

    ``key_id`` is the key for devices that have none on record yet (they
    are pinned to it).  A command that already has a frame (a resend) keeps
    it.  A command that cannot be sent (no phone number, a retired device,
    arguments that do not encode) fails here with the reason.  The due rows
    are locked first and written once, claim and frame together.
    """
    due = _lock_due_txn(conn, now=now, limit=limit)
    if not due:
        return []
    info = {int(r.id): r for r in _CLAIMED_DEVICES(
        conn, {"ids": sorted({c.device_id for c in due})})}
    keys = device_keys_txn(conn, [c.device_id for c in due if c.frame is None],
                           default_key=key_id)
    failures: dict[int, str] = {}
    for record in due:
        device = info[record.device_id]
        if device.state == "retired":
            failures[record.id] = "device is retired"
        elif device.msisdn is None:
            failures[record.id] = "device has no phone number"
    to_seal = [r for r in due if r.frame is None and r.id not in failures]
    wanted = Counter((keys[r.device_id], r.device_id) for r in to_seal)
    next_counter = allocate_counters_txn(conn, wanted)
    sealed: dict[int, tuple[int, int, bytes]] = {}
    for record in to_seal:
        device_key = keys[record.device_id]
        counter = next_counter[(device_key, record.device_id)]
        next_counter[(device_key, record.device_id)] = counter + 1
        device = info[record.device_id]
        try:
            sealed[record.id] = (counter, device_key, seal(ClaimedCommand(
                record.id, record.device_id, device.imei, device.msisdn, record.opcode,
                record.arguments, record.not_after, device_key, counter, None)))
        except ValueError as exc:
            failures[record.id] = f"cannot encode command: {exc}"
    claim_locked_txn(conn, due, worker=worker, now=now, sealed=sealed)
    ready: list[ReadyCommand] = []
    for record in due:
        frame = sealed[record.id][2] if record.id in sealed else record.frame
        error = failures.get(record.id)
        if error is not None or frame is None:
            transition_txn(conn, record.id, Event.SEAL_FAILED, machine=lifecycle, now=now,
                           actor=worker, details={"error": error}, last_error=error)
            continue
        ready.append(ReadyCommand(record.id, record.device_id, info[record.device_id].msisdn,
                                  frame, record.attempts + 1))
    return ready


@dataclass(frozen=True)
class Submitted:
    """A command whose every part the SMSC or gateway accepted."""

    command: ReadyCommand
    link: str
    channel: str
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class SubmitFailure:
    """A command whose submit failed: queued again at ``retry_at``, or failed when None."""

    command_id: int
    error: str
    retry_at: datetime | None


def record_submits_txn(conn: Connection, sent: Sequence[Submitted],
                       failed: Sequence[SubmitFailure], *, now: datetime,
                       actor: str = "dispatcher") -> int:
    """Record a batch's submit outcomes at once; returns how many commands went to ``sent``.

    One ``mt`` row per part (COPY), receipts that came before their submit
    woken, and the ``submitted`` transition for the whole batch in one
    statement.  Rows are waited for, not skipped: a command locked by a
    reply being applied right now gets its event once that commits.  A
    command the reply already finished keeps its state, but its history
    still records the submit (``from_state`` = ``to_state``, with a note):
    the frame did go out, and the audit trail says so.
    """
    insert_messages_txn(conn, [NewMessage(
        direction="out", channel=s.channel,  # type: ignore[arg-type]
        kind="mt", payload=s.command.frame, link=s.link, peer=s.command.msisdn,
        device_id=s.command.device_id, command_id=s.command.command_id,
        smsc_message_id=message_id, part_seq=seq, part_total=len(s.message_ids),
        created_at=now)
        for s in sent for seq, message_id in enumerate(s.message_ids, start=1)])
    by_link: dict[str, list[str]] = {}
    for s in sent:
        by_link.setdefault(s.link, []).extend(s.message_ids)
    for link, ids in by_link.items():
        wake_receipts_txn(conn, link=link, smsc_message_ids=ids, now=now)
    sent_ids = [s.command.command_id for s in sent]
    moved = transition_ids_txn(  # waits for locked rows, in id order (as every writer)
        conn, Event.SUBMITTED, sent_ids, machine=lifecycle, now=now, actor=actor)
    if len(moved) < len(set(sent_ids)):
        _record_late_submits(conn, set(sent_ids) - {t.command_id for t in moved},
                             now=now, actor=actor)
    for failure in failed:
        event = Event.SUBMIT_RETRY if failure.retry_at is not None else Event.SUBMIT_FAILED
        fields: dict[str, Any] = {"last_error": failure.error}
        if failure.retry_at is not None:
            fields["next_attempt_at"] = failure.retry_at
        transition_txn(conn, failure.command_id, event, machine=lifecycle, now=now,
                       actor=actor, details={"error": failure.error}, **fields)
    return len(moved)


def _record_late_submits(conn: Connection, command_ids: set[int], *, now: datetime,
                         actor: str) -> None:
    """History rows for submits that came after the command was finished (rare).

    Its reply (or expiry) was applied first; the state stays, the history
    says the frame went out (the lifecycle table's terminal-state rule).
    The rows are already locked by the transition statement, so the state
    read here is the committed one.
    """
    rows = conn.execute(select(commands.c.id, commands.c.device_id, commands.c.state)
                        .where(commands.c.id.in_(sorted(command_ids)))
                        .order_by(commands.c.id)).all()
    by_state: dict[str, list[Transition]] = {}
    for row in rows:
        state = str(row.state)
        if (lifecycle.State(state), Event.SUBMITTED) not in lifecycle.TABLE:
            continue  # queued again meanwhile (released): its next attempt records it
        by_state.setdefault(state, []).append(
            Transition(int(row.id), int(row.device_id), state, state))
    for state, transitions in sorted(by_state.items()):
        record_events_txn(conn, transitions, event=Event.SUBMITTED, actor=actor, now=now,
                          details={"note": f"submit recorded after the command was {state}"})


def record_submitted_txn(conn: Connection, command: ReadyCommand, *, link: str,
                         channel: str, message_ids: Sequence[str], now: datetime,
                         actor: str = "dispatcher") -> bool:
    """Record one command's submit (see :func:`record_submits_txn`); True if it went to sent."""
    return record_submits_txn(conn, [Submitted(command, link, channel, tuple(message_ids))],
                              (), now=now, actor=actor) == 1


@dataclass(frozen=True)
class Housekeeping:
    """What one housekeeping pass changed."""

    expired: int
    released: int
    resent: int
    parts_expired: int = 0
    receipts_dropped: int = 0
    receipts_woken: int = 0


def housekeeping_txn(conn: Connection, *, now: datetime, stale_before: datetime,
                     unanswered_before: datetime, max_attempts: int,
                     parts_before: datetime | None = None,
                     receipts_before: datetime | None = None,
                     actor: str = "housekeeping") -> Housekeeping:
    """Keep the queue moving whatever happened to the processes that worked on it.

    Expires unfinished commands past their not-after; puts back in the queue
    commands claimed before ``stale_before`` and never sent (their process
    died); and queues again, for a resend of the same bytes, commands sent or
    delivered before ``unanswered_before`` without a reply, up to
    ``max_attempts`` attempts (the handset answers a repeated frame with its
    stored reply and does not execute it twice).  Inbound parts stored before
    ``parts_before`` whose message never completed are marked expired, and
    receipts that waited since ``receipts_before`` for an unknown submit are
    dropped (their rows stay, with the reason), after any whose submit was
    recorded meanwhile are woken (a wake-up the submit's transaction could
    not see).  The states each step moves
    commands out of come from the lifecycle table.
    """
    def bulk(event: Event, *where: Any, **values: Any) -> int:
        return len(bulk_transition_txn(conn, event, machine=lifecycle, now=now, actor=actor,
                                       where=where, values=values))

    expired = bulk(Event.EXPIRE, commands.c.not_after <= now)
    released = bulk(Event.RELEASE, commands.c.claimed_at < stale_before)
    resent = bulk(Event.RESEND, commands.c.updated_at < unanswered_before,
                  commands.c.attempts < max_attempts, commands.c.not_after > now,
                  next_attempt_at=now, last_error="no reply: resending the same frame")
    parts_expired = 0
    if parts_before is not None:
        parts_expired = int(conn.execute(
            update(messages)
            .where(messages.c.kind == "mo", messages.c.direction == "in",
                   messages.c.part_total > 1, messages.c.created_at < parts_before,
                   messages.c.error.is_(None), messages.c.meta["assembled"].astext.is_(None))
            .values(error="incomplete concatenated message expired")
        ).rowcount)
    woken = wake_found_txn(conn, now=now)
    dropped = 0 if receipts_before is None else expire_waiting_txn(conn, before=receipts_before)
    return Housekeeping(expired, released, resent, parts_expired, dropped, woken)
