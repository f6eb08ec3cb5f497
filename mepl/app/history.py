"""Looking at the history: a device's messages both ways, one message, the audit trail.

Read-only use cases, each one transaction ``xxx_txn(conn, ...)`` returning
plain data, for any front end (the CLI through
:class:`mepl.app.context.SyncTransactions`, the admin API through the pool).
Reads are not audited.  Messages come back decoded
(:func:`mepl.app.decode.decode_message`): for that the transaction also reads
what decoding needs, the other parts of a concatenated message and the opcode
of the command a reply answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Select, func, select

from blobstore.audit import AuditRecord
from blobstore.devices import DeviceRecord, find_device_txn, get_device_txn
from blobstore.messages import StoredMessage
from blobstore.schema import (
    audit,
    command_events,
    commands,
    devices,
    messages,
    security_events,
)
from blobstore.security_events import SecurityEventRecord, device_security_events_txn
from mepl.app.decode import MessageView, decode_message

MAX_LIMIT: Final = 1000
"""The most rows one call returns; page with ``before_id`` for more."""

PART_WINDOW: Final = timedelta(days=1)
"""How far apart in time the parts of one unassembled concatenated message may be."""


def check_limit(limit: int) -> int:
    """``limit`` if it is 1..:data:`MAX_LIMIT`, else ValueError naming the range."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
    return limit


@dataclass(frozen=True)
class MessagePage:
    """A page of a device's messages, newest first.

    ``next_before_id``: pass it as ``before_id`` for the next, older page;
    None when this page reaches the device's first message.
    """

    device: DeviceRecord
    messages: tuple[MessageView, ...]
    next_before_id: int | None

    def to_json(self) -> dict[str, Any]:
        """JSON form: the device, the decoded messages, the next page's ``before_id``."""
        return {"device": self.device.as_json(),
                "messages": [m.to_json() for m in self.messages],
                "next_before_id": self.next_before_id}


@dataclass(frozen=True)
class CommandBrief:
    """The command a message belongs to: id, opcode, current state."""

    id: int
    opcode: str
    state: str


@dataclass(frozen=True)
class MessageDetail:
    """One message decoded, with its device, its command and the security events about it."""

    message: MessageView
    device: DeviceRecord | None
    command: CommandBrief | None
    security_events: tuple[SecurityEventRecord, ...]

    def to_json(self, *, raw: bool = False) -> dict[str, Any]:
        """JSON form (``raw``: with the stored bytes as hex)."""
        data = self.message.to_json(raw=raw)
        data["device"] = None if self.device is None else {
            "id": self.device.id, "imei": self.device.imei, "msisdn": self.device.msisdn}
        data["command"] = None if self.command is None else {
            "id": self.command.id, "opcode": self.command.opcode, "state": self.command.state}
        data["security_events"] = [security_event_json(e) for e in self.security_events]
        return data


@dataclass(frozen=True)
class DeviceEvents:
    """A device's security events, newest first."""

    device: DeviceRecord
    events: tuple[SecurityEventRecord, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"device": self.device.as_json(),
                "events": [security_event_json(e) for e in self.events]}


def security_event_json(event: SecurityEventRecord) -> dict[str, Any]:
    """A security event as JSON."""
    return {"id": event.id, "at": event.at.isoformat(), "kind": event.kind,
            "device_id": event.device_id, "message_id": event.message_id,
            "details": dict(event.details)}


def audit_json(record: AuditRecord) -> dict[str, Any]:
    """An audit row as JSON."""
    return {"id": record.id, "at": record.at.isoformat(), "actor": record.actor,
            "role": record.role, "action": record.action, "target": record.target,
            "details": dict(record.details)}


def message_history_txn(conn: Connection, identifier: str, *,
                        default_region: str | None = None, before_id: int | None = None,
                        limit: int = 50) -> MessagePage:
    """The messages of the device ``identifier`` (IMEI, IMSI or phone number, however
    written), both ways, newest first: at most ``limit`` with ids below ``before_id``.

    Raises what :func:`blobstore.devices.find_device_txn` raises for an
    identifier that is unreadable, unknown or ambiguous, and ValueError for a
    limit out of range.
    """
    check_limit(limit)
    device = find_device_txn(conn, identifier, default_region)
    query = select(messages).where(messages.c.device_id == device.id)
    if before_id is not None:
        query = query.where(messages.c.id < before_id)
    rows = _read(conn, query.order_by(messages.c.id.desc()).limit(limit + 1))
    page, more = rows[:limit], len(rows) > limit
    return MessagePage(device, tuple(_decode_all(conn, page)),
                       page[-1].id if more else None)


