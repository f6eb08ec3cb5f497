"""The handlers: one thin adapter per route, from a :class:`~mepl.admin.api.Call` to a use case.

Each ``*_txn(conn, call)`` runs inside the request's transaction (the
request's audit row is appended to it by :mod:`mepl.admin.api`) and returns
an :class:`~mepl.admin.api.Answer`.  The rules live in :mod:`mepl.app`; here
only JSON is turned into arguments and results into JSON.  Requests that
need two-person approval become a pending approval (202), carried out by
:func:`approve_txn` later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool

from blobstore.approvals import get_approval_txn
from blobstore.devices import find_device_txn
from blobstore.server_keys import pin_unpinned_txn
from mepl.admin.api import Answer, Call, Handler, OnBehalf
from mepl.admin.errors import ApiError
from mepl.admin.routes import ROLE_ORDER
from mepl.app import approvals as approval_cases
from mepl.app import commands as command_cases
from mepl.app import devices as device_cases
from mepl.app import groups as group_cases
from mepl.app import history
from mepl.app.approvals import Admin, approval_json
from mepl.app.commands import Approved, Queued, Target, command_json, event_json
from mepl.app.context import Actor
from mepl.app.errors import Conflict, InvalidRequest, store_errors
from mepl.app.keys import DEFAULT_ROTATION_VALIDITY, announce_rotation_txn, key_usage_txn
from signing.keys import VerifyKey
from signing.keystore import ServerKeyStore


@dataclass
class KeyRotator:
    """The server key store as the API uses it (creating a key is blocking file work)."""

    store: ServerKeyStore
    passphrase: bytes | None

    def active_key_id(self) -> int:
        """The active key's id."""
        return self.store.load().active_key_id

    def rotate(self, now: datetime) -> tuple[VerifyKey, int]:
        """Create the next key; return it and the id of the key active until now."""
        previous = self.store.load().active_key_id
        return self.store.rotate(now=now, passphrase=self.passphrase), previous


# ------------------------------------------------------------------ helpers
def _admin(call: Call) -> Admin:
    return Admin(call.actor, call.identity.fingerprint)


def _page(items: list[Any], limit: int, cursor: Callable[[Any], Any]) -> str | None:
    return str(cursor(items[-1])) if len(items) == limit and items else None


def _after(call: Call) -> int | None:
    after = call.query.get("after")
    if after is None:
        return None
    try:
        return int(after)
    except ValueError:
        raise ApiError("invalid_request", "after must be a cursor this API gave",
                       field="after") from None


def _region(call: Call) -> str | None:
    region = call.query.get("region")
    return str(region).upper() if region else call.api.region


def _int_param(call: Call, name: str = "id") -> int:
    try:
        return int(call.params[name])
    except ValueError:
        raise ApiError("not_found", f"no such {name} {call.params[name]!r}") from None


# ------------------------------------------------------------------ meta
def openapi_txn(conn: Connection, call: Call) -> Answer:
    """The OpenAPI document."""
    from mepl.admin.openapi import document

    return Answer(200, document())


def whoami_txn(conn: Connection, call: Call) -> Answer:
    """Who the proxy vouches for."""
    return Answer(200, {"name": call.identity.name, "role": call.identity.role,
                        "fingerprint": call.identity.fingerprint})


# ------------------------------------------------------------------ devices
def list_devices_txn(conn: Connection, call: Call) -> Answer:
    """A page of devices."""
    limit = call.query["limit"]
    rows = device_cases.device_page_txn(
        conn, call.actor, group=call.query.get("group"), after_id=_after(call) or 0,
        limit=limit, state=call.query.get("state"), prefix=call.query.get("q"))
    return Answer(200, {"items": [r.as_json() for r in rows],
                        "next": _page(rows, limit, lambda r: r.id)})


def get_device_txn(conn: Connection, call: Call) -> Answer:
    """One device with its identity history."""
    details = device_cases.show_device_txn(conn, call.actor, call.params["identifier"],
                                           region=_region(call))
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
        return _pending(conn, call, action, f"{len(identifiers)} devices")
    imeis = device_cases.retire_devices_txn(conn, call.actor, identifiers,
                                            region=_region(call))
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
                                           region=_region(call))
    data = details.to_json()
    return Answer(200, {"imei": details.record.imei, "items": data["identity_history"]},
                  target=details.record.imei)


