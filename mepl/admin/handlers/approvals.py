"""The admin API's approval handlers: list and show approvals, approve (carry out) or reject.

An approved request is carried out in the approving transaction: a device
retirement, a command, or a server key rotation (its key created first).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from twisted.internet.defer import Deferred, inlineCallbacks

from blobstore.approvals import get_approval_txn
from mepl.admin.api import Answer, Call
from mepl.admin.errors import ApiError
from mepl.admin.handlers.commands import queue_command, queued_json
from mepl.admin.handlers.common import admin_of, after_id, int_param, next_cursor
from mepl.admin.handlers.keys import announce_rotation, create_key, requested_valid_days
from mepl.app import approvals as approval_cases
from mepl.app import devices as device_cases
from mepl.app.approvals import approval_json
from mepl.app.commands import Approved
from mepl.app.context import Actor
from mepl.app.errors import Conflict


def list_approvals_txn(conn: Connection, call: Call) -> Answer:
    """Approvals, newest first."""
    limit = call.query["limit"]
    rows = approval_cases.list_approvals_page_txn(
        conn, call.actor, now=call.now, status=call.query.get("status"),
        before_id=after_id(call), limit=limit)
    return Answer(200, {"items": [approval_json(r) for r in rows],
                        "next": next_cursor(rows, limit, lambda r: r.id)})


def get_approval_txn_(conn: Connection, call: Call) -> Answer:
    """One approval."""
    approval_id = int_param(call)
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
            return {"queued": queued_json(queue_command(conn, requester, request, call.now,
                                                       call.api.region, approved))}
        return {"rotation": announce_rotation(conn, requester, call, approved)}
    return execute


def approve_txn(conn: Connection, call: Call) -> Answer:
    """Approve another admin's request; it is carried out now, in this transaction."""
    approval_id = int_param(call)
    with _own_request(approval_id, "approve"):
        decision = approval_cases.approve_txn(conn, admin_of(call), approval_id, now=call.now,
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
    approval_id = int_param(call)
    with _own_request(approval_id, "reject"):
        decision = approval_cases.reject_txn(conn, admin_of(call), approval_id, now=call.now,
                                             reason=call.body.get("reason"))
    return _decided(decision, approval_id)


@inlineCallbacks
def _prepare_approval(call: Call) -> Any:
    api = call.api
    approval_id = int_param(call)
    with _own_request(approval_id, "approve"):
        record = yield api.runner.run_interaction(
            "check approval", approval_cases.check_approvable_txn, admin_of(call),
            approval_id, now=call.now)
    if (record.action == "keys.rotate" and "command" not in record.request
            and record.expires_at > call.now):
        return (yield create_key(call, requested_valid_days(record.request)))
    return None


def prepare_approval(call: Call) -> Deferred[Any]:
    """A key rotation approved: check the approval, then create the key first."""
    return _prepare_approval(call)  # type: ignore[no-any-return]
