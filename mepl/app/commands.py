"""Commands: queue one for a device, a group or the whole fleet; list, show, cancel.

The rules live here, not in a front end: arguments are typed and checked
against the catalog (:mod:`mepl.commandargs`) before anything is queued;
LOCK, WIPE, ROTATE_KEY and SET_TRUSTED_NUMBERS always go at security
priority; a retired device gets no command; a WIPE to a group or to the
fleet is queued only when confirmed.  A fan-out is one INSERT ... SELECT
(no per-device work here), and every change is audited in its own
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, select

from blobstore.audit import append_audit_txn
from blobstore.commands import (
    PRIORITY_BULK,
    PRIORITY_NORMAL,
    PRIORITY_SECURITY,
    CommandRecord,
    NewCommand,
    command_record,
    device_commands_txn,
    get_command_txn,
    insert_command_txn,
    insert_fanout_commands_txn,
)
from blobstore.devices import (
    count_selected_txn,
    find_device_txn,
    get_device_txn,
    reachable_device_ids,
)
from blobstore.fanouts import (
    FanoutRecord,
    create_fanout_txn,
    fanout_states_txn,
    get_fanout_txn,
    set_fanout_count_txn,
)
from blobstore.groups import get_group_txn
from blobstore.lifecycle import CommandEventRecord, command_history_txn, transition_txn
from blobstore.schema import COMMAND_STATES, commands
from mepl.app.context import Actor, audit_details
from mepl.app.errors import InvalidRequest, NeedsConfirmation, NotFound, Refused, store_errors
from mepl.commandargs import ArgumentError, parse_command_arguments
from mepl.core import lifecycle
from mepl.core.lifecycle import Event, InvalidTransition, State
from signing.commands import Opcode, opcode_from_name
from signing.errors import EncodingError

PRIORITIES = {"security": PRIORITY_SECURITY, "normal": PRIORITY_NORMAL, "bulk": PRIORITY_BULK}
"""The priorities an operator names, to their queue values (lower is sooner)."""

SECURITY_OPCODES = frozenset((Opcode.LOCK, Opcode.WIPE, Opcode.ROTATE_KEY,
                              Opcode.SET_TRUSTED_NUMBERS))
"""Always queued at security priority, whatever priority was asked for."""

DESTRUCTIVE_OPCODES = frozenset((Opcode.WIPE,))
"""Queued for a group or the whole fleet only when confirmed."""

DEFAULT_VALIDITY = timedelta(days=1)


@dataclass(frozen=True)
class Target:
    """Who a command goes to: one device (any written identifier), a group, or the fleet.

    The fleet is every device that is enrolled (has a public key) and not
    retired; a group is its members that are not retired.
    """

    kind: Literal["device", "group", "fleet"]
    name: str = ""

    @classmethod
    def device(cls, identifier: str) -> Target:
        """One device, found by IMEI, IMSI or phone number however written."""
        return cls("device", identifier)

    @classmethod
    def group(cls, name: str) -> Target:
        """Every member of group ``name`` that is not retired."""
        return cls("group", name)

    @classmethod
    def fleet(cls) -> Target:
        """Every enrolled device that is not retired."""
        return cls("fleet")


@dataclass(frozen=True)
class Queued:
    """What :func:`queue_command_txn` queued.

    ``target``: as audited (an IMEI, ``group:NAME`` or ``fleet``);
    ``command_id``: the command's id for one device (None for a fan-out);
    ``left_out``: members of the group not reached because they are retired;
    ``fanout_id``: the fan-out record of a command to a group or the fleet.
    """

    opcode: str
    target: str
    count: int
    priority: int
    command_id: int | None = None
    left_out: int = 0
    fanout_id: int | None = None


@dataclass(frozen=True)
class Approved:
    """Who approved a command another administrator asked for (two-person approval)."""

    approval_id: int
    approver: Actor

    def note(self, requester: Actor) -> str:
        """The line that goes into the command's history."""
        return (f"requested by {requester.label}, approved by {self.approver.label} "
                f"(approval {self.approval_id})")


@dataclass(frozen=True)
class CommandDetails:
    """One command and its history (every state change, oldest first)."""

    record: CommandRecord
    history: tuple[CommandEventRecord, ...]


@dataclass(frozen=True)
class Cancelled:
    """A command withdrawn before it was sent."""

    command_id: int
    opcode: str
    imei: str