def device_messages_txn(conn: Connection, call: Call) -> Answer:
    """A device's messages both ways, decoded, newest first."""
    limit = call.query["limit"]
    with store_errors(field="identifier"):
        page = history.message_history_txn(conn, call.params["identifier"],
                                           default_region=_region(call),
                                           before_id=_after(call), limit=limit)
    return Answer(200, {"device": page.device.as_json(),
                        "items": [m.to_json() for m in page.messages],
                        "next": None if page.next_before_id is None
                        else str(page.next_before_id)}, target=page.device.imei)


def device_commands_txn(conn: Connection, call: Call) -> Answer:
    """A device's commands, newest first."""
    limit = call.query["limit"]
    rows = command_cases.command_page_txn(conn, call.actor, device=call.params["identifier"],
                                          before_id=_after(call), limit=limit,
                                          region=_region(call))
    return Answer(200, {"items": [command_json(r) for r in rows],
                        "next": _page(rows, limit, lambda r: r.id)})


# ------------------------------------------------------------------ groups
def list_groups_txn(conn: Connection, call: Call) -> Answer:
    """Every group."""
    rows = group_cases.list_groups_txn(conn, call.actor)
    return Answer(200, {"items": [_group_json(g) for g in rows], "next": None})


def _group_json(group: Any) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "description": group.description,
            "created_at": group.created_at.isoformat(), "members": group.members}


def get_group_txn(conn: Connection, call: Call) -> Answer:
    """A group and its first members."""
    details = group_cases.show_group_txn(conn, call.actor, call.params["name"],
                                         limit=call.query["limit"])
    return Answer(200, {"group": _group_json(details.group),
                        "members": [m.as_json() for m in details.members]},
                  target=details.group.name)


def create_group_txn(conn: Connection, call: Call) -> Answer:
    """Create a group, with members."""
    name = call.body["name"]
    group_cases.create_group_txn(conn, call.actor, name, call.body.get("description", ""))
    if call.body.get("devices"):
        group_cases.change_members_txn(conn, call.actor, name, call.body["devices"],
                                       adding=True, region=call.api.region)
    group = group_cases.show_group_txn(conn, call.actor, name, limit=0).group
    return Answer(201, {"group": _group_json(group)}, target=name)


def change_members_txn(conn: Connection, call: Call) -> Answer:
    """Add and remove members."""
    name, added, removed = call.params["name"], 0, 0
    if call.body.get("add"):
        added = group_cases.change_members_txn(conn, call.actor, name, call.body["add"],
                                               adding=True, region=call.api.region)
    if call.body.get("remove"):
        removed = group_cases.change_members_txn(conn, call.actor, name,
                                                 call.body["remove"], adding=False,
                                                 region=call.api.region)
    return Answer(200, {"added": added, "removed": removed}, target=name)


# ------------------------------------------------------------------ commands
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


def _send(conn: Connection, requester: Actor, body: Mapping[str, Any], now: datetime,
          region: str | None, approved: Approved | None = None) -> Queued:
    return command_cases.queue_command_txn(
        conn, requester, _target(body), str(body["command"]).lower(), now=now,
        arguments=_arguments(body), priority=body.get("priority", "normal"),
        valid_for=timedelta(seconds=body.get("valid_for_s", 86400)), region=region,
        confirm=bool(body.get("confirm", False)), approved=approved)


def _pending(conn: Connection, call: Call, action: str, target: str | None) -> Answer:
    record = approval_cases.request_approval_txn(
        conn, _admin(call), action=action, request=call.body or {}, target=target,
        now=call.now, ttl=timedelta(seconds=call.api.approvals.ttl_s))
    return Answer(202, {"approval": approval_json(record)}, target=target,
                  outcome="pending", details={"approval": record.id})


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
        return _pending(conn, call, action, _target_label(call.body))
    queued = _send(conn, call.actor, call.body, call.now, call.api.region)
    return Answer(201, {"queued": queued_json(queued)}, target=queued.target,
                  details={"fanout": queued.fanout_id} if queued.fanout_id else {})


