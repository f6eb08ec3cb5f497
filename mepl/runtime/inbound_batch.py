"""Apply transactions for a whole batch of receipts, or of verified replies, at once.

The rules are those of :mod:`mepl.runtime.inbound_txn`: each item's queue
row is locked first (an item another worker took over is ``lost``), then the
rows it changes, everything it implies is written, and its queue row is
deleted, all in the one transaction.  What changes is the shape: a batch of
N items costs a handful of set-based statements (:mod:`blobstore.inbound_bulk`,
:func:`blobstore.lifecycle.transition_many_txn`) instead of about ten per item.

The common case takes the set-based path: a single-part message and its
receipt or reply.  Anything else in the batch (a receipt before its submit,
a part of a multi-part message, a second receipt for a command already in
the batch) is applied by the one-item function, in the same transaction.
If the batch transaction fails, the worker applies its items one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from blobstore.devices import set_device_state_txn
from blobstore.inbound_bulk import (
    Link,
    SentPart,
    command_opcodes_txn,
    finish_entries_txn,
    link_many_txn,
    lock_devices_txn,
    lock_entries_txn,
    sent_parts_txn,
    set_part_status_txn,
    set_windows_txn,
    touch_many_txn,
)
from blobstore.lifecycle import Change, transition_many_txn
from blobstore.replies import advance_window
from blobstore.security_events import NewSecurityEvent, record_security_events_txn
from blobstore.server_keys import accept_key_txn
from mepl.core import lifecycle
from mepl.core.lifecycle import Event
from mepl.core.policy import AlertDecision, accepted_key, state_after_reply
from mepl.runtime.inbound_txn import (
    LOST,
    Applied,
    ReceiptFacts,
    apply_alert_txn,
    apply_receipt_txn,
    apply_reply_txn,
)


def apply_receipts_txn(conn: Connection, *, worker: str,
                       receipts: Sequence[tuple[int, ReceiptFacts]], now: datetime,
                       retry_at: datetime | None) -> list[Applied]:
    """Apply ``(queue entry id, receipt)`` pairs; one :class:`Applied` per pair, in order."""
    owned = lock_entries_txn(conn, [entry for entry, _ in receipts], worker)
    parts = sent_parts_txn(conn, [(f.link, f.smsc_message_id) for _, f in receipts])
    results: list[Applied | None] = [None] * len(receipts)
    fast: list[tuple[int, ReceiptFacts, SentPart, int]] = []
    slow: list[int] = []
    commands_seen: set[int] = set()
    for i, ((entry, facts), part) in enumerate(zip(receipts, parts, strict=True)):
        if entry not in owned:
            results[i] = LOST
        elif (part is None or part.command_id is None or part.part_total > 1
              or part.command_id in commands_seen):
            slow.append(i)
        else:
            commands_seen.add(part.command_id)
            fast.append((i, facts, part, part.command_id))
    changes: dict[int, Change] = {}
    for i, facts, _part, command_id in fast:
        details = {"status": facts.status, "receipt": facts.message_id,
                   "parts_delivered": 1 if facts.delivered else 0, "parts": 1}
        actor = f"smsc:{facts.link}"
        if facts.delivered:
            changes[i] = Change(command_id, Event.DELIVERED, actor, details)
        elif facts.final and retry_at is not None:
            changes[i] = Change(command_id, Event.DELIVERY_FAILED, actor, details, {
                "last_error": f"delivery {facts.status}", "next_attempt_at": retry_at})
    set_part_status_txn(conn, {part.message_id: facts.status for _, facts, part, _ in fast})
    steps = dict(zip(changes, transition_many_txn(conn, list(changes.values()),
                                                  machine=lifecycle, now=now), strict=True))
    link_many_txn(conn, [Link(facts.message_id, device_id=part.device_id, command_id=command_id)
                         for _, facts, part, command_id in fast])
    finish_entries_txn(conn, [receipts[i][0] for i, _, _, _ in fast])
    for i, _facts, _part, command_id in fast:
        step = steps.get(i)
        results[i] = Applied("applied", command_id=command_id,
                             new_state=step.to_state if step is not None and step.changed
                             else None)
    for i in slow:
        entry, facts = receipts[i]
        results[i] = apply_receipt_txn(conn, entry_id=entry, worker=worker, receipt=facts,
                                       now=now, retry_at=retry_at)
    return [r if r is not None else LOST for r in results]


@dataclass(frozen=True)
class VerifiedReply:
    """A reply whose signature checked out, ready to apply."""

    entry_id: int
    part_ids: tuple[int, ...]
    device_id: int
    public_key: bytes
    command_id: int
    ok: bool
    result: Mapping[str, Any]


def apply_replies_txn(conn: Connection, *, worker: str, replies: Sequence[VerifiedReply],
                      now: datetime) -> list[Applied]:
    """Apply verified replies; one :class:`Applied` per reply, in order.

    As :func:`~mepl.runtime.inbound_txn.apply_reply_txn` for each: the device
    row is locked and its key checked (``retry`` if it changed since the
    reply was verified: nothing of that reply is written), the command ends
    ``done`` or ``refused``, a repeated reply is a ``duplicate`` (linked), and
    the reply's consequences (device locked, new server key) follow.
    """
    owned = lock_entries_txn(conn, [r.entry_id for r in replies], worker)
    held = lock_devices_txn(conn, [r.device_id for r in replies if r.entry_id in owned])
    results: list[Applied | None] = [None] * len(replies)
    fast: list[int] = []
    slow: list[int] = []
    for i, reply in enumerate(replies):
        device = held.get(reply.device_id)
        key = device.public_key if device is not None else None
        if reply.entry_id not in owned:
            results[i] = LOST
        elif key is None or key != reply.public_key:
            results[i] = Applied("retry", "device key changed")
        elif len(reply.part_ids) > 1:
            slow.append(i)
        else:
            fast.append(i)
    steps = transition_many_txn(conn, [_reply_change(replies[i]) for i in fast],
                                machine=lifecycle, now=now)
    touch_many_txn(conn, [(replies[i].device_id, now) for i in fast])
    link_many_txn(conn, [Link(replies[i].part_ids[-1], device_id=replies[i].device_id,
                              command_id=replies[i].command_id) for i in fast])
    finish_entries_txn(conn, [replies[i].entry_id for i in fast])
    changed = [(i, step) for i, step in zip(fast, steps, strict=True)
               if step is not None and step.changed]
    opcodes = command_opcodes_txn(conn, [replies[i].command_id for i, _ in changed])
    states = {device_id: device.state for device_id, device in held.items()}
    for i, step in changed:
        reply = replies[i]
        opcode, arguments = opcodes[reply.command_id]
        new_state = state_after_reply(opcode, reply.ok, states[reply.device_id])
        if new_state is not None and new_state != states[reply.device_id]:
            set_device_state_txn(conn, reply.device_id, new_state)
            states[reply.device_id] = new_state
        accepted = accepted_key(opcode, reply.ok, arguments)
        if accepted is not None:
            accept_key_txn(conn, reply.device_id, accepted, now)
        results[i] = Applied("applied", command_id=reply.command_id, new_state=step.to_state,
                             device_id=reply.device_id)
    for i in fast:
        if results[i] is None:
            results[i] = Applied("duplicate", command_id=replies[i].command_id,
                                 device_id=replies[i].device_id)
    for i in slow:
        reply = replies[i]
        results[i] = apply_reply_txn(
            conn, entry_id=reply.entry_id, worker=worker, part_ids=reply.part_ids,
            device_id=reply.device_id, public_key=reply.public_key, command_id=reply.command_id,
            ok=reply.ok, result=reply.result, now=now)
    return [r if r is not None else LOST for r in results]


def _reply_change(reply: VerifiedReply) -> Change:
    status = reply.result.get("status")
    return Change(reply.command_id, Event.REPLY_OK if reply.ok else Event.REPLY_REFUSED,
                  f"device:{reply.device_id}",
                  {"status": status, "message": reply.part_ids[-1]},
                  {"result": dict(reply.result),
                   "last_error": None if reply.ok else f"device answered {status}"})


@dataclass(frozen=True)
class VerifiedAlert:
    """An alert whose signature checked out, and what the policy decided about it."""

    entry_id: int
    part_ids: tuple[int, ...]
    device_id: int
    public_key: bytes
    counter: int
    alert_name: str
    decision: AlertDecision


def _plain(alert: VerifiedAlert) -> bool:
    """Accepted, and nothing but its security events and the device's last-seen to write."""
    d = alert.decision
    return (d.accept and not d.identity and d.new_state is None and not d.lock
            and len(alert.part_ids) == 1)


