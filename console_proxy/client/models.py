"""Typed results of the admin API's routes.

Each result is a frozen dataclass with the fields a console shows, parsed
from the JSON the contract describes, and ``raw``: the decoded JSON object
as it came (for ``--json`` output, and for fields a newer server adds).
Parsing is lenient where the contract leaves a shape open (a missing
optional field is None), strict where it does not (a list answer must be
``{"items": [...], "next": ...}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from console_proxy.client.errors import ProtocolError

T = TypeVar("T")
JsonObject = dict[str, Any]


def _obj(value: Any, what: str) -> JsonObject:
    if not isinstance(value, dict):
        raise ProtocolError(f"the server's {what} is not a JSON object",
                            "check that --proxy points at the MEPL console proxy")
    return value


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _unwrap(data: JsonObject, key: str) -> JsonObject:
    """``data[key]`` when the object is wrapped as ``{key: {...}}``, else ``data``."""
    inner = data.get(key)
    return inner if isinstance(inner, dict) else data


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list route: ``items``, and ``next``, the next page's cursor (None: last)."""

    items: tuple[T, ...]
    next: str | None
    raw: JsonObject = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def parse(cls, data: Any, item: Callable[[JsonObject], T], what: str) -> Page[T]:
        """Parse ``{"items": [...], "next": cursor|null}`` with ``item`` for each element."""
        body = _obj(data, what)
        items = body.get("items")
        if not isinstance(items, list):
            raise ProtocolError(f"the server's {what} has no \"items\" list")
        cursor = body.get("next")
        return cls(tuple(item(_obj(i, what)) for i in items),
                   None if cursor is None else str(cursor), body)


@dataclass(frozen=True)
class WhoAmI:
    """The admin as the proxy and the API see them (from the proxy's assertion)."""

    name: str
    role: str
    fingerprint: str
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> WhoAmI:
        """From ``{"name", "role", "fingerprint"}``."""
        body = _obj(data, "whoami answer")
        return cls(str(body.get("name", "")), str(body.get("role", "")),
                   str(body.get("fingerprint", "")), body)


@dataclass(frozen=True)
class Device:
    """A device: its identifiers, state, groups and when it was last heard from."""

    imei: str
    imsi: str | None
    msisdn: str | None
    state: str
    groups: tuple[str, ...]
    last_seen_at: str | None
    key_id: int | None
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> Device:
        """From a device object (or ``{"device": {...}}``)."""
        body = _unwrap(_obj(data, "device"), "device")
        groups = body.get("groups")
        return cls(str(body.get("imei", "")), _str(body, "imsi"), _str(body, "msisdn"),
                   str(body.get("state", "")),
                   tuple(str(g) for g in groups) if isinstance(groups, list) else (),
                   _str(body, "last_seen_at"), _int(body, "key_id"), body)


@dataclass(frozen=True)
class Group:
    """A group of devices."""

    name: str
    members: int | None
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> Group:
        """From a group object (``members`` a count or a list)."""
        body = _unwrap(_obj(data, "group"), "group")
        members = body.get("members", body.get("devices"))
        count = len(members) if isinstance(members, list) else _int(body, "members")
        return cls(str(body.get("name", "")), count, body)


@dataclass(frozen=True)
class Queued:
    """A command queued (201): for one device (``command_id``) or a fan-out (``fanout_id``)."""

    command: str
    target: Any
    count: int
    command_id: int | None
    fanout_id: int | None
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> Queued:
        """From ``{"queued": {...}}`` or the inner object."""
        body = _unwrap(_obj(data, "queued answer"), "queued")
        return cls(str(body.get("command", "")), body.get("target"),
                   _int(body, "count") or 0, _int(body, "command_id"),
                   _int(body, "fanout_id"), body)


@dataclass(frozen=True)
class Approval:
    """A two-person approval request and, once decided, who decided and what it queued."""

    id: str
    action: str
    status: str
    request: JsonObject
    requested_by: str
    requested_at: str | None
    expires_at: str | None
    decided_by: str | None
    decided_at: str | None
    result: Queued | None
    raw: JsonObject = field(default_factory=dict, repr=False)
    """``result``: the queued command(s) once a command's approval was executed (other
    actions' results, such as ``retired`` or ``rotation``, are in ``raw["result"]``)."""

    @classmethod
    def parse(cls, data: Any) -> Approval:
        """From an approval object (or ``{"approval": {...}}``)."""
        body = _unwrap(_obj(data, "approval"), "approval")
        request = body.get("request")
        result = body.get("result")
        return cls(str(body.get("id", "")), str(body.get("action", "")),
                   str(body.get("status", "")),
                   request if isinstance(request, dict) else {},
                   _person(body.get("requested_by")) or "",
                   _str(body, "requested_at"), _str(body, "expires_at"),
                   _person(body.get("decided_by")), _str(body, "decided_at"),
                   Queued.parse(result) if isinstance(result, dict) and (
                       "queued" in result or "command" in result) else None, body)


def _person(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("name", ""))
    return None if value is None else str(value)


@dataclass(frozen=True)
class SendResult:
    """What ``POST /v1/commands`` did: queued (201) or waiting for a second admin (202).

    Exactly one of ``queued`` and ``approval`` is set; ``request_id`` is the
    proxy's ``X-Request-Id`` of the answer.
    """

    queued: Queued | None
    approval: Approval | None
    request_id: str | None = None

    @property
    def pending(self) -> bool:
        """True when a second admin must approve before anything is queued."""
        return self.approval is not None


