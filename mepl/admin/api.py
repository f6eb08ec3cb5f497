"""The admin API's request pipeline, independent of the HTTP server that carries it.

For each request, in order: the proxy's assertion (401), the route (404), the
role for the route (403), the body read and validated against the route's
schema (400), the role for the body (403), then the handler.  A handler is a
thin adapter: it calls a use case of :mod:`mepl.app` inside one transaction
(``run_interaction``), and the request's own audit row (who, role, action,
target, outcome, request id, source, fingerprint, status) is appended in
that same transaction.  A refusal or failure rolls the use case back and is
audited in a transaction of its own.  Nothing is answered before its audit
row is committed: when it cannot be, the answer is 503 ``audit_unavailable``.
The request id is unique in the audit table, so an assertion replayed to
another MEPL process is refused there too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from blobstore.audit import append_audit_txn
from blobstore.errors import StoreUnavailableError
from blobstore.pool import Clock, InteractionRunner
from mepl.admin.assertion import HEADER, AssertionRefused, AssertionVerifier, Identity
from mepl.admin.errors import ApiError, unauthenticated
from mepl.admin.routes import Param, Route, find_route
from mepl.app.approvals import ApprovalsConfig
from mepl.app.context import Actor
from mepl.app.errors import AppError, InvalidRequest, NeedsConfirmation, NotFound

log = Logger()

REQUEST_ID_INDEX = "uq_audit_request_id"


@dataclass(frozen=True)
class Incoming:
    """One HTTP request as the pipeline needs it."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    peer: str

    @property
    def path(self) -> str:
        """The path without the query."""
        return urlsplit(self.target).path


@dataclass(frozen=True)
class Outgoing:
    """The answer: status, JSON-ready body, extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """The body as UTF-8 JSON."""
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Call:
    """What a handler gets: who asks, the route, its parameters, query and body, now."""

    identity: Identity
    route: Route
    params: dict[str, str]
    query: dict[str, Any]
    body: Any
    now: datetime
    api: AdminApi
    prepared: Any = None

    @property
    def actor(self) -> Actor:
        """The admin as the use cases name them."""
        return Actor(self.identity.name, self.identity.role)


@dataclass(frozen=True)
class OnBehalf:
    """The admin an audit row is about when the caller (the proxy) only reports it: the
    row's actor and role; the caller is named in ``details.via``."""

    name: str
    role: str
    fingerprint: str | None


@dataclass(frozen=True)
class Answer:
    """A handler's answer: status, body, and what goes into the audit row (``on_behalf``:
    the admin the row is about, when not the caller)."""

    status: int
    body: Any
    target: str | None = None
    outcome: str = "ok"
    details: Mapping[str, Any] = field(default_factory=dict)
    on_behalf: OnBehalf | None = None


HandlerTxn = Callable[[Connection, Call], Answer]
Prepare = Callable[[Call], Deferred[Any]]


@dataclass(frozen=True)
class Handler:
    """How a route is served: ``txn`` in one transaction, after the optional ``prepare``."""

    txn: HandlerTxn
    prepare: Prepare | None = None


class AuditUnavailable(Exception):  # noqa: N818 - reads as what happened
    """The audit row could not be written: the request must fail (503)."""


class Replayed(Exception):  # noqa: N818 - reads as what happened
    """The request id is in the audit already (a replay seen by another process)."""