def _check_send(conn: Connection, call: Call) -> None:
    """Run the use case in a savepoint and undo it: its refusals, without its effect."""
    savepoint = conn.begin_nested()
    try:
        _send(conn, call.actor, {**call.body, "confirm": True}, call.now, call.api.region)
    finally:
        savepoint.rollback()


def list_commands_txn(conn: Connection, call: Call) -> Answer:
    """Commands, newest first."""
    limit = call.query["limit"]
    rows = command_cases.command_page_txn(
        conn, call.actor, device=call.query.get("device"), state=call.query.get("state"),
        fanout=call.query.get("fanout"), before_id=_after(call), limit=limit,
        region=call.api.region)
    return Answer(200, {"items": [command_json(r) for r in rows],
                        "next": _page(rows, limit, lambda r: r.id)})


def get_command_txn(conn: Connection, call: Call) -> Answer:
    """A command and its history."""
    command_id = _int_param(call)
    details = command_cases.show_command_txn(conn, call.actor, command_id)
    from blobstore.devices import get_device_txn as device_by_id

    imei = device_by_id(conn, details.record.device_id).imei
    return Answer(200, {"command": command_json(details.record), "imei": imei,
                        "history": [event_json(e) for e in details.history]},
                  target=f"command:{command_id}")


def cancel_command_txn(conn: Connection, call: Call) -> Answer:
    """Withdraw a queued command."""
    command_id = _int_param(call)
    done = command_cases.cancel_command_txn(conn, call.actor, command_id, now=call.now)
    return Answer(200, {"cancelled": {"command_id": done.command_id, "opcode": done.opcode,
                                      "imei": done.imei}}, target=f"command:{command_id}")


def get_fanout_txn(conn: Connection, call: Call) -> Answer:
    """A fan-out's progress."""
    fanout_id = _int_param(call)
    progress = command_cases.fanout_progress_txn(conn, call.actor, fanout_id)
    return Answer(200, progress.to_json(), target=f"fanout:{fanout_id}")


def list_alerts_txn(conn: Connection, call: Call) -> Answer:
    """Alerts and security events, newest first."""
    limit = call.query["limit"]
    with store_errors(field="device"):
        rows = history.alerts_page_txn(conn, device=call.query.get("device"),
                                       default_region=call.api.region,
                                       since=call.query.get("since"),
                                       before_id=_after(call), limit=limit)
    return Answer(200, {"items": [a.to_json() for a in rows],
                        "next": _page(rows, limit, lambda a: a.id)})


# ------------------------------------------------------------------ approvals
def list_approvals_txn(conn: Connection, call: Call) -> Answer:
    """Approvals, newest first."""
    limit = call.query["limit"]
    rows = approval_cases.list_approvals_page_txn(
        conn, call.actor, now=call.now, status=call.query.get("status"),
        before_id=_after(call), limit=limit)
    return Answer(200, {"items": [approval_json(r) for r in rows],
                        "next": _page(rows, limit, lambda r: r.id)})


def get_approval_txn_(conn: Connection, call: Call) -> Answer:
    """One approval."""
    approval_id = _int_param(call)
    approval_cases.list_approvals_page_txn(conn, call.actor, now=call.now, limit=1)
    record = get_approval_txn(conn, approval_id)
    if record is None:
        raise ApiError("not_found", f"no approval with id {approval_id}")
    return Answer(200, {"approval": approval_json(record)},
                  target=f"approval:{approval_id}")


def _executor(call: Call) -> approval_cases.Execute:
    def execute(conn: Connection, requester: Actor, approved: Approved) -> dict[str, Any]:
        record = get_approval_txn(conn, approved.approval_id)
        assert record is not None  # locked by approve_txn
        request = dict(record.request)
        if record.action == "devices.retire":
            identifiers = request.get("devices") or [record.target]
            imeis = device_cases.retire_devices_txn(conn, requester, identifiers,
                                                    region=call.api.region,
                                                    approved_by=approved.approver)
            return {"retired": imeis}
        if "command" in request:
            return {"queued": queued_json(_send(conn, requester, request, call.now,
                                                call.api.region, approved))}
        return {"rotation": _announce(conn, requester, call, approved)}
    return execute