def message_detail_txn(conn: Connection, message_id: int) -> MessageDetail | None:
    """One message decoded, with its device, command and security events; None if absent."""
    rows = _read(conn, select(messages).where(messages.c.id == message_id))
    if not rows:
        return None
    message = rows[0]
    view = _decode_all(conn, rows)[0]
    device = get_device_txn(conn, message.device_id) if message.device_id is not None else None
    command = None
    if message.command_id is not None:
        row = conn.execute(select(commands.c.id, commands.c.opcode, commands.c.state)
                           .where(commands.c.id == message.command_id)).first()
        if row is not None:
            command = CommandBrief(int(row.id), row.opcode, row.state)
    events = conn.execute(select(security_events)
                          .where(security_events.c.message_id == message_id)
                          .order_by(security_events.c.id)).all()
    return MessageDetail(view, device, command,
                         tuple(SecurityEventRecord(**dict(e._mapping)) for e in events))


def audit_list_txn(conn: Connection, *, actor: str | None = None, action: str | None = None,
                   since: datetime | None = None, limit: int = 100,
                   before_id: int | None = None) -> list[AuditRecord]:
    """Audit rows, newest first: of one ``actor``, one ``action``, at or after ``since``,
    with ids below ``before_id`` (the next page)."""
    check_limit(limit)
    query = select(audit)
    if before_id is not None:
        query = query.where(audit.c.id < before_id)
    if actor is not None:
        query = query.where(audit.c.actor == actor)
    if action is not None:
        query = query.where(audit.c.action == action)
    if since is not None:
        query = query.where(audit.c.at >= since)
    rows = conn.execute(query.order_by(audit.c.id.desc()).limit(limit)).all()
    return [AuditRecord(r.id, r.at, r.actor, r.role, r.action, r.target, r.details)
            for r in rows]


def security_events_txn(conn: Connection, identifier: str, *,
                        default_region: str | None = None, limit: int = 100) -> DeviceEvents:
    """The security events of the device ``identifier``, newest first."""
    check_limit(limit)
    device = find_device_txn(conn, identifier, default_region)
    return DeviceEvents(device, tuple(device_security_events_txn(conn, device.id,
                                                                 limit=limit)))


# ---------------------------------------------------------------- reading and decoding
def _read(conn: Connection, query: Select[Any]) -> list[StoredMessage]:
    out = []
    for row in conn.execute(query):
        values = dict(row._mapping)
        values["payload"] = bytes(values["payload"])
        values["sha256"] = bytes(values["sha256"])
        out.append(StoredMessage(**values))
    return out


def _decode_all(conn: Connection, rows: list[StoredMessage]) -> list[MessageView]:
    opcodes = _opcodes(conn, {m.command_id for m in rows
                              if m.kind == "mo" and m.command_id is not None})
    return [decode_message(m, parts=_parts(conn, m),
                           opcode=opcodes.get(m.command_id) if m.command_id else None)
            for m in rows]


def _opcodes(conn: Connection, ids: Iterable[int]) -> Mapping[int, str]:
    wanted = sorted(ids)
    if not wanted:
        return {}
    rows = conn.execute(select(commands.c.id, commands.c.opcode)
                        .where(commands.c.id.in_(wanted))).all()
    return {int(r.id): r.opcode for r in rows}


def _parts(conn: Connection, message: StoredMessage) -> list[StoredMessage]:
    """The parts of the concatenated inbound message ``message`` belongs to.

    A message the server applied is marked (``meta.assembled``, the same value
    on each part); otherwise the sender's parts under the same reference, the
    one nearest to ``message`` for each sequence number.
    """
    meta = message.meta or {}
    if message.kind != "mo" or not message.part_total or message.part_total < 2:
        return []
    query = select(messages).where(messages.c.kind == "mo", messages.c.direction == "in",
                                   messages.c.part_total == message.part_total)
    assembled = meta.get("assembled")
    if assembled is not None:
        return _read(conn, query.where(messages.c.meta["assembled"].astext == str(assembled)))
    if "concat_ref" not in meta or "concat_bits" not in meta:
        return []
    candidates = _read(conn, query.where(
        messages.c.peer.is_not_distinct_from(message.peer),
        messages.c.meta["concat_ref"].astext == str(meta["concat_ref"]),
        messages.c.meta["concat_bits"].astext == str(meta["concat_bits"]),
        messages.c.meta["assembled"].astext.is_(None),
        messages.c.created_at.between(message.created_at - PART_WINDOW,
                                      message.created_at + PART_WINDOW)))
    nearest: dict[int, StoredMessage] = {}
    for part in candidates:
        if part.part_seq is None:
            continue
        kept = nearest.get(part.part_seq)
        if kept is None or abs(part.id - message.id) < abs(kept.id - message.id):
            nearest[part.part_seq] = part
    return list(nearest.values())


