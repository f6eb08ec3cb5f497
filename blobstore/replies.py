"""The transactions of the inbound flow: find what a reply or alert is about, record it.

Signature checks happen in the caller (this package knows nothing of
signing); these functions look up the keys and frames the caller needs and
record verified outcomes.  The device's alert counter window lives in the
``devices`` row (``counter_hwm`` plus a 64-bit bitmap of the counters below
it already seen) and is checked and advanced under a row lock, so two MEPL
processes can never both accept the same alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from blobstore.commands import transition_command_txn
from blobstore.devices import DeviceRecord, device_by_imei_txn, touch_last_seen_txn
from blobstore.messages import merge_meta
from blobstore.schema import commands, devices, messages

WINDOW_BITS = 64
_MASK = (1 << WINDOW_BITS) - 1


@dataclass(frozen=True)
class ReplyContext:
    """What verifying a reply needs: the device's key and the exact command frame."""

    device: DeviceRecord
    command_id: int
    command_state: str
    frame: bytes
    opcode: str


def reply_context_txn(conn: Connection, imei: str, key_id: int,
                      counter: int) -> ReplyContext | None:
    """The command a reply claims to answer (server key ``key_id``, ``counter``)."""
    device = device_by_imei_txn(conn, imei)
    if device is None:
        return None
    row = conn.execute(
        select(commands.c.id, commands.c.state, commands.c.frame, commands.c.opcode)
        .where(commands.c.device_id == device.id, commands.c.key_id == key_id,
               commands.c.counter == counter)
    ).first()
    if row is None or row.frame is None:
        return None
    return ReplyContext(device, int(row.id), row.state, bytes(row.frame), row.opcode)


def record_reply_txn(conn: Connection, context: ReplyContext, *, result: Mapping[str, Any],
                     message_id: int | None, now: datetime) -> bool:
    """A verified reply: the command is done (once), the message linked, the device seen.

    Returns False when the command had already been answered (a resent reply).
    """
    if message_id is not None:
        conn.execute(update(messages).where(messages.c.id == message_id).values(
            device_id=context.device.id, command_id=context.command_id))
    touch_last_seen_txn(conn, context.device.id, now)
    if not transition_command_txn(conn, context.command_id, "replied", now=now,
                                  result=dict(result)):
        return False
    return transition_command_txn(conn, context.command_id, "done", now=now,
                                  expected="replied")


def accept_device_counter_txn(conn: Connection, device_id: int, counter: int) -> bool:
    """Check a device counter against the stored window and mark it seen.

    Accepts a counter above the high-water mark, or one inside the 64 below
    it not seen yet; returns False (and changes nothing) for anything else.
    """
    if counter < 1:
        return False
    row = conn.execute(
        select(devices.c.counter_hwm, devices.c.counter_window)
        .where(devices.c.id == device_id).with_for_update()
    ).one()
    hwm, bitmap = int(row.counter_hwm), int(row.counter_window) & _MASK
    if counter > hwm:
        shift = counter - hwm
        bitmap = ((bitmap << shift) | (1 << (shift - 1))) & _MASK if hwm else 0
        hwm = counter
    else:
        offset = hwm - 1 - counter
        if counter == hwm or offset >= WINDOW_BITS or bitmap >> offset & 1:
            return False
        bitmap |= 1 << offset
    signed = bitmap - (1 << WINDOW_BITS) if bitmap >> (WINDOW_BITS - 1) else bitmap
    conn.execute(update(devices).where(devices.c.id == device_id)
                 .values(counter_hwm=hwm, counter_window=signed))
    return True


def link_message_txn(conn: Connection, message_id: int, *, device_id: int | None = None,
                     command_id: int | None = None, error: str | None = None) -> None:
    """Attach what was learnt about a stored inbound message (never its bytes)."""
    values: dict[str, Any] = {}
    if device_id is not None:
        values["device_id"] = device_id
    if command_id is not None:
        values["command_id"] = command_id
    if error is not None:
        values["error"] = error
    if values:
        conn.execute(update(messages).where(messages.c.id == message_id).values(values))


@dataclass(frozen=True)
class UnprocessedCallback:
    """A stored gateway callback (``mo`` or ``dlr``) whose processing never finished."""

    message_id: int
    gateway: str
    kind: str
    payload: bytes
    received_at: datetime


def mark_processed_txn(conn: Connection, message_id: int, into: int | None = None) -> None:
    """Record that the stored callback ``message_id`` was processed (into row ``into``)."""
    conn.execute(update(messages).where(messages.c.id == message_id).values(
        meta=merge_meta(processed=into if into is not None else True)))


def unprocessed_callbacks_txn(conn: Connection, *, before: datetime,
                              limit: int = 500) -> list[UnprocessedCallback]:
    """Gateway callbacks stored before ``before`` and never processed, oldest first.

    A callback is acknowledged once stored; these are the ones whose process
    stopped before it finished with them.  Rows are locked (SKIP LOCKED), so
    two processes never recover the same one at once.
    """
    rows = conn.execute(
        select(messages.c.id, messages.c.link, messages.c.kind, messages.c.payload,
               messages.c.created_at)
        .where(messages.c.channel == "http", messages.c.direction == "in",
               messages.c.kind.in_(["mo", "dlr"]), messages.c.error.is_(None),
               messages.c.meta["processed"].astext.is_(None),
               messages.c.created_at < before)
        .order_by(messages.c.created_at, messages.c.id).limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [UnprocessedCallback(int(r.id), str(r.link), str(r.kind), bytes(r.payload),
                                r.created_at) for r in rows]