def approve_txn(conn: Connection, call: Call) -> Answer:
    """Approve another admin's request; it is carried out now, in this transaction."""
    approval_id = _int_param(call)
    with _own_request(approval_id, "approve"):
        decision = approval_cases.approve_txn(conn, _admin(call), approval_id, now=call.now,
                                              execute=_executor(call))
    return _decided(decision, approval_id)


@contextmanager
def _own_request(approval_id: int, verb: str) -> Iterator[None]:
    """The requester deciding their own request: a 409 that says who must act, and how."""
    try:
        yield
    except Conflict as exc:
        raise ApiError("conflict", str(exc), hint=(
            f"a different admin must {verb} it: ask another admin to run "
            f"`mdm-console approvals {verb} {approval_id}`")) from None


def _decided(decision: approval_cases.Decision, approval_id: int) -> Answer:
    target = f"approval:{approval_id}"
    if decision.refused is not None:
        error = ApiError("conflict", decision.refused, hint=(
            "it can no longer be approved: request it again (send the same request; "
            "another admin then approves the new approval in time)"))
        return Answer(409, error.body(), target=target, outcome="refused:expired")
    return Answer(200, {"approval": approval_json(decision.record)}, target=target)


def reject_txn(conn: Connection, call: Call) -> Answer:
    """Reject another admin's request."""
    approval_id = _int_param(call)
    with _own_request(approval_id, "reject"):
        decision = approval_cases.reject_txn(conn, _admin(call), approval_id, now=call.now,
                                             reason=call.body.get("reason"))
    return _decided(decision, approval_id)


# ------------------------------------------------------------------ audit, proxy
def list_audit_txn(conn: Connection, call: Call) -> Answer:
    """The audit trail, newest first."""
    limit = call.query["limit"]
    rows = history.audit_list_txn(conn, actor=call.query.get("actor"),
                                  action=call.query.get("action"), limit=limit,
                                  before_id=_after(call))
    return Answer(200, {"items": [history.audit_json(r) for r in rows],
                        "next": _page(rows, limit, lambda r: r.id)})


# TLS refusals whose certificate the proxy found chained to the admin CA: its CN names
# one of ours.  Not unknown_ca, no_certificate, a bad signature or a failed handshake.
_NAMED_TLS_REASONS = frozenset({"revoked", "expired", "not_yet_valid", "bad_role",
                                "crl_expired", "crl_missing"})


