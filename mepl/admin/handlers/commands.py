"""The admin API's command handlers: send (or ask for approval), list, show, cancel; fan-outs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from mepl.admin.api import Answer, Call
from mepl.admin.handlers.common import after_id, int_param, next_cursor, pending_approval
from mepl.app import commands as command_cases
from mepl.app.commands import Approved, Queued, Target, command_json, event_json
from mepl.app.context import Actor


def _target(body: Mapping[str, Any]) -> Target:
    target = body["target"]
    if "device" in target:
        return Target.device(target["device"])
    if "group" in target:
        return Target.group(target["group"])
    return Target.fleet()


def _arguments(body: Mapping[str, Any]) -> list[str]:
    out = []
    for name, value in (body.get("args") or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append(f"{name}={value}")
    return out


def queued_json(queued: Queued) -> dict[str, Any]:
    """The ``queued`` object of a command sent."""
    return {"command": queued.opcode, "target": queued.target, "count": queued.count,
            "command_id": queued.command_id, "fanout_id": queued.fanout_id,
            "priority": queued.priority, "left_out": queued.left_out}


def queue_command(conn: Connection, requester: Actor, body: Mapping[str, Any], now: datetime,
                  region: str | None, approved: Approved | None = None) -> Queued:
    """Queue the command a ``sendCommand`` body asks for (now, or once ``approved``)."""
    return command_cases.queue_command_txn(
        conn, requester, _target(body), str(body["command"]).lower(), now=now,
        arguments=_arguments(body), priority=body.get("priority", "normal"),
        valid_for=timedelta(seconds=body.get("valid_for_s", 86400)), region=region,
        confirm=bool(body.get("confirm", False)), approved=approved)


def _target_label(body: Mapping[str, Any]) -> str:
    target = body["target"]
    if "device" in target:
        return str(target["device"])
    return f"group:{target['group']}" if "group" in target else "fleet"


def send_command_txn(conn: Connection, call: Call) -> Answer:
    """Queue a command (or record it for two-person approval: 202)."""
    target = _target(call.body)
    opcode = str(call.body["command"]).lower()
    action = call.api.approvals.for_command(opcode, target.kind)
    if action is not None:
        # Checked now, so a request that could never be carried out is refused at once.
        _check_send(conn, call)
        return pending_approval(conn, call, action, _target_label(call.body))
    queued = queue_command(conn, call.actor, call.body, call.now, call.api.region)
    return Answer(201, {"queued": queued_json(queued)}, target=queued.target,
                  details={"fanout": queued.fanout_id} if queued.fanout_id else {})


def _check_send(conn: Connection, call: Call) -> None:
    """Run the use case in a savepoint and undo it: its refusals, without its effect."""
    savepoint = conn.begin_nested()
    try:
        queue_command(conn, call.actor, {**call.body, "confirm": True}, call.now, call.api.region)
    finally:
        savepoint.rollback()


def list_commands_txn(conn: Connection, call: Call) -> Answer:
    """Commands, newest first."""
    limit = call.query["limit"]
    rows = command_cases.command_page_txn(
        conn, call.actor, device=call.query.get("device"), state=call.query.get("state"),
        fanout=call.query.get("fanout"), before_id=after_id(call), limit=limit,
        region=call.api.region)
    return Answer(200, {"items": [command_json(r) for r in rows],
                        "next": next_cursor(rows, limit, lambda r: r.id)})


def get_command_txn(conn: Connection, call: Call) -> Answer:
    """A command and its history."""
    command_id = int_param(call)
    details = command_cases.show_command_txn(conn, call.actor, command_id)
    from blobstore.devices import get_device_txn as device_by_id

    imei = device_by_id(conn, details.record.device_id).imei
    return Answer(200, {"command": command_json(details.record), "imei": imei,
                        "history": [event_json(e) for e in details.history]},
                  target=f"command:{command_id}")


def cancel_command_txn(conn: Connection, call: Call) -> Answer:
    """Withdraw a queued command."""
    command_id = int_param(call)
    done = command_cases.cancel_command_txn(conn, call.actor, command_id, now=call.now)
    return Answer(200, {"cancelled": {"command_id": done.command_id, "opcode": done.opcode,
                                      "imei": done.imei}}, target=f"command:{command_id}")


def get_fanout_txn(conn: Connection, call: Call) -> Answer:
    """A fan-out's progress."""
    fanout_id = int_param(call)
    progress = command_cases.fanout_progress_txn(conn, call.actor, fanout_id)
    return Answer(200, progress.to_json(), target=f"fanout:{fanout_id}")
