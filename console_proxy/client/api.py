"""The admin API over the console proxy: one typed method per route of the contract.

Every method blocks on the network and is safe to call from several
threads at once, so a desktop console calls them from worker threads
(:meth:`Client.submit` runs one on the client's own small thread pool and
returns a :class:`concurrent.futures.Future`); nothing here needs an event
loop.  A non-2xx answer raises the :class:`~console_proxy.client.errors.ApiError`
subclass of its code, with the message, the hint and the proxy's request id.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlencode

from console_proxy.client.errors import ProtocolError, api_error
from console_proxy.client.events import (
    Backoff,
    EventStream,
    OpenStream,
    StatusCallback,
    not_a_stream,
)
from console_proxy.client.identity import Identity, client_context
from console_proxy.client.models import (
    Alert,
    Approval,
    AuditEntry,
    Command,
    Device,
    FanoutProgress,
    Group,
    JsonObject,
    Message,
    Page,
    Pdu,
    Queued,
    SendResult,
    WhoAmI,
)
from console_proxy.client.transport import Endpoint, Transport

P = ParamSpec("P")
R = TypeVar("R")

USER_AGENT = "mdm-console/1"
"""Sent as ``User-Agent``."""

DESTRUCTIVE_COMMANDS = frozenset(("wipe",))
"""Commands that destroy data on the device, whatever the target."""

FLEET_DESTRUCTIVE_COMMANDS = frozenset(("lock",))
"""Commands that are destructive when sent to a group or the whole fleet."""


def is_destructive(command: str, target: Mapping[str, Any]) -> bool:
    """True when a console should ask for confirmation before sending ``command`` to ``target``.

    ``target`` is the contract's target object: ``{"device": ...}``,
    ``{"group": ...}`` or ``{"all": true}``.
    """
    name = command.lower()
    return name in DESTRUCTIVE_COMMANDS or (
        name in FLEET_DESTRUCTIVE_COMMANDS and "device" not in target)


def device_target(identifier: str) -> JsonObject:
    """The target object for one device (IMEI, IMSI or phone number, any written form)."""
    return {"device": identifier}


def group_target(name: str) -> JsonObject:
    """The target object for every member of a group."""
    return {"group": name}


def fleet_target() -> JsonObject:
    """The target object for the whole fleet."""
    return {"all": True}


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def _query(**params: Any) -> str:
    pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v))
             for k, v in params.items() if v is not None]
    return "?" + urlencode(pairs) if pairs else ""


class Client:
    """A connection to the admin API through the console proxy, as one admin.

    Build it with :meth:`connect` (identity and CA) or give a ready
    :class:`ssl.SSLContext`.  ``clock`` (returning an aware datetime), when
    given, is used to refuse an expired certificate before connecting, with
    a message that says so rather than the proxy's bare refusal.
    """

    def __init__(self, proxy_url: str, context: ssl.SSLContext, *,
                 identity: Identity | None = None,
                 clock: Callable[[], datetime] | None = None,
                 timeout: float = 30.0, stream_idle_timeout: float = 45.0) -> None:
        self.endpoint = Endpoint.parse(proxy_url)
        self.identity = identity
        self._clock = clock
        self._transport = Transport(self.endpoint, context, timeout=timeout,
                                    before_connect=self._check_identity)
        self._stream_idle_timeout = stream_idle_timeout
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def connect(cls, proxy_url: str, identity: Identity,
                ca_file: str | os.PathLike[str] | None = None, *, ca_pem: str | None = None,
                clock: Callable[[], datetime] | None = None, timeout: float = 30.0) -> Client:
        """A client presenting ``identity`` and trusting the proxy's CA (``ca_file``/``ca_pem``).

        No connection is made yet; the first call makes one.
        """
        if clock is not None:
            identity.check_valid(clock())
        return cls(proxy_url, client_context(identity, ca_file, ca_pem=ca_pem),
                   identity=identity, clock=clock, timeout=timeout)

    def _check_identity(self) -> None:
        if self.identity is not None and self._clock is not None:
            self.identity.check_valid(self._clock())

    # -- plumbing ---------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             ) -> tuple[int, Any, str | None]:
        """One request; ``(status, decoded JSON body, request id)`` for a 2xx answer.

        Raises the :class:`ApiError` of a non-2xx answer.  A POST always
        carries a JSON object (``{}`` when the route takes no body).
        """
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        payload = None
        if method != "GET":
            payload = json.dumps(dict(body or {}), separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        answer = self._transport.request(method, path, payload, headers)
        try:
            data = json.loads(answer.body) if answer.body.strip() else None
        except ValueError:
            data = None
            if 200 <= answer.status < 300:
                raise ProtocolError(f"the answer to {method} {path} is not JSON",
                                    "check that --proxy points at the MEPL console proxy",
                                    status=answer.status, request_id=answer.request_id) from None
        if not 200 <= answer.status < 300:
            raise api_error(answer.status, data, answer.request_id)
        return answer.status, data, answer.request_id

    def _get(self, path: str) -> Any:
        return self.call("GET", path)[1]

    def _post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.call("POST", path, body)[1]

    def submit(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Run ``fn(*args, **kwargs)`` (usually a method of this client) on a worker thread.

        For front ends with a UI thread that must not block: attach a done
        callback to the returned future (and hop back to the UI thread in it).
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mdm-client")
        return self._executor.submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Close idle connections and the worker threads."""
        self._transport.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- who am I, the document -------------------------------------------------------------

    def whoami(self) -> WhoAmI:
        """``GET /v1/whoami``: the admin's name, role and fingerprint as the API sees them."""
        return WhoAmI.parse(self._get("/v1/whoami"))

    def openapi(self) -> JsonObject:
        """``GET /v1/openapi.json``: the API's OpenAPI document."""
        data = self._get("/v1/openapi.json")
        if not isinstance(data, dict):
            raise ProtocolError("the OpenAPI document is not a JSON object")
        return data

    # -- devices ----------------------------------------------------------------------------

    def list_devices(self, *, q: str | None = None, group: str | None = None,
                     state: str | None = None, limit: int | None = None,
                     after: str | None = None) -> Page[Device]:
        """``GET /v1/devices``: one page of devices, filtered."""
        data = self._get("/v1/devices" + _query(q=q, group=group, state=state, limit=limit,
                                                after=after))
        return Page.parse(data, Device.parse, "device page")

    def iter_devices(self, *, q: str | None = None, group: str | None = None,
                     state: str | None = None, page_size: int | None = None,
                     ) -> Iterator[Device]:
        """Every device matching the filters, fetching page after page as iteration goes."""
        after: str | None = None
        while True:
            page = self.list_devices(q=q, group=group, state=state, limit=page_size,
                                     after=after)
            yield from page.items
            if page.next is None:
                return
            after = page.next

    def get_device(self, identifier: str, *, region: str | None = None) -> Device:
        """``GET /v1/devices/{identifier}``: one device by IMEI, IMSI or phone (any form)."""
        return Device.parse(self._get(f"/v1/devices/{_segment(identifier)}"
                                      + _query(region=region)))

    def enrol_device(self, imei: str, *, imsi: str | None = None, msisdn: str | None = None,
                     group: str | None = None, public_key: str | None = None) -> Device:
        """``POST /v1/devices`` (admin): enrol a device (``public_key`` in hex)."""
        body = {k: v for k, v in (("imei", imei), ("imsi", imsi), ("msisdn", msisdn),
                                  ("group", group), ("public_key", public_key))
                if v is not None}
        return Device.parse(self._post("/v1/devices", body))

    def retire_device(self, identifier: str) -> JsonObject:
        """``POST /v1/devices/{identifier}/retire`` (admin): retire one device."""
        return self._object(self._post(f"/v1/devices/{_segment(identifier)}/retire"))

    def retire_devices(self, devices: Sequence[str]) -> JsonObject | Approval:
        """``POST /v1/devices/retire`` (admin): retire many; an :class:`Approval` when pending."""
        status, data, _ = self.call("POST", "/v1/devices/retire", {"devices": list(devices)})
        return Approval.parse(data) if status == 202 else self._object(data)

    def device_identity(self, identifier: str) -> list[JsonObject]:
        """``GET /v1/devices/{identifier}/identity``: the identity history, oldest first."""
        return self._list(self._get(f"/v1/devices/{_segment(identifier)}/identity"))

    def device_messages(self, identifier: str, *, limit: int | None = None,
                        after: str | None = None) -> Page[Message]:
        """``GET /v1/devices/{identifier}/messages``: decoded messages both ways, newest first."""
        data = self._get(f"/v1/devices/{_segment(identifier)}/messages"
                         + _query(limit=limit, after=after))
        return Page.parse(data, Message.parse, "message page")

    def device_commands(self, identifier: str, *, limit: int | None = None,
                        after: str | None = None) -> Page[Command]:
        """``GET /v1/devices/{identifier}/commands``: the device's commands."""
        data = self._get(f"/v1/devices/{_segment(identifier)}/commands"
                         + _query(limit=limit, after=after))
        return Page.parse(data, Command.parse, "command page")

    # -- groups -----------------------------------------------------------------------------

    def list_groups(self, *, limit: int | None = None,
                    after: str | None = None) -> Page[Group]:
        """``GET /v1/groups``."""
        return Page.parse(self._get("/v1/groups" + _query(limit=limit, after=after)),
                          Group.parse, "group page")

    def get_group(self, name: str) -> Group:
        """``GET /v1/groups/{name}``."""
        return Group.parse(self._get(f"/v1/groups/{_segment(name)}"))

    def create_group(self, name: str, devices: Sequence[str] | None = None) -> Group:
        """``POST /v1/groups`` (admin)."""
        body: JsonObject = {"name": name}
        if devices is not None:
            body["devices"] = list(devices)
        return Group.parse(self._post("/v1/groups", body))

    def change_group_members(self, name: str, *, add: Sequence[str] = (),
                             remove: Sequence[str] = ()) -> Group:
        """``POST /v1/groups/{name}/members`` (admin): add and remove devices."""
        return Group.parse(self._post(f"/v1/groups/{_segment(name)}/members",
                                      {"add": list(add), "remove": list(remove)}))

    # -- commands ---------------------------------------------------------------------------

    def send_command(self, command: str, target: Mapping[str, Any], *,
                     args: Mapping[str, str] | None = None, priority: str | None = None,
                     valid_for_s: int | None = None, confirm: bool | None = None,
                     ) -> SendResult:
        """``POST /v1/commands``: queue ``command`` for ``target``.

        ``target``: :func:`device_target`, :func:`group_target` or
        :func:`fleet_target`.  Returns the queued command (201), or the
        pending approval (202) when a second admin must approve first.
        """
        body: JsonObject = {"command": command, "args": dict(args or {}),
                            "target": dict(target)}
        if priority is not None:
            body["priority"] = priority
        if valid_for_s is not None:
            body["valid_for_s"] = valid_for_s
        if confirm is not None:
            body["confirm"] = confirm
        status, data, request_id = self.call("POST", "/v1/commands", body)
        if status == 202:
            return SendResult(None, Approval.parse(data), request_id)
        return SendResult(Queued.parse(data), None, request_id)

    def list_commands(self, *, device: str | None = None, state: str | None = None,
                      fanout: int | str | None = None, limit: int | None = None,
                      after: str | None = None) -> Page[Command]:
        """``GET /v1/commands``: a page of commands, filtered."""
        data = self._get("/v1/commands" + _query(device=device, state=state, fanout=fanout,
                                                 limit=limit, after=after))
        return Page.parse(data, Command.parse, "command page")

    def get_command(self, command_id: int | str) -> Command:
        """``GET /v1/commands/{id}``: the command and its full event history."""
        return Command.parse(self._get(f"/v1/commands/{_segment(command_id)}"))

    def cancel_command(self, command_id: int | str) -> JsonObject:
        """``POST /v1/commands/{id}/cancel`` (operator): withdraw a command still queued."""
        return self._object(self._post(f"/v1/commands/{_segment(command_id)}/cancel"))

    def get_fanout(self, fanout_id: int | str) -> FanoutProgress:
        """``GET /v1/fanouts/{id}``: a fan-out's progress."""
        return FanoutProgress.parse(self._get(f"/v1/fanouts/{_segment(fanout_id)}"))

    # -- alerts, approvals, audit, keys -----------------------------------------------------

    def list_alerts(self, *, device: str | None = None, since: str | None = None,
                    limit: int | None = None, after: str | None = None) -> Page[Alert]:
        """``GET /v1/alerts``: alerts and security events, newest first."""
        data = self._get("/v1/alerts" + _query(device=device, since=since, limit=limit,
                                               after=after))
        return Page.parse(data, Alert.parse, "alert page")

    def list_pdus(self, *, link: str | None = None, message: int | None = None,
                  since: str | None = None, until: str | None = None,
                  direction: str | None = None, command: str | None = None,
                  smsc_id: str | None = None, reference: str | None = None,
                  address: str | None = None, limit: int | None = None,
                  after: str | None = None) -> Page[Pdu]:
        """``GET /v1/pdus``: a link's raw SMPP PDUs in a window, or one stored SMS's."""
        data = self._get("/v1/pdus" + _query(
            link=link, message=message, since=since, until=until, direction=direction,
            command=command, smsc_id=smsc_id, reference=reference, address=address,
            limit=limit, after=after))
        return Page.parse(data, Pdu.parse, "PDU page")

    def list_approvals(self, *, status: str | None = "pending", limit: int | None = None,
                       after: str | None = None) -> Page[Approval]:
        """``GET /v1/approvals``: approvals (the pending ones unless ``status`` says else)."""
        data = self._get("/v1/approvals" + _query(status=status, limit=limit, after=after))
        return Page.parse(data, Approval.parse, "approval page")

    def get_approval(self, approval_id: str | int) -> Approval:
        """``GET /v1/approvals/{id}``: one approval (the admin API has it; not in the contract)."""
        return Approval.parse(self._get(f"/v1/approvals/{_segment(approval_id)}"))

    def approve(self, approval_id: str | int) -> Approval:
        """``POST /v1/approvals/{id}/approve`` (admin, not the requester)."""
        return Approval.parse(self._post(f"/v1/approvals/{_segment(approval_id)}/approve"))

    def reject(self, approval_id: str | int, reason: str | None = None) -> Approval:
        """``POST /v1/approvals/{id}/reject`` (admin, not the requester)."""
        body = {"reason": reason} if reason is not None else {}
        return Approval.parse(self._post(f"/v1/approvals/{_segment(approval_id)}/reject",
                                         body))

    def list_audit(self, *, actor: str | None = None, action: str | None = None,
                   limit: int | None = None, after: str | None = None) -> Page[AuditEntry]:
        """``GET /v1/audit`` (admin): the audit trail."""
        data = self._get("/v1/audit" + _query(actor=actor, action=action, limit=limit,
                                              after=after))
        return Page.parse(data, AuditEntry.parse, "audit page")

    def keys(self) -> JsonObject:
        """``GET /v1/keys``: the server keys and the devices per key."""
        return self._object(self._get("/v1/keys"))

    def rotate_keys(self) -> JsonObject | Approval:
        """``POST /v1/keys/rotate`` (admin): an :class:`Approval` when approval applies."""
        status, data, _ = self.call("POST", "/v1/keys/rotate", {})
        return Approval.parse(data) if status == 202 else self._object(data)

    # -- live events ------------------------------------------------------------------------

    def events(self, *, last_event_id: str | None = None, device: str | None = None,
               reconnect: bool = True, backoff: Backoff | None = None,
               on_status: StatusCallback | None = None) -> EventStream:
        """``GET /v1/events``: the live stream, resumed from ``last_event_id`` if given.

        Nothing is sent until the first ``next()``; iterate it on a worker
        thread in a UI, and call :meth:`EventStream.stop` from any thread.
        """
        path = "/v1/events" + _query(device=device)

        def open_stream(resume_from: str | None) -> OpenStream:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache",
                       "User-Agent": USER_AGENT}
            if resume_from:
                headers["Last-Event-ID"] = resume_from
            conn = self._transport.connect(timeout=self._stream_idle_timeout)
            try:
                conn.request("GET", self.endpoint.prefix + path, headers=headers)
                answer = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._transport.failure(exc) from None
            request_id = answer.getheader("X-Request-Id")
            if answer.status != 200:
                body = answer.read()
                conn.close()
                try:
                    data = json.loads(body)
                except ValueError:
                    data = None
                raise api_error(answer.status, data, request_id)
            content_type = answer.getheader("Content-Type", "")
            if not content_type.startswith("text/event-stream"):
                conn.close()
                raise not_a_stream(content_type)
            return OpenStream(answer, conn.sock, request_id)

        return EventStream(open_stream, last_event_id=last_event_id, reconnect=reconnect,
                           backoff=backoff, on_status=on_status)

    # -- shapes -----------------------------------------------------------------------------

    @staticmethod
    def _object(data: Any) -> JsonObject:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ProtocolError("the server's answer is not a JSON object")
        return data

    @staticmethod
    def _list(data: Any) -> list[JsonObject]:
        items = data.get("items", data.get("history")) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ProtocolError("the server's answer is not a list")
        return [i for i in items if isinstance(i, dict)]