def apply_alerts_txn(conn: Connection, *, worker: str, alerts: Sequence[VerifiedAlert],
                     now: datetime, ttl: timedelta) -> list[Applied]:
    """Apply verified alerts; one :class:`Applied` per alert, in order.

    As :func:`~mepl.runtime.inbound_txn.apply_alert_txn` for each: device
    row locked and key checked, replay window, security events, links.  An
    alert that changes more than that (identity, state, a LOCK) or a second
    alert of a device in the batch is applied by the one-item function, in
    this same transaction.
    """
    owned = lock_entries_txn(conn, [a.entry_id for a in alerts], worker)
    held = lock_devices_txn(conn, [a.device_id for a in alerts if a.entry_id in owned])
    results: list[Applied | None] = [None] * len(alerts)
    windows: dict[int, tuple[int, int]] = {}
    accepted: list[int] = []
    replayed: list[int] = []
    slow: list[int] = []
    for i, alert in enumerate(alerts):
        device = held.get(alert.device_id)
        if alert.entry_id not in owned:
            results[i] = LOST
        elif device is None or device.public_key != alert.public_key:
            results[i] = Applied("retry", "device key changed")
        elif not _plain(alert) or alert.device_id in windows:
            slow.append(i)
        else:
            advanced = advance_window(device.counter_hwm, device.counter_window, alert.counter)
            if advanced is None:
                replayed.append(i)
                windows[alert.device_id] = (device.counter_hwm, device.counter_window)
            else:
                accepted.append(i)
                windows[alert.device_id] = advanced
    set_windows_txn(conn, {alerts[i].device_id: windows[alerts[i].device_id] for i in accepted},
                    seen_at=now)
    record_security_events_txn(conn, [
        NewSecurityEvent(alerts[i].device_id, kind, alerts[i].part_ids[-1], now, details)
        for i in accepted for kind, details in alerts[i].decision.security_events])
    link_many_txn(conn, [Link(alerts[i].part_ids[-1], device_id=alerts[i].device_id)
                         for i in accepted]
                  + [Link(alerts[i].part_ids[-1], device_id=alerts[i].device_id,
                          error="rejected: replayed") for i in replayed])
    finish_entries_txn(conn, [alerts[i].entry_id for i in accepted + replayed])
    for i in accepted:
        results[i] = Applied("applied", device_id=alerts[i].device_id)
    for i in replayed:
        results[i] = Applied("rejected", "replayed", device_id=alerts[i].device_id)
    for i in slow:
        a = alerts[i]
        results[i] = apply_alert_txn(
            conn, entry_id=a.entry_id, worker=worker, part_ids=a.part_ids,
            device_id=a.device_id, public_key=a.public_key, counter=a.counter,
            alert_name=a.alert_name, decision=a.decision, now=now, ttl=ttl)
    return [r if r is not None else LOST for r in results]
