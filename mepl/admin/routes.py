"""The route table: every operation of the admin API, declared once.

Each :class:`Route` says its method and path template, query parameters,
request and response JSON schemas, the role it needs (and, for
``POST /v1/commands``, the role a given command needs), the audit action of
its requests and the handler that serves it.  The server dispatches from it,
the OpenAPI document is generated from it (:mod:`mepl.admin.openapi`) and
the console proxy enforces the roles it declares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from mepl.admin import schemas as s

ROLE_ORDER = {"viewer": 1, "operator": 2, "admin": 3}
"""The ordered roles: a higher role may do what a lower one may."""

ADMIN_OPCODES = {"wipe": "admin", "rotate_key": "admin", "set_restrictions": "admin",
                 "set_geofence": "admin", "set_trusted_numbers": "admin"}
"""Commands only an admin may send (destructive, key and policy commands)."""


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, JSON schema and meaning."""

    name: str
    schema: s.Schema
    description: str


@dataclass(frozen=True)
class RoleByBody:
    """The role a request needs by the value of one body field (others: the route's)."""

    field: str
    roles: Mapping[str, str]


@dataclass(frozen=True)
class Route:
    """One operation of the admin API."""

    method: str
    path: str
    name: str
    summary: str
    role: str
    audit_action: str
    responses: Mapping[int, s.Schema]
    query: tuple[Param, ...] = ()
    request: s.Schema | None = None
    role_by_body: RoleByBody | None = None
    proxy_too: bool = False
    stream: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters (URL-decoded) when ``path`` is this route's, else None."""
        found = self.pattern.match(path)
        if found is None:
            return None
        return {k: unquote(v) for k, v in found.groupdict().items()}

    def role_for(self, body: Any) -> str:
        """The role this request needs, given its parsed body."""
        if self.role_by_body is not None and isinstance(body, dict):
            value = body.get(self.role_by_body.field)
            if isinstance(value, str):
                return self.role_by_body.roles.get(value.lower(), self.role)
        return self.role

    def allows(self, role: str, body: Any = None) -> bool:
        """Whether ``role`` may make this request (with this body)."""
        needed = self.role_for(body)
        if role == "proxy" or needed == "proxy":
            return role == needed or (role == "proxy" and self.proxy_too)
        return ROLE_ORDER.get(role, 0) >= ROLE_ORDER[needed]


def _limit() -> tuple[Param, Param]:
    return (Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                  "at most this many items (default 50, at most 500)"),
            Param("after", {"type": "string"}, "the cursor of the next page (``next``)"))


def _errors(*statuses: int) -> dict[int, s.Schema]:
    return {status: s.ERROR for status in (400, 401, 403, 404, 409, 500, 503, *statuses)}


_DEVICE_Q = (Param("q", {"type": "string"},
                   "an IMEI, IMSI or phone number (E.164) prefix"),
             Param("group", {"type": "string"}, "only members of this group"),
             Param("state", {"type": "string"}, "only devices in this state"))
_REGION = Param("region", {"type": "string", "pattern": "^[A-Za-z]{2}$"},
                "region for a national phone number (ISO 3166, default: the server's)")
