"""The transactions of the command flow: claim and seal, submitted, receipts, replies.

Each function is one whole transaction for :meth:`DatabasePool.run_interaction`.
The frame is sealed *inside* the claiming transaction (``seal`` is passed in:
this package knows nothing of signing), so a counter and the exact bytes that
carry it are committed together before anything is sent: a resend after a
crash or a temporary failure sends the same bytes, never a second counter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select, update

from blobstore.commands import (
    claim_commands_txn,
    expire_commands_txn,
    release_stale_claims_txn,
    transition_command_txn,
)
from blobstore.counters import allocate_counter_txn
from blobstore.messages import NewMessage, insert_message_txn, merge_meta
from blobstore.schema import commands, devices, messages


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


def claim_and_seal_txn(conn: Connection, *, worker: str, now: datetime, limit: int,
                       key_id: int, seal: Sealer) -> list[ReadyCommand]:
    """Claim due commands, seal the new ones under ``key_id``, commit frames.

    A command that already has a frame (a resend) keeps it.  A command that
    cannot be sent (no phone number, a retired device, arguments that do not
    encode) is failed here with the reason in ``last_error``.
    """
    ready: list[ReadyCommand] = []
    for record in claim_commands_txn(conn, worker=worker, now=now, limit=limit):
        device = conn.execute(
            select(devices.c.imei, devices.c.msisdn, devices.c.state)
            .where(devices.c.id == record.device_id)
        ).one()
        error = None
        if device.state == "retired":
            error = "device is retired"
        elif device.msisdn is None:
            error = "device has no phone number"
        frame = record.frame
        if error is None and frame is None:
            counter = allocate_counter_txn(conn, key_id, record.device_id)
            claimed = ClaimedCommand(record.id, record.device_id, device.imei, device.msisdn,
                                     record.opcode, record.arguments, record.not_after,
                                     key_id, counter, None)
            try:
                frame = seal(claimed)
            except ValueError as exc:
                error = f"cannot encode command: {exc}"
            else:
                conn.execute(update(commands).where(commands.c.id == record.id)
                             .values(counter=counter, key_id=key_id, frame=frame))
        if error is not None or frame is None:
            transition_command_txn(conn, record.id, "failed", now=now, expected="sending",
                                   last_error=error)
            continue
        ready.append(ReadyCommand(record.id, record.device_id, device.msisdn, frame,
                                  record.attempts))
    return ready


def record_submitted_txn(conn: Connection, command: ReadyCommand, *, link: str,
                         channel: str, message_ids: Sequence[str], now: datetime) -> bool:
    """Store one ``mt`` row per part (the frame, each part's SMSC id); sending -> sent."""
    total = len(message_ids)
    for seq, message_id in enumerate(message_ids, start=1):
        insert_message_txn(conn, NewMessage(
            direction="out", channel=channel,  # type: ignore[arg-type]
            kind="mt", payload=command.frame, link=link, peer=command.msisdn,
            device_id=command.device_id, command_id=command.command_id,
            smsc_message_id=message_id, part_seq=seq, part_total=total, created_at=now))
    return transition_command_txn(conn, command.command_id, "sent", now=now,
                                  expected="sending")


def record_submit_failure_txn(conn: Connection, command_id: int, *, error: str,
                              retry_at: datetime | None, now: datetime) -> str:
    """A submit failed: back to the queue until ``retry_at``, or failed when None."""
    if retry_at is not None:
        transition_command_txn(conn, command_id, "queued", now=now, expected="sending",
                               last_error=error, next_attempt_at=retry_at)
        return "queued"
    transition_command_txn(conn, command_id, "failed", now=now, expected="sending",
                           last_error=error)
    return "failed"


@dataclass(frozen=True)
class ReceiptOutcome:
    """What a delivery receipt changed."""

    command_id: int | None
    delivered_parts: int
    total_parts: int
    new_state: str | None


def record_receipt_txn(conn: Connection, *, link: str, message_id: str, status: str,
                       final: bool, delivered: bool, now: datetime,
                       row: NewMessage | None = None,
                       retry_at: datetime | None = None) -> ReceiptOutcome:
    """Apply a delivery receipt for one part of an ``mt`` message.

    ``row`` (when given) is stored, linked to the command.  Every part's
    receipt is recorded on its ``mt`` row (``meta.status``); the command goes
    ``sent -> delivered`` when every part is delivered, and back to the queue
    (same frame) at ``retry_at`` when a part failed for good.
    """
    part = conn.execute(
        select(messages.c.id, messages.c.command_id, messages.c.device_id,
               messages.c.part_total)
        .where(messages.c.link == link, messages.c.smsc_message_id == message_id,
               messages.c.kind == "mt", messages.c.direction == "out")
        .order_by(messages.c.id.desc()).limit(1)
    ).first()
    if row is not None:
        insert_message_txn(conn, replace(
            row, command_id=part.command_id if part else None,
            device_id=part.device_id if part else None))
    if part is None or part.command_id is None:
        return ReceiptOutcome(None, 0, 0, None)
    conn.execute(update(messages).where(messages.c.id == part.id)
                 .values(meta=merge_meta(status=status)))
    statuses = [r[0] for r in conn.execute(
        select(messages.c.meta["status"].astext)
        .where(and_(messages.c.command_id == part.command_id, messages.c.kind == "mt",
                    messages.c.direction == "out", messages.c.link == link))
        .order_by(messages.c.id.desc()).limit(part.part_total or 1))]
    done = sum(1 for s in statuses if s == "delivered")
    total = int(part.part_total or 1)
    new_state = None
    if delivered and done >= total:
        if transition_command_txn(conn, part.command_id, "delivered", now=now, expected="sent"):
            new_state = "delivered"
    elif final and not delivered and retry_at is not None and transition_command_txn(
            conn, part.command_id, "queued", now=now, expected="sent",
            last_error=f"delivery {status}", next_attempt_at=retry_at):
        new_state = "queued"
    return ReceiptOutcome(int(part.command_id), done, total, new_state)


@dataclass(frozen=True)
class Housekeeping:
    """What one housekeeping pass changed."""

    expired: int
    released: int
    resent: int
    parts_expired: int = 0


def housekeeping_txn(conn: Connection, *, now: datetime, stale_before: datetime,
                     unanswered_before: datetime, max_attempts: int,
                     parts_before: datetime | None = None) -> Housekeeping:
    """Keep the queue moving whatever happened to the processes that worked on it.

    Expires unfinished commands past their not-after; puts back in the queue
    commands claimed before ``stale_before`` and never sent (their process
    died); and queues again, for a resend of the same bytes, commands sent or
    delivered before ``unanswered_before`` without a reply, up to
    ``max_attempts`` attempts (the handset answers a repeated frame with its
    stored reply and does not execute it twice).  Inbound parts stored before
    ``parts_before`` whose message never completed are marked expired.
    """
    expired = expire_commands_txn(conn, now)
    released = release_stale_claims_txn(conn, claimed_before=stale_before, now=now)
    resent = conn.execute(
        update(commands)
        .where(commands.c.state.in_(["sent", "delivered"]),
               commands.c.updated_at < unanswered_before,
               commands.c.attempts < max_attempts, commands.c.not_after > now)
        .values(state="queued", claimed_by=None, claimed_at=None, updated_at=now,
                next_attempt_at=now, last_error="no reply: resending the same frame")
    ).rowcount
    parts_expired = 0
    if parts_before is not None:
        parts_expired = int(conn.execute(
            update(messages)
            .where(messages.c.kind == "mo", messages.c.direction == "in",
                   messages.c.part_total > 1, messages.c.created_at < parts_before,
                   messages.c.error.is_(None), messages.c.meta["assembled"].astext.is_(None))
            .values(error="incomplete concatenated message expired")
        ).rowcount)
    return Housekeeping(expired, released, int(resent), parts_expired)
