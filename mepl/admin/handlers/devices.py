"""The admin API's device handlers: list, show, enrol, retire; a device's history and commands."""

from __future__ import annotations

from sqlalchemy import Connection

from mepl.admin.api import Answer, Call
from mepl.admin.handlers.common import (
    after_id,
    next_cursor,
    pending_approval,
    region_of,
)
from mepl.app import commands as command_cases
from mepl.app import devices as device_cases
from mepl.app import history
from mepl.app.commands import command_json
from mepl.app.errors import store_errors


def list_devices_txn(conn: Connection, call: Call) -> Answer:
    """A page of devices."""
    limit = call.query["limit"]
    rows = device_cases.device_page_txn(
        conn, call.actor, group=call.query.get("group"), after_id=after_id(call) or 0,
        limit=limit, state=call.query.get("state"), prefix=call.query.get("q"))
    return Answer(200, {"items": [r.as_json() for r in rows],
                        "next": next_cursor(rows, limit, lambda r: r.id)})


def get_device_txn(conn: Connection, call: Call) -> Answer:
    """One device with its identity history."""
    details = device_cases.show_device_txn(conn, call.actor, call.params["identifier"],
                                           region=region_of(call))
    return Answer(200, details.to_json(), target=details.record.imei)


def enrol_device_txn(conn: Connection, call: Call) -> Answer:
    """Register a device, and enrol its public key when given."""
    body = call.body
    groups = [body["group"]] if body.get("group") else []
    record = device_cases.add_device_txn(conn, call.actor, body["imei"],
                                         imsi=body.get("imsi"), phone=body.get("msisdn"),
                                         groups=groups, region=call.api.region)
    if body.get("public_key"):
        keys = call.api.services.get("keys")
        index = keys.store.load() if keys is not None else None
        record = device_cases.enrol_device_txn(conn, call.actor, record.imei,
                                               body["public_key"], keys=index).record
    return Answer(201, {"device": record.as_json()}, target=record.imei)


def _retire(conn: Connection, call: Call, identifiers: list[str]) -> Answer:
    action = call.api.approvals.for_retire(len(identifiers))
    if action is not None:
        return pending_approval(conn, call, action, f"{len(identifiers)} devices")
    imeis = device_cases.retire_devices_txn(conn, call.actor, identifiers,
                                            region=region_of(call))
    return Answer(200, {"retired": imeis},
                  target=imeis[0] if len(imeis) == 1 else f"{len(imeis)} devices")


def retire_device_txn(conn: Connection, call: Call) -> Answer:
    """Retire one device."""
    return _retire(conn, call, [call.params["identifier"]])


def retire_devices_txn(conn: Connection, call: Call) -> Answer:
    """Retire many (two-person approval from ``approvals.retire_min`` devices)."""
    return _retire(conn, call, list(call.body["devices"]))


def device_identity_txn(conn: Connection, call: Call) -> Answer:
    """A device's identity history."""
    details = device_cases.show_device_txn(conn, call.actor, call.params["identifier"],
                                           region=region_of(call))
    data = details.to_json()
    return Answer(200, {"imei": details.record.imei, "items": data["identity_history"]},
                  target=details.record.imei)


def device_messages_txn(conn: Connection, call: Call) -> Answer:
    """A device's messages both ways, decoded, newest first."""
    limit = call.query["limit"]
    with store_errors(field="identifier"):
        page = history.message_history_txn(conn, call.params["identifier"],
                                           default_region=region_of(call),
                                           before_id=after_id(call), limit=limit)
    return Answer(200, {"device": page.device.as_json(),
                        "items": [m.to_json() for m in page.messages],
                        "next": None if page.next_before_id is None
                        else str(page.next_before_id)}, target=page.device.imei)


def device_commands_txn(conn: Connection, call: Call) -> Answer:
    """A device's commands, newest first."""
    limit = call.query["limit"]
    rows = command_cases.command_page_txn(conn, call.actor, device=call.params["identifier"],
                                          before_id=after_id(call), limit=limit,
                                          region=region_of(call))
    return Answer(200, {"items": [command_json(r) for r in rows],
                        "next": next_cursor(rows, limit, lambda r: r.id)})