def queue_command_txn(conn: Connection, actor: Actor, target: Target, opcode: str, *,
                      now: datetime, arguments: Sequence[str] = (), priority: str = "normal",
                      valid_for: timedelta = DEFAULT_VALIDITY, region: str | None = None,
                      confirm: bool = False, approved: Approved | None = None) -> Queued:
    """Queue ``opcode`` with ``arguments`` (``NAME=VALUE`` strings) for ``target``.

    ``approved``: the second administrator who approved it; both names go
    into ``requested_by``, the history note and the audit row.

    ``region`` reads national phone numbers (the device's, and arguments');
    the command is valid until ``now + valid_for``.  Raises
    :class:`InvalidRequest` for an unknown opcode, a bad argument, priority
    or validity; :class:`NotFound` for an unknown device or group;
    :class:`Refused` for a retired device; :class:`NeedsConfirmation` for a
    destructive command to a group or the fleet without ``confirm``.
    """
    opcode_value = _opcode(opcode)
    try:
        checked = parse_command_arguments(opcode_value, arguments, region=region)
    except ArgumentError as exc:
        raise InvalidRequest(str(exc), field="arguments") from None
    if priority not in PRIORITIES:
        raise InvalidRequest(f"unknown priority {priority!r}; one of "
                             f"{', '.join(sorted(PRIORITIES))}", field="priority")
    if valid_for <= timedelta(0):
        raise InvalidRequest("the validity must be positive", field="valid_for")
    level = PRIORITY_SECURITY if opcode_value in SECURITY_OPCODES else PRIORITIES[priority]
    args = checked.to_json()["args"]
    requested_by = actor.label
    note: dict[str, Any] = {}
    if approved is not None:
        requested_by = f"{actor.label} approved by {approved.approver.label}"
        note = {"note": approved.note(actor), "approval": approved.approval_id}
    command = NewCommand(opcode=checked.name, requested_by=requested_by, arguments=args,
                         priority=level, not_after=now + valid_for)
    if target.kind == "device":
        queued = _queue_for_device(conn, target.name, command, region, note)
    else:
        queued = _queue_fanout(conn, target, command, note, destructive=(
            opcode_value in DESTRUCTIVE_OPCODES and not confirm and approved is None))
    append_audit_txn(conn, actor=actor.name, role=actor.role, action="command.send",
                     target=queued.target, details=audit_details(
                         opcode=checked.name, args=args, commands=queued.count,
                         priority=level, confirmed=True if confirm else None,
                         left_out=queued.left_out or None, fanout=queued.fanout_id,
                         approval=approved.approval_id if approved else None,
                         approved_by=approved.approver.name if approved else None))
    return queued


def _opcode(name: str) -> Opcode:
    try:
        return opcode_from_name(name)
    except EncodingError as exc:
        raise InvalidRequest(str(exc), field="opcode") from None


def _queue_for_device(conn: Connection, identifier: str, command: NewCommand,
                      region: str | None, note: dict[str, Any]) -> Queued:
    with store_errors(field="device"):
        device = find_device_txn(conn, identifier, region)
    if device.state == "retired":
        raise Refused(f"device {device.imei} is retired: no command is sent to it")
    command_id = insert_command_txn(conn, device.id, command, details=note or None)
    return Queued(command.opcode, device.imei, 1, command.priority, command_id=command_id)


def _queue_fanout(conn: Connection, target: Target, command: NewCommand,
                  note: dict[str, Any], *, destructive: bool) -> Queued:
    if target.kind == "group":
        with store_errors(field="group"):
            members = get_group_txn(conn, target.name).members
        ids = reachable_device_ids(group=target.name)
        label, where = f"group:{target.name}", f"group {target.name}"
        details: dict[str, Any] = {"group": target.name}
    else:
        ids = reachable_device_ids(enrolled=True)
        label, details, where, members = "fleet", {"fleet": True}, "the whole fleet", None
    if destructive:
        reach = count_selected_txn(conn, ids)
        if reach:
            raise NeedsConfirmation(
                f"{command.opcode} to {where} would reach {reach} device(s) and must be "
                "confirmed", reach=reach)
    fanout_id = create_fanout_txn(conn, opcode=command.opcode, target=label,
                                  requested_by=command.requested_by)
    count = insert_fanout_commands_txn(conn, ids, replace(command, fanout_id=fanout_id),
                                       details={**details, **note})
    set_fanout_count_txn(conn, fanout_id, count)
    left_out = members - count if members is not None else 0
    return Queued(command.opcode, label, count, command.priority, left_out=left_out,
                  fanout_id=fanout_id)


def list_commands_txn(conn: Connection, actor: Actor, device: str, *, limit: int = 50,
                      region: str | None = None) -> list[CommandRecord]:
    """A device's commands, newest first (``actor`` is who asks; reads are not audited)."""
    if limit < 1:
        raise InvalidRequest("the limit must be at least 1", field="limit")
    with store_errors(field="device"):
        record = find_device_txn(conn, device, region)
    return device_commands_txn(conn, record.id, limit=limit)


def show_command_txn(conn: Connection, actor: Actor, command_id: int) -> CommandDetails:
    """One command with its history; raises :class:`NotFound`."""
    record = get_command_txn(conn, command_id)
    if record is None:
        raise NotFound(f"no command with id {command_id}")
    return CommandDetails(record, tuple(command_history_txn(conn, command_id)))


