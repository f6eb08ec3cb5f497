"""The transactions of the inbound flow: store and queue, then one apply transaction per item.

Order for every inbound item, whichever channel it came through:

1. :func:`store_inbound_txn` (or the HTTP callback store): the raw bytes and
   a queue row, committed together before the SMSC or gateway is answered;
2. a worker claims the queue row (lease) and verifies outside any transaction;
3. one apply transaction locks the queue row (a worker whose lease was taken
   over finds it gone and stops), locks the device or command row it
   changes, does everything the item implies (counter window, identity,
   states, policy commands, links, security events) and deletes the queue
   row.  If it fails, nothing of it happened and the item is claimed again:
   a reaction is never lost behind a consumed counter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select, update

from blobstore.commands import PRIORITY_SECURITY, NewCommand, insert_command_txn
from blobstore.devices import set_device_state_txn, touch_last_seen_txn, update_identity_txn
from blobstore.inbound_queue import (
    enqueue_txn,
    finish_txn,
    lock_entry_txn,
    wait_for_submit_txn,
)
from blobstore.lifecycle import transition_txn
from blobstore.messages import NewMessage, insert_message_txn, merge_meta
from blobstore.parts import mark_assembled_txn
from blobstore.replies import accept_device_counter_txn, link_messages_txn
from blobstore.schema import commands, devices, inbound_queue, messages
from blobstore.security_events import record_security_event_txn
from blobstore.server_keys import accept_key_txn
from mepl.core import lifecycle
from mepl.core.lifecycle import Event
from mepl.core.policy import AlertDecision, accepted_key, state_after_reply


@dataclass(frozen=True)
class Applied:
    """What applying one inbound item did.

    ``outcome``: ``applied``, ``duplicate`` (already applied: a resent reply),
    ``rejected`` (``detail`` says why), ``waiting`` (a receipt before its
    submit), ``retry`` (state moved under us: claim again), or ``lost``
    (another worker took the item over).
    """

    outcome: str
    detail: str | None = None
    command_id: int | None = None
    new_state: str | None = None
    device_id: int | None = None
    lock_command_id: int | None = None


LOST = Applied("lost")


def store_inbound_txn(conn: Connection, message: NewMessage, kind: str) -> int:
    """Store an inbound part or receipt and queue it; return its row id."""
    row_id = insert_message_txn(conn, message)
    enqueue_txn(conn, row_id, kind, link=message.link,
                smsc_message_id=message.smsc_message_id if kind == "dlr" else None)
    return row_id


def expand_callback_txn(conn: Connection, *, entry_id: int, worker: str,
                        part: NewMessage) -> int | None:
    """A stored HTTP MO callback becomes its SMS part row; the queue row now points at it.

    Returns the part's row id, or None if another worker took the item over.
    """
    if not lock_entry_txn(conn, entry_id, worker):
        return None
    part_id = insert_message_txn(conn, part)
    conn.execute(update(inbound_queue).where(inbound_queue.c.id == entry_id)
                 .values(kind="mo", message_id=part_id))
    return part_id


def _close(conn: Connection, entry_id: int, part_ids: Sequence[int], *,
           error: str | None = None, device_id: int | None = None,
           command_id: int | None = None) -> None:
    link_messages_txn(conn, part_ids, error=error, device_id=device_id, command_id=command_id)
    finish_txn(conn, entry_id)


def reject_txn(conn: Connection, *, entry_id: int, worker: str, part_ids: Sequence[int],
               reason: str, device_id: int | None = None) -> Applied:
    """A frame that failed verification: recorded on its rows, the item done."""
    if not lock_entry_txn(conn, entry_id, worker):
        return LOST
    _close(conn, entry_id, part_ids, error=f"rejected: {reason}", device_id=device_id)
    return Applied("rejected", reason, device_id=device_id)


def finish_part_txn(conn: Connection, *, entry_id: int, worker: str,
                    detail: str = "part stored") -> Applied:
    """A part whose message is not complete yet: stored, and the item done.

    Whichever part's item is applied last sees every part committed and
    applies the whole message.
    """
    if not lock_entry_txn(conn, entry_id, worker):
        return LOST
    finish_txn(conn, entry_id)
    return Applied("applied", detail)


def _assembled(conn: Connection, part_ids: Sequence[int]) -> bool:
    return len(part_ids) < 2 or mark_assembled_txn(conn, list(part_ids))


@dataclass(frozen=True)
class ReceiptFacts:
    """A delivery receipt as stored: which part it is about and what it says."""

    message_id: int
    link: str
    smsc_message_id: str
    status: str
    final: bool
    delivered: bool


def apply_receipt_txn(conn: Connection, *, entry_id: int, worker: str, receipt: ReceiptFacts,
                      now: datetime, retry_at: datetime | None) -> Applied:
    """Record a receipt on its ``mt`` part and roll the parts up into the command's state.

    A receipt whose submit is not recorded yet is kept (``waiting``) and woken
    by the transaction that records the submit.  The command row is locked
    before the parts are read, so two part receipts applied at once cannot
    both decide on a stale picture (write skew).
    """
    if not lock_entry_txn(conn, entry_id, worker):
        return LOST
    part = conn.execute(
        select(messages.c.id, messages.c.command_id, messages.c.device_id,
               messages.c.part_total)
        .where(messages.c.link == receipt.link,
               messages.c.smsc_message_id == receipt.smsc_message_id,
               messages.c.kind == "mt", messages.c.direction == "out")
        .order_by(messages.c.id.desc()).limit(1)
    ).first()
    if part is None or part.command_id is None:
        wait_for_submit_txn(conn, entry_id, message_id=receipt.message_id, link=receipt.link,
                            smsc_message_id=receipt.smsc_message_id)
        return Applied("waiting")
    command_id = int(part.command_id)
    conn.execute(select(commands.c.id).where(commands.c.id == command_id)
                 .with_for_update(key_share=True))
    conn.execute(update(messages).where(messages.c.id == part.id)
                 .values(meta=merge_meta(status=receipt.status)))
    statuses = [r[0] for r in conn.execute(
        select(messages.c.meta["status"].astext)
        .where(and_(messages.c.command_id == command_id, messages.c.kind == "mt",
                    messages.c.direction == "out", messages.c.link == receipt.link))
        .order_by(messages.c.id.desc()).limit(part.part_total or 1))]
    delivered = sum(1 for s in statuses if s == "delivered")
    total = int(part.part_total or 1)
    details = {"status": receipt.status, "receipt": receipt.message_id,
               "parts_delivered": delivered, "parts": total}
    done = None
    if receipt.delivered and delivered >= total:
        done = transition_txn(conn, command_id, Event.DELIVERED, machine=lifecycle, now=now,
                              actor=f"smsc:{receipt.link}", details=details)
    elif receipt.final and not receipt.delivered and retry_at is not None:
        done = transition_txn(conn, command_id, Event.DELIVERY_FAILED, machine=lifecycle,
                              now=now, actor=f"smsc:{receipt.link}", details=details,
                              last_error=f"delivery {receipt.status}", next_attempt_at=retry_at)
    _close(conn, entry_id, [receipt.message_id], device_id=part.device_id,
           command_id=command_id)
    return Applied("applied", command_id=command_id,
                   new_state=done.to_state if done is not None and done.changed else None)


def _device_key_unchanged(conn: Connection, device_id: int, public_key: bytes) -> Any:
    """Lock the device row; None if its key is no longer the one the frame was verified with."""
    row = conn.execute(
        select(devices.c.public_key, devices.c.state).where(devices.c.id == device_id)
        .with_for_update(key_share=True)
    ).first()
    if row is None or row.public_key is None or bytes(row.public_key) != public_key:
        return None
    return row


def apply_reply_txn(conn: Connection, *, entry_id: int, worker: str, part_ids: Sequence[int],
                    device_id: int, public_key: bytes, command_id: int, ok: bool,
                    result: Mapping[str, Any], now: datetime) -> Applied:
    """A verified reply: the command ends ``done`` or ``refused`` whatever state it was in.

    A reply to a command the server had given up on (expired, failed) still
    records what the device did; the history notes it.  A repeated reply
    changes nothing but is linked.  Replies also carry their consequences:
    a LOCK makes the device ``locked``, an accepted ``rotate_key`` moves the
    device to the new server key.
    """
    if not lock_entry_txn(conn, entry_id, worker):
        return LOST
    device = _device_key_unchanged(conn, device_id, public_key)
    if device is None:  # checked before anything is written: this transaction writes nothing
        return Applied("retry", "device key changed")
    if not _assembled(conn, part_ids):
        finish_txn(conn, entry_id)
        return Applied("duplicate", "applied by another worker")
    event = Event.REPLY_OK if ok else Event.REPLY_REFUSED
    done = transition_txn(conn, command_id, event, machine=lifecycle, now=now,
                          actor=f"device:{device_id}",
                          details={"status": result.get("status"), "message": part_ids[-1]},
                          result=dict(result), last_error=None if ok else
                          f"device answered {result.get('status')}")
    touch_last_seen_txn(conn, device_id, now)
    _close(conn, entry_id, part_ids, device_id=device_id, command_id=command_id)
    if done is None or not done.changed:
        return Applied("duplicate", command_id=command_id, device_id=device_id)
    command = conn.execute(select(commands.c.opcode, commands.c.arguments)
                           .where(commands.c.id == command_id)).one()
    new_device_state = state_after_reply(command.opcode, ok, device.state)
    if new_device_state is not None and new_device_state != device.state:
        set_device_state_txn(conn, device_id, new_device_state)
    key = accepted_key(command.opcode, ok, command.arguments or {})
    if key is not None:
        accept_key_txn(conn, device_id, key, now)
    return Applied("applied", command_id=command_id, new_state=done.to_state,
                   device_id=device_id)


def apply_alert_txn(conn: Connection, *, entry_id: int, worker: str, part_ids: Sequence[int],
                    device_id: int, public_key: bytes, counter: int, alert_name: str,
                    decision: AlertDecision, now: datetime, ttl: timedelta) -> Applied:
    """A verified alert: counter window, identity, state, security events and the LOCK, at once."""
    if not lock_entry_txn(conn, entry_id, worker):
        return LOST
    if _device_key_unchanged(conn, device_id, public_key) is None:
        return Applied("retry", "device key changed")  # nothing written yet
    if not _assembled(conn, part_ids):
        finish_txn(conn, entry_id)
        return Applied("duplicate", "applied by another worker")
    message = part_ids[-1]

    def security(kind: str, details: Mapping[str, Any]) -> None:
        record_security_event_txn(conn, device_id=device_id, kind=kind, message_id=message,
                                  now=now, details=details)

    if not decision.accept:
        for kind, details in decision.security_events:
            security(kind, details)
        _close(conn, entry_id, part_ids, error=f"rejected: {decision.refusal}",
               device_id=device_id)
        return Applied("rejected", decision.refusal, device_id=device_id)
    if not accept_device_counter_txn(conn, device_id, counter):
        _close(conn, entry_id, part_ids, error="rejected: replayed", device_id=device_id)
        return Applied("rejected", "replayed", device_id=device_id)
    if decision.identity:
        update_identity_txn(conn, device_id, source=f"alert:{alert_name}", **decision.identity)
    for kind, details in decision.security_events:
        security(kind, details)
    if decision.new_state is not None:
        set_device_state_txn(conn, device_id, decision.new_state)
    lock_id = None
    if decision.lock:
        lock_id = insert_command_txn(conn, device_id, NewCommand(
            opcode="lock", requested_by=f"policy:{alert_name}", not_after=now + ttl,
            arguments={"emergency_dialer": True}, priority=PRIORITY_SECURITY, created_at=now),
            details={"alert_message": message})
    touch_last_seen_txn(conn, device_id, now)
    _close(conn, entry_id, part_ids, device_id=device_id)
    return Applied("applied", device_id=device_id, lock_command_id=lock_id,
                   new_state=decision.new_state)