_ID = "{id}"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/openapi.json", "getOpenapi", "this API's OpenAPI document",
          "viewer", "openapi.get", {200: s.ANY_OBJECT, **_errors()}, proxy_too=True),
    Route("GET", "/v1/whoami", "whoami", "who the proxy says you are", "viewer",
          "whoami", {200: s.WHOAMI, **_errors()}),
    Route("GET", "/v1/devices", "listDevices", "a page of devices", "viewer",
          "devices.list", {200: s.page(s.DEVICE), **_errors()},
          query=(*_DEVICE_Q, *_limit())),
    Route("POST", "/v1/devices", "enrolDevice",
          "register a device (and enrol its public key)", "admin", "device.enrol",
          {201: s.obj({"device": s.DEVICE}), **_errors()}, request=s.ENROL),
    Route("POST", "/v1/devices/retire", "retireDevices",
          "retire many devices (two-person approval from approvals.retire_min)", "admin",
          "devices.retire",
          {200: s.obj({"retired": {"type": "array", "items": s.STRING}}),
           202: s.APPROVAL_PENDING, **_errors()}, request=s.RETIRE_MANY),
    Route("GET", "/v1/devices/{identifier}", "getDevice",
          "one device by IMEI, IMSI or phone number, with its identity history", "viewer",
          "device.show", {200: s.DEVICE_DETAILS, **_errors()}, query=(_REGION,)),
    Route("POST", "/v1/devices/{identifier}/retire", "retireDevice", "retire one device",
          "admin", "device.retire",
          {200: s.obj({"retired": {"type": "array", "items": s.STRING}}), **_errors()},
          query=(_REGION,), request=s.EMPTY),
    Route("GET", "/v1/devices/{identifier}/identity", "getDeviceIdentity",
          "a device's identity history (IMSI and number changes)", "viewer",
          "device.identity", {200: s.obj({"imei": s.STRING, "items": {
              "type": "array", "items": s.IDENTITY_CHANGE}}), **_errors()},
          query=(_REGION,)),
    Route("GET", "/v1/devices/{identifier}/messages", "getDeviceMessages",
          "a device's messages both ways, decoded, newest first", "viewer",
          "device.messages", {200: s.MESSAGE_PAGE, **_errors()},
          query=(_REGION, *_limit())),
    Route("GET", "/v1/devices/{identifier}/commands", "getDeviceCommands",
          "a device's commands, newest first", "viewer", "device.commands",
          {200: s.page(s.COMMAND), **_errors()}, query=(_REGION, *_limit())),
    Route("GET", "/v1/groups", "listGroups", "every group with its member count", "viewer",
          "groups.list", {200: s.page(s.GROUP), **_errors()}),
    Route("POST", "/v1/groups", "createGroup", "create a group (with members)", "admin",
          "group.add", {201: s.obj({"group": s.GROUP}), **_errors()}, request=s.NEW_GROUP),
    Route("GET", "/v1/groups/{name}", "getGroup", "a group and its first members",
          "viewer", "group.show", {200: s.GROUP_DETAILS, **_errors()},
          query=(Param("limit", {"type": "integer", "minimum": 0, "maximum": 500,
                                 "default": 100}, "at most this many members"),)),
    Route("POST", "/v1/groups/{name}/members", "changeGroupMembers",
          "add and remove members", "admin", "group.members",
          {200: s.obj({"added": s.INT, "removed": s.INT}), **_errors()}, request=s.MEMBERS),
    Route("POST", "/v1/commands", "sendCommand",
          "queue a command for a device, a group or the fleet (two-person approval for "
          "wipe, group or fleet lock and key rotation)", "operator", "command.send",
          {201: s.obj({"queued": s.QUEUED}), 202: s.APPROVAL_PENDING, **_errors()},
          request=s.SEND, role_by_body=RoleByBody("command", ADMIN_OPCODES)),
    Route("GET", "/v1/commands", "listCommands", "commands, newest first", "viewer",
          "commands.list", {200: s.page(s.COMMAND), **_errors()},
          query=(Param("device", {"type": "string"}, "only this device's (any identifier)"),
                 Param("state", {"type": "string"}, "only in this state"),
                 Param("fanout", {"type": "integer", "minimum": 1}, "only this fan-out's"),
                 *_limit())),
    Route("GET", f"/v1/commands/{_ID}", "getCommand",
          "a command and its full event history", "viewer", "command.show",
          {200: s.COMMAND_DETAILS, **_errors()}),
    Route("POST", f"/v1/commands/{_ID}/cancel", "cancelCommand",
          "withdraw a command still queued", "operator", "command.cancel",
          {200: s.obj({"cancelled": s.obj({"command_id": s.INT, "opcode": s.STRING,
                                           "imei": s.STRING})}), **_errors()},
          request=s.EMPTY),
    Route("GET", f"/v1/fanouts/{_ID}", "getFanout",
          "a fan-out's progress: commands per state, total, done, failed", "viewer",
          "fanout.show", {200: s.FANOUT, **_errors()}),
    Route("GET", "/v1/pdus", "listPdus",
          "a link's raw SMPP PDUs in a time window, or one stored SMS's, oldest first",
          "viewer", "pdus.list", {200: s.PDU_PAGE, **_errors()},
          query=(Param("link", {"type": "string"}, "the SMPP link"),
                 Param("message", {"type": "integer", "minimum": 1},
                       "the PDUs of this stored SMS (its link, two minutes either side)"),
                 Param("since", {"type": "string", "format": "date-time"},
                       "from this time (default: ten minutes before until)"),
                 Param("until", {"type": "string", "format": "date-time"},
                       "up to this time, excluded (default: since + ten minutes, or now)"),
                 Param("direction", {"type": "string", "enum": ["in", "out"]},
                       "only received or sent"),
                 Param("command", {"type": "string"}, "only this command, e.g. deliver_sm"),
                 Param("smsc_id", {"type": "string"},
                       "the submit_sm_resp giving this SMSC id and the receipts reporting it"),
                 Param("reference", {"type": "string"}, "this reference, e.g. cmd-42"),
                 Param("address", {"type": "string"},
                       "a submit_sm or deliver_sm to or from this number (by digits)"),
                 *_limit())),
    Route("GET", "/v1/alerts", "listAlerts", "alerts and security events, newest first",
          "viewer", "alerts.list", {200: s.page(s.ALERT), **_errors()},
          query=(Param("device", {"type": "string"}, "only this device's (any identifier)"),
                 Param("since", {"type": "string", "format": "date-time"},
                       "only at or after this time (ISO 8601)"), *_limit())),
    Route("GET", "/v1/approvals", "listApprovals", "approvals, newest first", "viewer",
          "approvals.list", {200: s.page(s.APPROVAL), **_errors()},
          query=(Param("status", {"type": "string", "enum": [
              "pending", "approved", "rejected", "expired"]}, "only in this status"),
              *_limit())),
    Route("GET", f"/v1/approvals/{_ID}", "getApproval", "one approval", "viewer",
          "approval.show", {200: s.obj({"approval": s.APPROVAL}), **_errors()}),
    Route("POST", f"/v1/approvals/{_ID}/approve", "approve",
          "approve another admin's request: it is carried out now", "admin",
          "approval.approve", {200: s.obj({"approval": s.APPROVAL}), **_errors()},
          request=s.EMPTY),
    Route("POST", f"/v1/approvals/{_ID}/reject", "reject",
          "reject another admin's request", "admin", "approval.reject",
          {200: s.obj({"approval": s.APPROVAL}), **_errors()}, request=s.REASON),
    Route("GET", "/v1/audit", "listAudit", "the audit trail, newest first", "admin",
          "audit.list", {200: s.page(s.AUDIT_ROW), **_errors()},
          query=(Param("actor", {"type": "string"}, "only this actor"),
                 Param("action", {"type": "string"}, "only this action"), *_limit())),
    Route("GET", "/v1/events", "events",
          "live events (server-sent events): command transitions and alerts", "viewer",
          "events.watch", {200: {"type": "string"}, **_errors()},
          query=(Param("device", {"type": "string"}, "only this device's (any identifier)"),),
          stream=True),
    Route("GET", "/v1/keys", "getKeys", "server keys and devices per key", "viewer",
          "keys.show", {200: s.KEYS, **_errors()}),
    Route("POST", "/v1/keys/rotate", "rotateKeys",
          "server key rotation (two-person approval keys.rotate by default)", "admin",
          "keys.rotate", {201: s.ROTATION, 202: s.APPROVAL_PENDING, **_errors()},
          request=s.ROTATE),
    Route("POST", "/v1/proxy/audit", "proxyAudit",
          "record a refusal only the proxy saw (TLS, role, rate limit)", "proxy",
          "proxy.refused", {201: s.RECORDED, **_errors()}, request=s.PROXY_AUDIT),
)


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for ``method`` and ``path`` with its path parameters, or None.

    A path some route has but not with this method is None too (answered 404).
    """
    for route in ROUTES:
        if route.method != method:
            continue
        params = route.match(path)
        if params is not None:
            return route, params
    return None
