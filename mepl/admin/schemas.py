"""JSON Schemas (2020-12, as OpenAPI 3.1 uses) of the admin API's bodies.

The route table (:mod:`mepl.admin.routes`) refers to these; the server
validates request bodies against them and the tests validate every answer.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def nullable(kind: str) -> Schema:
    """``kind`` or null."""
    return {"type": [kind, "null"]}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, *,
        closed: bool = False) -> Schema:
    """An object with ``required`` and ``optional`` properties (``closed``: no others)."""
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})},
                      "required": sorted(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def page(item: Schema) -> Schema:
    """A list page: ``{"items": [...], "next": cursor or null}``."""
    return obj({"items": {"type": "array", "items": item}, "next": nullable("string")})


STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
TIME: Schema = {"type": "string", "format": "date-time"}
TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}
ANY_OBJECT: Schema = {"type": "object"}
IDENTIFIERS: Schema = {"type": "array", "items": {"type": "string", "minLength": 1},
                       "maxItems": 10000}

ERROR: Schema = obj({"error": obj({"code": {"type": "string", "enum": [
    "invalid_request", "unauthenticated", "forbidden", "not_found", "conflict",
    "rate_limited", "audit_unavailable", "upstream_unavailable", "internal"]},
    "message": STRING, "hint": STRING}, {"field": STRING})})

DEVICE: Schema = obj({
    "id": INT, "imei": STRING, "imsi": nullable("string"), "msisdn": nullable("string"),
    "state": {"type": "string", "enum": ["unprovisioned", "provisioned", "locked", "lost",
                                         "retired"]},
    "key_id": nullable("integer"), "public_key": nullable("string"),
    "counter_hwm": INT, "last_seen_at": TIME_OR_NULL, "created_at": TIME,
    "updated_at": TIME, "groups": {"type": "array", "items": STRING}})

IDENTITY_CHANGE: Schema = obj({"kind": STRING, "old": nullable("string"),
                               "new": nullable("string"), "changed_at": TIME,
                               "source": STRING})

DEVICE_DETAILS: Schema = {**DEVICE, "properties": {
    **DEVICE["properties"],
    "identity_history": {"type": "array", "items": IDENTITY_CHANGE}},
    "required": sorted([*DEVICE["required"], "identity_history"])}

GROUP: Schema = obj({"id": INT, "name": STRING, "description": STRING,
                     "created_at": TIME, "members": INT})

GROUP_DETAILS: Schema = obj({"group": GROUP, "members": {"type": "array", "items": DEVICE}})

COMMAND_STATE: Schema = {"type": "string", "enum": [
    "queued", "sending", "sent", "delivered", "done", "refused", "failed", "expired",
    "cancelled"]}

COMMAND: Schema = obj({
    "id": INT, "device_id": INT, "opcode": STRING, "arguments": ANY_OBJECT,
    "state": COMMAND_STATE, "priority": INT, "counter": nullable("integer"),
    "key_id": nullable("integer"), "requested_by": STRING, "created_at": TIME,
    "not_after": TIME, "attempts": INT, "last_error": nullable("string"),
    "result": nullable("object"), "frame": nullable("string")})

COMMAND_EVENT: Schema = obj({"at": TIME, "from": nullable("string"), "to": STRING,
                             "event": STRING, "actor": STRING, "details": ANY_OBJECT})

COMMAND_DETAILS: Schema = obj({"command": COMMAND, "imei": STRING,
                               "history": {"type": "array", "items": COMMAND_EVENT}})

QUEUED: Schema = obj({"command": STRING, "target": STRING, "count": INT,
                      "command_id": nullable("integer"), "fanout_id": nullable("integer")},
                     {"priority": INT, "left_out": INT})

PERSON: Schema = obj({"name": STRING, "fingerprint": STRING})

APPROVAL: Schema = obj({
    "id": INT,
    "action": {"type": "string", "enum": ["command.wipe", "command.lock.fleet",
                                          "command.lock.group", "keys.rotate",
                                          "devices.retire"]},
    "request": ANY_OBJECT, "target": nullable("string"), "requested_by": PERSON,
    "requested_at": TIME, "expires_at": TIME,
    "status": {"type": "string", "enum": ["pending", "approved", "rejected", "expired"]},
    "decided_by": {"anyOf": [PERSON, {"type": "null"}]}, "decided_at": TIME_OR_NULL,
    "reason": nullable("string"), "result": nullable("object")})

APPROVAL_PENDING: Schema = obj({"approval": APPROVAL})

FANOUT: Schema = obj({
    "id": INT, "opcode": STRING, "target": STRING, "count": INT, "requested_by": STRING,
    "created_at": TIME, "states": {"type": "object", "additionalProperties": INT},
    "total": INT, "done": INT, "failed": INT, "finished": INT})

ALERT: Schema = obj({"id": INT, "imei": nullable("string"), "kind": STRING, "at": TIME,
                     "message_id": nullable("integer"), "details": ANY_OBJECT})

AUDIT_ROW: Schema = obj({"id": INT, "at": TIME, "actor": STRING, "role": STRING,
                         "action": STRING, "target": nullable("string"),
                         "details": ANY_OBJECT})

MESSAGE: Schema = obj({"id": INT, "at": TIME, "direction": STRING, "channel": STRING,
                       "kind": STRING, "summary": STRING, "verdict": nullable("string"),
                       "details": ANY_OBJECT})

MESSAGE_PAGE: Schema = obj({"device": DEVICE, "items": {"type": "array", "items": MESSAGE},
                            "next": nullable("string")})

PDU: Schema = obj({
    "cursor": STRING, "at": TIME, "direction": {"type": "string", "enum": ["in", "out"]},
    "link": STRING, "message_id": INT, "command": STRING, "sequence": nullable("integer"),
    "status": nullable("string"), "reference": nullable("string"),
    "smsc_message_id": nullable("string"), "receipt_for": nullable("string"),
    "source": nullable("string"), "destination": nullable("string"), "octets": INT,
    "note": nullable("string"), "hex": STRING})

PDU_PAGE: Schema = obj({"link": STRING, "since": TIME, "until": TIME, "rows_read": INT,
                        "items": {"type": "array", "items": PDU},
                        "next": nullable("string")},
                       {"other_links": {"type": "array", "items": STRING}})

WHOAMI: Schema = obj({"name": STRING, "role": STRING, "fingerprint": STRING})

KEYS: Schema = obj({"active_key_id": nullable("integer"),
                    "keys": {"type": "array", "items": obj({"key_id": INT, "devices": INT})},
                    "unpinned": INT})

ROTATION: Schema = obj({"rotation": obj({
    "key_id": INT, "previous_key_id": INT, "pinned": INT, "queued": nullable("integer"),
    "not_after": TIME_OR_NULL})})

# ------------------------------------------------------------------ request bodies
ENROL: Schema = obj({"imei": {"type": "string", "minLength": 1}}, {
    "imsi": STRING, "msisdn": STRING, "group": STRING,
    "public_key": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}, closed=True)

RETIRE_MANY: Schema = obj({"devices": {**IDENTIFIERS, "minItems": 1}}, closed=True)

NEW_GROUP: Schema = obj({"name": {"type": "string", "minLength": 1}},
                        {"description": STRING, "devices": IDENTIFIERS}, closed=True)

MEMBERS: Schema = obj({}, {"add": IDENTIFIERS, "remove": IDENTIFIERS}, closed=True)

TARGET: Schema = {"oneOf": [
    obj({"device": {"type": "string", "minLength": 1}}, closed=True),
    obj({"group": {"type": "string", "minLength": 1}}, closed=True),
    obj({"all": {"const": True}}, closed=True)]}

SEND: Schema = obj({
    "command": {"type": "string", "minLength": 1},
    "target": TARGET}, {
    "args": {"type": "object", "additionalProperties": {"type": ["string", "number",
                                                                 "boolean"]}},
    "priority": {"type": "string", "enum": ["security", "normal", "bulk"]},
    "valid_for_s": {"type": "integer", "minimum": 1, "maximum": 30 * 86400},
    "confirm": {"type": "boolean"}}, closed=True)

REASON: Schema = obj({}, {"reason": {"type": "string", "maxLength": 1000}}, closed=True)

EMPTY: Schema = obj({}, closed=True)

ROTATE: Schema = obj({}, {"valid_days": {"type": "integer", "minimum": 1,
                                         "maximum": 365}}, closed=True)

PROXY_AUDIT: Schema = obj({
    "event": {"type": "string", "enum": ["tls_refused", "role_refused", "rate_limited"]},
    "reason": STRING, "source": STRING}, {
    "subject": nullable("string"), "fingerprint": nullable("string"),
    "method": nullable("string"), "path": nullable("string")}, closed=True)

RECORDED: Schema = obj({"recorded": {"type": "boolean"}})
