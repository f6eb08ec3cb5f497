"""The handlers: one thin adapter per route, from a :class:`~mepl.admin.api.Call` to a use case.

Each ``*_txn(conn, call)`` runs inside the request's transaction (the
request's audit row is appended to it by :mod:`mepl.admin.api`) and returns
an :class:`~mepl.admin.api.Answer`.  The rules live in :mod:`mepl.app`; here
only JSON is turned into arguments and results into JSON.  Requests that
need two-person approval become a pending approval (202), carried out by
:func:`~mepl.admin.handlers.approvals.approve_txn` later.

The handlers are grouped by resource:

- :mod:`mepl.admin.handlers.meta`: the OpenAPI document, whoami, the event stream's start;
- :mod:`mepl.admin.handlers.devices` and :mod:`mepl.admin.handlers.groups`;
- :mod:`mepl.admin.handlers.commands`: commands and fan-outs;
- :mod:`mepl.admin.handlers.approvals`: two-person approvals;
- :mod:`mepl.admin.handlers.audit`: alerts, the audit trail, the proxy's refusals;
- :mod:`mepl.admin.handlers.keys`: server keys and their rotation;
- :mod:`mepl.admin.handlers.pdus`: the raw SMPP PDUs of a link or a message;
- :mod:`mepl.admin.handlers.common`: what they share.

:data:`HANDLERS` maps each route's name to its handler.
"""

from __future__ import annotations

from mepl.admin.api import Handler
from mepl.admin.handlers.approvals import (
    approve_txn,
    get_approval_txn_,
    list_approvals_txn,
    prepare_approval,
    reject_txn,
)
from mepl.admin.handlers.audit import list_alerts_txn, list_audit_txn, proxy_audit_txn
from mepl.admin.handlers.commands import (
    cancel_command_txn,
    get_command_txn,
    get_fanout_txn,
    list_commands_txn,
    send_command_txn,
)
from mepl.admin.handlers.devices import (
    device_commands_txn,
    device_identity_txn,
    device_messages_txn,
    enrol_device_txn,
    get_device_txn,
    list_devices_txn,
    retire_device_txn,
    retire_devices_txn,
)
from mepl.admin.handlers.groups import (
    change_members_txn,
    create_group_txn,
    get_group_txn,
    list_groups_txn,
)
from mepl.admin.handlers.keys import KeyRotator, get_keys_txn, prepare_rotation, rotate_keys_txn
from mepl.admin.handlers.meta import events_start_txn, openapi_txn, whoami_txn
from mepl.admin.handlers.pdus import list_pdus_txn
from mepl.app.errors import InvalidRequest

HANDLERS: dict[str, Handler] = {
    "getOpenapi": Handler(openapi_txn),
    "whoami": Handler(whoami_txn),
    "listDevices": Handler(list_devices_txn),
    "enrolDevice": Handler(enrol_device_txn),
    "retireDevices": Handler(retire_devices_txn),
    "getDevice": Handler(get_device_txn),
    "retireDevice": Handler(retire_device_txn),
    "getDeviceIdentity": Handler(device_identity_txn),
    "getDeviceMessages": Handler(device_messages_txn),
    "getDeviceCommands": Handler(device_commands_txn),
    "listGroups": Handler(list_groups_txn),
    "createGroup": Handler(create_group_txn),
    "getGroup": Handler(get_group_txn),
    "changeGroupMembers": Handler(change_members_txn),
    "sendCommand": Handler(send_command_txn),
    "listCommands": Handler(list_commands_txn),
    "getCommand": Handler(get_command_txn),
    "cancelCommand": Handler(cancel_command_txn),
    "getFanout": Handler(get_fanout_txn),
    "listAlerts": Handler(list_alerts_txn),
    "listPdus": Handler(list_pdus_txn),
    "listApprovals": Handler(list_approvals_txn),
    "getApproval": Handler(get_approval_txn_),
    "approve": Handler(approve_txn, prepare_approval),
    "reject": Handler(reject_txn),
    "listAudit": Handler(list_audit_txn),
    "events": Handler(events_start_txn),
    "getKeys": Handler(get_keys_txn),
    "rotateKeys": Handler(rotate_keys_txn, prepare_rotation),
    "proxyAudit": Handler(proxy_audit_txn),
}
"""Every route's handler, by the route's name."""

__all__ = ["HANDLERS", "InvalidRequest", "KeyRotator"]