_TOO_LATE: dict[str, str] = {
    State.SENDING: "it is already being sent",
    State.SENT: "it is already sent",
    State.DELIVERED: "it is already sent and delivered",
    State.DONE: "the device already executed it",
    State.REFUSED: "the device already refused it",
    State.FAILED: "it already failed",
    State.EXPIRED: "it already expired",
    State.CANCELLED: "it is already cancelled",
}


def cancel_command_txn(conn: Connection, actor: Actor, command_id: int, *,
                       now: datetime) -> Cancelled:
    """Withdraw a command that is still ``queued`` (the lifecycle's ``cancel`` event).

    Raises :class:`NotFound`, or :class:`Refused` naming the state of a
    command that has left the queue (being sent, sent, finished).
    """
    try:
        done = transition_txn(conn, command_id, Event.CANCEL, machine=lifecycle, now=now,
                              actor=actor.label)
    except InvalidTransition as exc:
        why = _TOO_LATE.get(exc.state, f"it is {exc.state}")
        raise Refused(f"command {command_id} cannot be cancelled: {why} "
                      f"(state {exc.state})") from None
    if done is None:
        raise NotFound(f"no command with id {command_id}")
    record = get_command_txn(conn, command_id)
    assert record is not None  # locked by the transition above
    imei = get_device_txn(conn, done.device_id).imei
    append_audit_txn(conn, actor=actor.name, role=actor.role, action="command.cancel",
                     target=f"command:{command_id}",
                     details={"opcode": record.opcode, "device": imei,
                              "from": done.from_state})
    return Cancelled(command_id, record.opcode, imei)


def command_json(record: CommandRecord) -> dict[str, Any]:
    """A command as JSON-ready data (times ISO 8601, the frame in hex)."""
    return {
        "id": record.id, "device_id": record.device_id, "opcode": record.opcode,
        "arguments": dict(record.arguments), "state": record.state,
        "priority": record.priority, "counter": record.counter, "key_id": record.key_id,
        "requested_by": record.requested_by, "created_at": record.created_at.isoformat(),
        "not_after": record.not_after.isoformat(), "attempts": record.attempts,
        "last_error": record.last_error,
        "result": dict(record.result) if record.result is not None else None,
        "frame": record.frame.hex() if record.frame is not None else None,
    }


def event_json(event: CommandEventRecord) -> dict[str, Any]:
    """One history row as JSON-ready data."""
    return {"at": event.at.isoformat(), "from": event.from_state, "to": event.to_state,
            "event": event.event, "actor": event.actor, "details": dict(event.details)}


def command_page_txn(conn: Connection, actor: Actor, *, device: str | None = None,
                     state: str | None = None, fanout: int | None = None,
                     before_id: int | None = None, limit: int = 50,
                     region: str | None = None) -> list[CommandRecord]:
    """Commands newest first (by id, below ``before_id``), of one device (any written
    identifier), in one state, of one fan-out (not audited)."""
    if state is not None and state not in COMMAND_STATES:
        raise InvalidRequest(f"unknown command state {state!r}; one of "
                             f"{', '.join(COMMAND_STATES)}", field="state")
    query = select(commands)
    if device is not None:
        with store_errors(field="device"):
            query = query.where(commands.c.device_id == find_device_txn(conn, device,
                                                                        region).id)
    if state is not None:
        query = query.where(commands.c.state == state)
    if fanout is not None:
        query = query.where(commands.c.fanout_id == fanout)
    if before_id is not None:
        query = query.where(commands.c.id < before_id)
    rows = conn.execute(query.order_by(commands.c.id.desc()).limit(limit)).all()
    return [command_record(r) for r in rows]


FAILED_STATES = (State.REFUSED, State.FAILED, State.EXPIRED)
"""The terminal states a fan-out's progress counts as failed."""


@dataclass(frozen=True)
class FanoutProgress:
    """A fan-out and how far its commands got: how many in each state.

    ``done``: executed by the device; ``failed``: refused, failed or expired;
    ``finished``: in any final state (cancelled included).
    """

    fanout: FanoutRecord
    states: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        """JSON form: the record, ``states``, ``total``, ``done``, ``failed``, ``finished``."""
        states = dict(self.states)
        return {"id": self.fanout.id, "opcode": self.fanout.opcode,
                "target": self.fanout.target, "count": self.fanout.count,
                "requested_by": self.fanout.requested_by,
                "created_at": self.fanout.created_at.isoformat(), "states": states,
                "total": sum(states.values()), "done": states.get(State.DONE, 0),
                "failed": sum(states.get(s, 0) for s in FAILED_STATES),
                "finished": sum(n for s, n in states.items() if s in lifecycle.TERMINAL)}


def fanout_progress_txn(conn: Connection, actor: Actor, fanout_id: int) -> FanoutProgress:
    """A fan-out's progress, counted in the database (one GROUP BY on an index)."""
    record = get_fanout_txn(conn, fanout_id)
    if record is None:
        raise NotFound(f"no fan-out with id {fanout_id}")
    return FanoutProgress(record, fanout_states_txn(conn, fanout_id))
