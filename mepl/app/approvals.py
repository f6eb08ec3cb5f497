"""Two-person approval: the actions one administrator asks for and a second must approve.

WIPE (to any target), LOCK to a group or the whole fleet, server key
rotation and retiring many devices are not carried out when asked: they are
recorded as a pending approval (:func:`request_approval_txn`) and nothing is
queued or sealed.  Another administrator (never the one who asked) approves
it (:func:`approve_txn`: the action is carried out then, in the approval's
own transaction, with both names in the audit and in the commands' history)
or rejects it (:func:`reject_txn`), within ``ttl_s``; past that it is expired
and can no longer be approved.  Which actions need approval is configurable
(:class:`ApprovalsConfig`, the ``[approvals]`` section).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from blobstore.approvals import (
    ApprovalRecord,
    decide_approval_txn,
    expire_due_txn,
    get_approval_txn,
    insert_approval_txn,
    list_approvals_txn,
)
from blobstore.audit import append_audit_txn
from mepl.app.commands import Approved
from mepl.app.context import Actor
from mepl.app.errors import Conflict, InvalidRequest, NotFound, Refused

ACTIONS = ("command.wipe", "command.lock.fleet", "command.lock.group", "keys.rotate",
           "devices.retire")
"""The actions two-person approval can apply to."""

STATUSES = ("pending", "approved", "rejected", "expired")


@dataclass(frozen=True)
class ApprovalsConfig:
    """The ``[approvals]`` section: which actions wait for a second administrator.

    ``wipe``: WIPE to any target; ``fleet_lock`` / ``group_lock``: LOCK to the
    whole fleet / a group; ``rotate_key``: server key rotation (and a
    ``rotate_key`` command sent by hand); ``retire_min``: retiring this many
    devices or more at once (0: never); ``ttl_s``: how long a request waits
    for its decision.
    """

    wipe: bool = True
    fleet_lock: bool = True
    group_lock: bool = True
    rotate_key: bool = True
    retire_min: int = 10
    ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.retire_min < 0:
            raise ValueError("retire_min: must be 0 (never) or more")
        if self.ttl_s <= 0:
            raise ValueError("ttl_s: must be > 0")

    def for_command(self, opcode: str, target_kind: str) -> str | None:
        """The approval action a command needs (None: it is queued at once)."""
        if opcode == "wipe" and self.wipe:
            return "command.wipe"
        if opcode == "rotate_key" and self.rotate_key:
            return "keys.rotate"
        if opcode == "lock" and target_kind == "fleet" and self.fleet_lock:
            return "command.lock.fleet"
        if opcode == "lock" and target_kind == "group" and self.group_lock:
            return "command.lock.group"
        return None

    def for_retire(self, count: int) -> str | None:
        """The approval action retiring ``count`` devices at once needs, or None."""
        return "devices.retire" if self.retire_min and count >= self.retire_min else None

    def for_rotation(self) -> str | None:
        """The approval action a server key rotation needs, or None."""
        return "keys.rotate" if self.rotate_key else None


@dataclass(frozen=True)
class Admin:
    """An administrator as the approval records them: who, and the certificate used."""

    actor: Actor
    fingerprint: str = ""


Execute = Callable[[Connection, Actor, Approved], Mapping[str, Any]]
"""Carries out an approved request in the approval's transaction: gets the
connection, the requester and who approved; returns the result to record."""


@dataclass(frozen=True)
class Decision:
    """What a decision did: the approval as it is now; ``refused`` says why it was not
    carried out (it had expired), None when it was."""

    record: ApprovalRecord
    refused: str | None = None


def request_approval_txn(conn: Connection, admin: Admin, *, action: str,
                         request: Mapping[str, Any], target: str | None, now: datetime,
                         ttl: timedelta) -> ApprovalRecord:
    """Record ``request`` as pending approval ``action``; audited as ``approval.request``."""
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown approval action {action!r}", field="action")
    record = insert_approval_txn(
        conn, action=action, request=request, target=target, requested_by=admin.actor.name,
        requested_role=admin.actor.role, requested_fp=admin.fingerprint,
        requested_at=now, expires_at=now + ttl)
    append_audit_txn(conn, actor=admin.actor.name, role=admin.actor.role,
                     action="approval.request", target=target,
                     details={"approval": record.id, "action": action,
                              "expires_at": record.expires_at.isoformat()})
    return record


def _pending(conn: Connection, admin: Admin, approval_id: int, verb: str) -> ApprovalRecord:
    record = get_approval_txn(conn, approval_id, lock=True)
    if record is None:
        raise NotFound(f"no approval with id {approval_id}")
    if record.status != "pending":
        raise Refused(f"approval {approval_id} is already {record.status}")
    if record.requested_by == admin.actor.name:
        raise Conflict(f"approval {approval_id} was requested by {admin.actor.name}: "
                       f"another administrator must {verb} it")
    return record


def _expired(conn: Connection, record: ApprovalRecord, now: datetime) -> Decision | None:
    if record.expires_at > now:
        return None
    expired = decide_approval_txn(conn, record.id, status="expired", decided_by=None,
                                  decided_fp=None, decided_at=record.expires_at)
    append_audit_txn(conn, actor=record.requested_by, role=record.requested_role,
                     action="approval.expire", target=record.target,
                     details={"approval": record.id, "action": record.action})
    return Decision(expired, refused=f"approval {record.id} expired at "
                                     f"{record.expires_at.isoformat()}")


def check_approvable_txn(conn: Connection, admin: Admin, approval_id: int, *,
                         now: datetime) -> ApprovalRecord:
    """Raise as :func:`approve_txn` would (without deciding or marking anything): for
    work to prepare first.  An expired approval is returned (its ``expires_at`` says
    so): :func:`approve_txn` marks it."""
    return _pending(conn, admin, approval_id, "approve")


def approve_txn(conn: Connection, admin: Admin, approval_id: int, *, now: datetime,
                execute: Execute) -> Decision:
    """Approve a pending approval and carry out its request (``execute``) now.

    Raises :class:`NotFound`, :class:`Refused` (already decided) or
    :class:`Conflict` (the requester cannot approve their own request).  An
    approval past its expiry is marked expired and not carried out
    (``Decision.refused``).  Audited as ``approval.approve`` with both names.
    """
    record = _pending(conn, admin, approval_id, "approve")
    expired = _expired(conn, record, now)
    if expired is not None:
        return expired
    requester = Actor(record.requested_by, record.requested_role)
    result = execute(conn, requester, Approved(approval_id, admin.actor))
    decided = decide_approval_txn(conn, approval_id, status="approved",
                                  decided_by=admin.actor.name, decided_fp=admin.fingerprint,
                                  decided_at=now, result=result)
    append_audit_txn(conn, actor=admin.actor.name, role=admin.actor.role,
                     action="approval.approve", target=record.target,
                     details={"approval": approval_id, "action": record.action,
                              "requested_by": record.requested_by,
                              "approved_by": admin.actor.name, "result": dict(result)})
    return Decision(decided)


def reject_txn(conn: Connection, admin: Admin, approval_id: int, *, now: datetime,
               reason: str | None = None) -> Decision:
    """Reject a pending approval (nothing is carried out); audited as ``approval.reject``."""
    record = _pending(conn, admin, approval_id, "reject")
    expired = _expired(conn, record, now)
    if expired is not None:
        return expired
    decided = decide_approval_txn(conn, approval_id, status="rejected",
                                  decided_by=admin.actor.name, decided_fp=admin.fingerprint,
                                  decided_at=now, reason=reason)
    append_audit_txn(conn, actor=admin.actor.name, role=admin.actor.role,
                     action="approval.reject", target=record.target,
                     details={"approval": approval_id, "action": record.action,
                              "requested_by": record.requested_by, "reason": reason})
    return Decision(decided)


def list_approvals_page_txn(conn: Connection, actor: Actor, *, now: datetime,
                            status: str | None = None, before_id: int | None = None,
                            limit: int = 50) -> list[ApprovalRecord]:
    """Approvals newest first (those past their expiry are marked expired first)."""
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"unknown status {status!r}; one of {', '.join(STATUSES)}",
                             field="status")
    expire_due_txn(conn, now)
    return list_approvals_txn(conn, status=status, before_id=before_id, limit=limit)


def approval_json(record: ApprovalRecord) -> dict[str, Any]:
    """An approval as the admin API shows it."""
    decided = None if record.decided_by is None else {
        "name": record.decided_by, "fingerprint": record.decided_fp or ""}
    return {"id": record.id, "action": record.action, "request": dict(record.request),
            "target": record.target,
            "requested_by": {"name": record.requested_by, "fingerprint": record.requested_fp},
            "requested_at": record.requested_at.isoformat(),
            "expires_at": record.expires_at.isoformat(), "status": record.status,
            "decided_by": decided,
            "decided_at": record.decided_at.isoformat() if record.decided_at else None,
            "reason": record.reason,
            "result": dict(record.result) if record.result is not None else None}