class AdminApi:
    """Verifies, routes, runs and audits admin API requests (see the module docstring)."""

    def __init__(self, *, runner: InteractionRunner, clock: Clock,
                 verifier: AssertionVerifier, handlers: Mapping[str, Handler],
                 approvals: ApprovalsConfig | None = None, region: str | None = None,
                 services: Mapping[str, Any] | None = None) -> None:
        self.runner = runner
        self.clock = clock
        self.verifier = verifier
        self.handlers = dict(handlers)
        self.approvals = approvals or ApprovalsConfig()
        self.region = region
        self.services = dict(services or {})
        self._validators: dict[str, Draft202012Validator] = {}

    def now(self) -> datetime:
        """The clock's time as an aware datetime."""
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    # ------------------------------------------------------------ the pipeline
    def authorise(self, incoming: Incoming) -> Call:
        """Everything before the handler; raises :class:`Refusal` with what to audit."""
        try:
            identity = self.verifier.verify(incoming.headers.get(HEADER.lower()),
                                            method=incoming.method, target=incoming.target,
                                            body=incoming.body)
        except AssertionRefused as exc:
            raise Refusal(None, None, unauthenticated(exc.reason), exc.claimed) from None
        found = find_route(incoming.method, incoming.path)
        if found is None:
            raise Refusal(identity, None, ApiError(
                "not_found", f"no operation {incoming.method} {incoming.path}",
                hint="GET /v1/openapi.json lists the operations"))
        route, params = found
        if not route.allows(identity.role):
            raise Refusal(identity, route, _forbidden(identity.role, route.role_for(None)))
        body = self._body(route, incoming.body, identity)
        needed = route.role_for(body)
        if not route.allows(identity.role, body):
            raise Refusal(identity, route, _forbidden(identity.role, needed))
        try:
            query = _query(route, incoming.target)
        except ApiError as exc:
            raise Refusal(identity, route, exc) from None
        return Call(identity, route, params, query, body, self.now(), self)

    def _body(self, route: Route, raw: bytes, identity: Identity) -> Any:
        if route.request is None:
            return None
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise Refusal(identity, route, ApiError(
                "invalid_request", "the body is not JSON", field="body")) from None
        validator = self._validators.get(route.name)
        if validator is None:
            validator = self._validators[route.name] = Draft202012Validator(route.request)
        error = best_match(validator.iter_errors(body))
        if error is not None:
            raise Refusal(identity, route, ApiError(
                "invalid_request", error.message, field=_field(error)))
        return body

    def handle(self, incoming: Incoming) -> Deferred[Outgoing]:
        """Answer one (non-streaming) request; the Deferred never fails."""
        try:
            call = self.authorise(incoming)
        except Refusal as refusal:
            return self.refuse(incoming, refusal)
        handler = self.handlers[call.route.name]
        d: Deferred[Any] = succeed(None)
        if handler.prepare is not None:
            d = maybeDeferred(handler.prepare, call)
        d.addCallback(self._prepared, call, handler)
        d.addCallback(lambda answer: Outgoing(answer.status, answer.body,
                                              _rid(call.identity)))
        d.addErrback(self._failed, incoming, call)
        return d

    def _prepared(self, prepared: Any, call: Call, handler: Handler) -> Deferred[Answer]:
        call.prepared = prepared
        return self.runner.run_interaction(f"admin {call.route.name}", self._txn, handler, call)

    def _txn(self, conn: Connection, handler: Handler, call: Call) -> Answer:
        answer = handler.txn(conn, call)
        self.audit_txn(conn, call.identity, call.route.audit_action, answer.target,
                       outcome=answer.outcome, status=answer.status, details=answer.details,
                       on_behalf=answer.on_behalf)
        return answer

    def audit_txn(self, conn: Connection, identity: Identity | None, action: str,
                  target: str | None, *, outcome: str, status: int,
                  details: Mapping[str, Any] | None = None,
                  claimed: Mapping[str, Any] | None = None, source: str = "",
                  on_behalf: OnBehalf | None = None) -> None:
        """Append the request's audit row; raise :class:`Replayed` or
        :class:`AuditUnavailable`.  With ``on_behalf`` (and an identity) the row's actor
        is that admin, ``details.via`` the caller and ``details.fingerprint`` the admin's."""
        values: dict[str, Any] = {"outcome": outcome, "status": status, **(details or {})}
        actor, role = "unknown", "none"
        if identity is not None:
            actor, role = identity.name, identity.role
            values.update(fingerprint=identity.fingerprint, request_id=identity.request_id,
                          source=identity.source, proxy=identity.issuer)
            if on_behalf is not None:
                actor, role = on_behalf.name, on_behalf.role
                values.update(via=identity.name, fingerprint=on_behalf.fingerprint)
        else:
            values.update(source=source, claimed=dict(claimed or {}))
        try:
            append_audit_txn(
                conn, actor=actor, role=role, action=action,
                target=target, details=values,
                request_id=identity.request_id if identity else None)
        except IntegrityError as exc:
            if _constraint(exc) == REQUEST_ID_INDEX:
                raise Replayed(identity.request_id if identity else "") from None
            raise AuditUnavailable(str(exc.orig or exc)) from None
        except DBAPIError as exc:
            raise AuditUnavailable(str(exc.orig or exc)) from None

    # ------------------------------------------------------------ refusals, failures
    def refuse(self, incoming: Incoming, refusal: Refusal) -> Deferred[Outgoing]:
        """Audit a refusal in its own transaction, then answer it."""
        error, identity = refusal.error, refusal.identity
        action = refusal.route.audit_action if refusal.route else "request.refused"
        log.info("admin API refused {method} {path}: {reason}", method=incoming.method,
                 path=incoming.path, reason=error.reason)
        d = self.runner.run_interaction(
            "admin audit refusal", self.audit_txn, identity, action, incoming.path,
            outcome=f"refused:{error.reason}", status=error.status,
            details={"method": incoming.method}, claimed=refusal.claimed,
            source=incoming.peer)

        def written(_: object) -> Outgoing:
            return Outgoing(error.status, error.body(),
                            _rid(identity) if error.code != "unauthenticated" else {})

        def replayed(failure: Failure) -> Deferred[Outgoing] | Outgoing:
            if failure.check(Replayed) and identity is not None:
                return self.refuse(incoming, Refusal(None, None, unauthenticated(
                    "request id already used (replayed assertion)"),
                    {"sub": identity.name, "rid": identity.request_id}))
            return _unavailable(failure)

        return d.addCallbacks(written, replayed)

    def _failed(self, failure: Failure, incoming: Incoming, call: Call) -> Any:
        if failure.check(Replayed):
            return self.refuse(incoming, Refusal(None, None, unauthenticated(
                "request id already used (replayed assertion)"),
                {"sub": call.identity.name, "rid": call.identity.request_id}))
        if failure.check(AuditUnavailable, StoreUnavailableError):
            return _unavailable(failure)
        if failure.check(DBAPIError):
            # The use case's own audit row, or anything else in its transaction: rolled
            # back; the refusal's audit row (own transaction) says whether the audit works.
            log.error("admin API {route}: database error, rolled back: {error}",
                      route=call.route.name, error=failure.getErrorMessage())
            error = ApiError("internal", "the request failed on the server",
                             reason="database")
        else:
            error = to_api_error(failure)
        return self.refuse(incoming, Refusal(call.identity, call.route, error))


