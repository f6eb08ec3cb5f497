"""What the admin API's handlers share: cursors, parameters, the caller, pending approvals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from mepl.admin.api import Answer, Call
from mepl.admin.errors import ApiError
from mepl.app import approvals as approval_cases
from mepl.app.approvals import Admin, approval_json


def admin_of(call: Call) -> Admin:
    """The calling admin, as the approval use cases take them."""
    return Admin(call.actor, call.identity.fingerprint)


def next_cursor(items: list[Any], limit: int, cursor: Callable[[Any], Any]) -> str | None:
    """The ``next`` cursor of a page: the last item's, when the page is full; else None."""
    return str(cursor(items[-1])) if len(items) == limit and items else None


def after_id(call: Call) -> int | None:
    """The ``after`` cursor of the query, as an id (400 when it is not one this API gave)."""
    after = call.query.get("after")
    if after is None:
        return None
    try:
        return int(after)
    except ValueError:
        raise ApiError("invalid_request", "after must be a cursor this API gave",
                       field="after") from None


def region_of(call: Call) -> str | None:
    """The region to read national phone numbers in: the query's, else the API's."""
    region = call.query.get("region")
    return str(region).upper() if region else call.api.region


def int_param(call: Call, name: str = "id") -> int:
    """The path parameter ``name`` as an integer (404 when it is not one)."""
    try:
        return int(call.params[name])
    except ValueError:
        raise ApiError("not_found", f"no such {name} {call.params[name]!r}") from None


def pending_approval(conn: Connection, call: Call, action: str, target: str | None) -> Answer:
    """Record the request for two-person approval: the 202 answer with the pending approval."""
    record = approval_cases.request_approval_txn(
        conn, admin_of(call), action=action, request=call.body or {}, target=target,
        now=call.now, ttl=timedelta(seconds=call.api.approvals.ttl_s))
    return Answer(202, {"approval": approval_json(record)}, target=target,
                  outcome="pending", details={"approval": record.id})