def _refused_admin(body: Mapping[str, Any]) -> OnBehalf | None:
    """The admin a proxy-reported refusal is about (its certificate's CN and OU), when the
    proxy vouches for the certificate; None otherwise (the proxy stays the actor)."""
    subject = body.get("subject")
    if not subject or (body["event"] == "tls_refused"
                       and body["reason"] not in _NAMED_TLS_REASONS):
        return None
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        return None
    names = [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    units = [str(a.value) for a in name.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if len(names) != 1 or not names[0]:
        return None
    role = units[0] if len(units) == 1 and units[0] in ROLE_ORDER else "none"
    return OnBehalf(names[0], role, body.get("fingerprint"))


def proxy_audit_txn(conn: Connection, call: Call) -> Answer:
    """Record a refusal only the proxy saw (the request's own audit row is the record).

    The row's actor is the refused admin (the certificate's CN) when the proxy names
    one it verified against the admin CA, with the proxy in ``details.via``;
    otherwise (no certificate, a foreign CA) the proxy itself."""
    body = call.body
    details = {"event": body["event"], "reason": body["reason"],
               "admin_source": body["source"], "subject": body.get("subject"),
               "admin_fingerprint": body.get("fingerprint"), "method": body.get("method"),
               "path": body.get("path")}
    return Answer(201, {"recorded": True}, target=body.get("subject") or body["source"],
                  details=details, on_behalf=_refused_admin(body))


# ------------------------------------------------------------------ keys
def _keys(call: Call) -> KeyRotator:
    keys = call.api.services.get("keys")
    if keys is None:
        raise ApiError("conflict", "this MEPL process has no server key store",
                       hint="rotate with `mepl keys rotate` on the server")
    return keys  # type: ignore[no-any-return]


def get_keys_txn(conn: Connection, call: Call) -> Answer:
    """Server keys and how many devices are on each."""
    usage = key_usage_txn(conn, call.actor)
    keys = call.api.services.get("keys")
    active = keys.active_key_id() if keys is not None else None
    return Answer(200, {"active_key_id": active,
                        "keys": [{"key_id": k, "devices": n}
                                 for k, n in sorted(usage.devices_per_key.items())],
                        "unpinned": usage.unpinned})


@dataclass(frozen=True)
class NewKey:
    """A server key created before the transaction that announces it."""

    key: VerifyKey
    previous_key_id: int
    pinned: int
    valid_days: int


@inlineCallbacks
def _create_key(call: Call, valid_days: int) -> Any:
    rotator = _keys(call)
    api = call.api
    previous = rotator.active_key_id()
    pinned = yield api.runner.run_interaction("pin unpinned devices", pin_unpinned_txn,
                                              previous)
    reactor: Any = api.clock
    key, previous = yield deferToThreadPool(reactor, reactor.getThreadPool(),
                                            rotator.rotate, call.now)
    return NewKey(key, previous, int(pinned), valid_days)


def _valid_days(request: Mapping[str, Any]) -> int:
    return int(request.get("valid_days") or DEFAULT_ROTATION_VALIDITY.days)


def prepare_rotation(call: Call) -> Deferred[Any]:
    """Create the key first (file work, off the reactor) unless approval is needed."""
    if call.api.approvals.for_rotation() is not None:
        _keys(call)
        return succeed(None)
    return _create_key(call, _valid_days(call.body))  # type: ignore[no-any-return]


def _announce(conn: Connection, requester: Actor, call: Call,
              approved: Approved | None = None) -> dict[str, Any]:
    new: NewKey | None = call.prepared
    if new is None:
        raise ApiError("conflict", "the key was not created")
    actor = requester if approved is None else Actor(
        f"{requester.name} approved by {approved.approver.name}", requester.role)
    rotation = announce_rotation_txn(
        conn, actor, key_id=new.key.key_id, public_key=new.key.raw,
        previous_key_id=new.previous_key_id, not_after=call.now + timedelta(
            days=new.valid_days), pinned_before=new.pinned)
    return rotation.to_json()


def rotate_keys_txn(conn: Connection, call: Call) -> Answer:
    """Rotate the server key (or record it for two-person approval: 202)."""
    action = call.api.approvals.for_rotation()
    if action is not None:
        return _pending(conn, call, action, "server-key")
    rotation = _announce(conn, call.actor, call)
    return Answer(201, {"rotation": rotation}, target=f"server-key:{rotation['key_id']}")


@inlineCallbacks
def _prepare_approval(call: Call) -> Any:
    api = call.api
    approval_id = _int_param(call)
    with _own_request(approval_id, "approve"):
        record = yield api.runner.run_interaction(
            "check approval", approval_cases.check_approvable_txn, _admin(call),
            approval_id, now=call.now)
    if (record.action == "keys.rotate" and "command" not in record.request
            and record.expires_at > call.now):
        return (yield _create_key(call, _valid_days(record.request)))
    return None


def prepare_approval(call: Call) -> Deferred[Any]:
    """A key rotation approved: check the approval, then create the key first."""
    return _prepare_approval(call)  # type: ignore[no-any-return]


def _device_known(conn: Connection, identifier: str, region: str | None) -> int:
    with store_errors(field="device"):
        return find_device_txn(conn, identifier, region).id


def events_start_txn(conn: Connection, call: Call) -> Answer:
    """Start of a live event stream: resolves the ``device`` filter (the stream follows)."""
    device = call.query.get("device")
    device_id = _device_known(conn, device, call.api.region) if device else None
    return Answer(200, {"device_id": device_id}, target=device)


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