@dataclass
class Refusal(Exception):  # noqa: N818 - carries what to answer and audit
    """A request refused before or by its handler."""

    identity: Identity | None
    route: Route | None
    error: ApiError
    claimed: Mapping[str, Any] | None = None


def to_api_error(failure: Failure) -> ApiError:
    """The API error for a handler's failure (use-case refusals mapped; others: 500)."""
    exc = failure.value
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidRequest):
        return ApiError("invalid_request", str(exc), field=exc.field)
    if isinstance(exc, NotFound):
        return ApiError("not_found", str(exc))
    if isinstance(exc, NeedsConfirmation):
        return ApiError("conflict", str(exc), reason="needs_confirmation",
                        hint='send it again with "confirm": true')
    if isinstance(exc, AppError):
        return ApiError("conflict", str(exc))
    log.failure("admin API handler failed", failure)
    return ApiError("internal", "the request failed on the server", reason="internal")


def _unavailable(failure: Failure) -> Outgoing:
    log.error("admin API: the audit cannot be written, request refused: {error}",
              error=failure.getErrorMessage())
    error = ApiError("audit_unavailable", "the audit trail cannot be written, so the "
                     "request was not carried out")
    return Outgoing(error.status, error.body())


def _forbidden(role: str, needed: str) -> ApiError:
    return ApiError("forbidden", f"this operation needs the role {needed}; you are {role}",
                    reason="forbidden")


def _rid(identity: Identity | None) -> dict[str, str]:
    return {"X-Request-Id": identity.request_id} if identity is not None else {}


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


def _field(error: ValidationError) -> str:
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            return ".".join([*map(str, error.absolute_path), str(missing[0])])
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = [p for p in error.instance if p not in known]
        if extra:
            return ".".join([*map(str, error.absolute_path), str(extra[0])])
    return ".".join(map(str, error.absolute_path)) or "body"


def _query(route: Route, target: str) -> dict[str, Any]:
    declared = {p.name: p for p in route.query}
    values: dict[str, Any] = {}
    for name, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        param = declared.get(name)
        if param is None:
            raise ApiError("invalid_request", f"unknown query parameter {name!r}", field=name)
        values[name] = _convert(param, value)
    for param in route.query:
        if param.name not in values and "default" in param.schema:
            values[param.name] = param.schema["default"]
    return values


def _convert(param: Param, text: str) -> Any:
    kind = param.schema.get("type")
    value: Any = text
    if kind == "integer":
        try:
            value = int(text)
        except ValueError:
            raise ApiError("invalid_request", f"{param.name} must be an integer",
                           field=param.name) from None
    elif param.schema.get("format") == "date-time":
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError("invalid_request", f"{param.name} must be an ISO 8601 time",
                           field=param.name) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value
    error = best_match(Draft202012Validator(param.schema).iter_errors(value))
    if error is not None:
        raise ApiError("invalid_request", f"{param.name}: {error.message}", field=param.name)
    return value