def alerts_page_txn(conn: Connection, *, device: str | None = None,
                    default_region: str | None = None, since: datetime | None = None,
                    before_id: int | None = None, limit: int = 50) -> list[Alert]:
    """Alerts and security events of every device (or of ``device``), newest first."""
    check_limit(limit)
    query = (select(security_events, devices.c.imei)
             .select_from(security_events.outerjoin(
                 devices, devices.c.id == security_events.c.device_id)))
    if device is not None:
        record = find_device_txn(conn, device, default_region)
        query = query.where(security_events.c.device_id == record.id)
    if since is not None:
        query = query.where(security_events.c.at >= since)
    if before_id is not None:
        query = query.where(security_events.c.id < before_id)
    rows = conn.execute(query.order_by(security_events.c.id.desc()).limit(limit)).all()
    return [_alert(r) for r in rows]


@dataclass(frozen=True)
class Alert:
    """A security event with the IMEI of its device (None: no device known)."""

    id: int
    imei: str | None
    kind: str
    at: datetime
    message_id: int | None
    details: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON form (as the live event stream sends it, with ``message_id``)."""
        return {"id": self.id, "imei": self.imei, "kind": self.kind,
                "at": self.at.isoformat(), "message_id": self.message_id,
                "details": dict(self.details)}


def _alert(row: Any) -> Alert:
    return Alert(int(row.id), row.imei, row.kind, row.at, row.message_id, dict(row.details))


@dataclass(frozen=True)
class LiveCommandEvent:
    """One command transition as the live stream sends it."""

    id: int
    command_id: int
    imei: str
    opcode: str
    from_state: str | None
    to_state: str
    event: str
    at: datetime
    note: str | None

    def to_json(self) -> dict[str, Any]:
        """``{"command_id","imei","opcode","from","to","event","at","note"}``."""
        return {"command_id": self.command_id, "imei": self.imei, "opcode": self.opcode,
                "from": self.from_state, "to": self.to_state, "event": self.event,
                "at": self.at.isoformat(), "note": self.note}


@dataclass(frozen=True)
class LiveEvents:
    """Events after a cursor: command transitions and alerts, each oldest first."""

    commands: tuple[LiveCommandEvent, ...]
    alerts: tuple[Alert, ...]


def event_cursor_txn(conn: Connection) -> tuple[int, int]:
    """The newest command event id and security event id (0 when none): "from now on"."""
    row = conn.execute(select(
        select(func.coalesce(func.max(command_events.c.id), 0)).scalar_subquery(),
        select(func.coalesce(func.max(security_events.c.id), 0)).scalar_subquery())).one()
    return int(row[0]), int(row[1])


def live_events_txn(conn: Connection, after_command_event: int, after_security_event: int,
                    *, device_id: int | None = None, limit: int = 500) -> LiveEvents:
    """Command events and security events after the given ids (at most ``limit`` of
    each), oldest first, of one device when ``device_id`` is given.

    Read from the tables, so it sees what every MEPL process wrote.
    """
    query = (select(command_events.c.id, command_events.c.command_id, devices.c.imei,
                    commands.c.opcode, command_events.c.from_state,
                    command_events.c.to_state, command_events.c.event, command_events.c.at,
                    command_events.c.details["note"].astext.label("note"))
             .select_from(command_events
                          .join(commands, commands.c.id == command_events.c.command_id)
                          .join(devices, devices.c.id == command_events.c.device_id))
             .where(command_events.c.id > after_command_event))
    alerts = (select(security_events, devices.c.imei)
              .select_from(security_events.outerjoin(
                  devices, devices.c.id == security_events.c.device_id))
              .where(security_events.c.id > after_security_event))
    if device_id is not None:
        query = query.where(command_events.c.device_id == device_id)
        alerts = alerts.where(security_events.c.device_id == device_id)
    rows = conn.execute(query.order_by(command_events.c.id).limit(limit)).all()
    alert_rows = conn.execute(alerts.order_by(security_events.c.id).limit(limit)).all()
    return LiveEvents(
        tuple(LiveCommandEvent(int(r.id), int(r.command_id), r.imei, r.opcode, r.from_state,
                               r.to_state, r.event, r.at, r.note) for r in rows),
        tuple(_alert(r) for r in alert_rows))