@dataclass(frozen=True)
class CommandEvent:
    """One state change in a command's history."""

    at: str | None
    from_state: str | None
    to_state: str | None
    event: str
    actor: str | None
    details: JsonObject
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> CommandEvent:
        """From ``{"at", "from", "to", "event", "actor", "details"}``."""
        body = _obj(data, "command event")
        details = body.get("details", body.get("note"))
        return cls(_str(body, "at"), _str(body, "from"), _str(body, "to"),
                   str(body.get("event", "")), _str(body, "actor"),
                   details if isinstance(details, dict) else {}, body)


@dataclass(frozen=True)
class Command:
    """A command: what, for which device, its state, and (from ``get_command``) its history."""

    id: int
    opcode: str
    state: str
    device: str | None
    priority: int | None
    attempts: int | None
    requested_by: str | None
    created_at: str | None
    history: tuple[CommandEvent, ...] = ()
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> Command:
        """From a command object (or ``{"command": {...}, "history": [...]}``)."""
        outer = _obj(data, "command")
        body = _unwrap(outer, "command")
        history = outer.get("history", body.get("history"))
        device = next((v for v in (outer.get("imei"), body.get("imei"), body.get("device"),
                                   body.get("device_id")) if v is not None), None)
        return cls(_int(body, "id") or 0, str(body.get("opcode", "")),
                   str(body.get("state", "")), None if device is None else str(device),
                   _int(body, "priority"), _int(body, "attempts"), _str(body, "requested_by"),
                   _str(body, "created_at"),
                   tuple(CommandEvent.parse(e) for e in history)
                   if isinstance(history, list) else (), outer)


@dataclass(frozen=True)
class Message:
    """One message of a device's history, decoded: which way, what, and its verdict."""

    id: int | None
    at: str | None
    direction: str
    channel: str | None
    kind: str | None
    summary: str
    verdict: str | None
    command_id: int | None
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> Message:
        """From a decoded message object (as ``mepl messages list --json``)."""
        body = _obj(data, "message")
        return cls(_int(body, "id"), _str(body, "at"), str(body.get("direction", "")),
                   _str(body, "channel"), _str(body, "kind"), str(body.get("summary", "")),
                   _str(body, "verdict"), _int(body, "command_id"), body)


@dataclass(frozen=True)
class Alert:
    """An alert or security event about a device (SIM swap, lost, left the territory...)."""

    id: int | None
    at: str | None
    imei: str | None
    kind: str
    details: JsonObject
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> Alert:
        """From ``{"id", "imei", "kind", "at", "details"}``."""
        body = _obj(data, "alert")
        details = body.get("details")
        imei = body.get("imei", body.get("device"))
        return cls(_int(body, "id"), _str(body, "at"), None if imei is None else str(imei),
                   str(body.get("kind", "")), details if isinstance(details, dict) else {},
                   body)


@dataclass(frozen=True)
class Pdu:
    """One raw SMPP PDU of a link, decoded as far as its bytes allow (``GET /v1/pdus``)."""

    at: str | None
    direction: str
    command: str
    sequence: int | None
    status: str | None
    reference: str | None
    smsc_message_id: str | None
    receipt_for: str | None
    octets: int | None
    message_id: int | None
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> Pdu:
        """From ``{"at", "direction", "command", "sequence", "status", ...}`` (addresses and
        hex stay in ``raw``)."""
        body = _obj(data, "PDU")
        return cls(_str(body, "at"), str(body.get("direction", "")),
                   str(body.get("command", "")), _int(body, "sequence"), _str(body, "status"),
                   _str(body, "reference"), _str(body, "smsc_message_id"),
                   _str(body, "receipt_for"), _int(body, "octets"), _int(body, "message_id"),
                   body)


@dataclass(frozen=True)
class AuditEntry:
    """One audit row: who did what to which target, and how it ended."""

    id: int | None
    at: str | None
    actor: str
    role: str | None
    action: str
    target: str | None
    details: JsonObject
    raw: JsonObject = field(default_factory=dict, repr=False)

    @property
    def outcome(self) -> str:
        """``ok``, ``pending``, ``refused:<reason>`` or ``error:<code>``.

        Request rows say it in ``details.outcome``; the rows a use case writes
        for what it did (``command.send``, ``device.update``...) say nothing,
        because they are written in the transaction of the action and exist
        only if it was done: their outcome is ``ok``.
        """
        value = self.details.get("outcome")
        return "ok" if value is None else str(value)

    @classmethod
    def parse(cls, data: Any) -> AuditEntry:
        """From an audit row object."""
        body = _obj(data, "audit entry")
        details = body.get("details")
        return cls(_int(body, "id"), _str(body, "at"), str(body.get("actor", "")),
                   _str(body, "role"), str(body.get("action", "")), _str(body, "target"),
                   details if isinstance(details, dict) else {}, body)


@dataclass(frozen=True)
class FanoutProgress:
    """Progress of a fan-out: commands per state, total, done and failed."""

    id: int
    total: int
    done: int
    failed: int
    by_state: dict[str, int]
    raw: JsonObject = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: Any) -> FanoutProgress:
        """From ``{"id", "total", "done", "failed", "by_state"|"counts"}``."""
        body = _unwrap(_obj(data, "fan-out"), "fanout")
        counts = body.get("by_state", body.get("counts", body.get("states")))
        return cls(_int(body, "id") or 0, _int(body, "total") or 0, _int(body, "done") or 0,
                   _int(body, "failed") or 0,
                   {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}
                   if isinstance(counts, dict) else {}, body)


@dataclass(frozen=True)
class Event:
    """One server-sent event of ``GET /v1/events``.

    ``id``: the resume id (echo it as ``Last-Event-ID``); ``event``:
    ``command`` or ``alert``; ``data``: the decoded JSON payload.
    """

    id: str | None
    event: str
    data: JsonObject

    @property
    def is_alert(self) -> bool:
        """True for an ``alert`` event (security events: SIM swap, lost...)."""
        return self.event == "alert"
