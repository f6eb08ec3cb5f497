"""Approvals: actions that wait for a second administrator (two-person approval).

A pending approval holds the original request; the action itself is carried
out only when another administrator approves it, in that approval's
transaction.  Rows are locked (``FOR UPDATE``) before a decision, so two
administrators deciding at once serialise: one wins, the other sees the
decision made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from blobstore.schema import approvals


@dataclass(frozen=True)
class ApprovalRecord:
    """One approval row (plain data)."""

    id: int
    action: str
    request: Mapping[str, Any]
    target: str | None
    requested_by: str
    requested_role: str
    requested_fp: str
    requested_at: datetime
    expires_at: datetime
    status: str
    decided_by: str | None
    decided_fp: str | None
    decided_at: datetime | None
    reason: str | None
    result: Mapping[str, Any] | None


def _record(row: Any) -> ApprovalRecord:
    return ApprovalRecord(**dict(row._mapping))


def insert_approval_txn(conn: Connection, *, action: str, request: Mapping[str, Any],
                        target: str | None, requested_by: str, requested_role: str,
                        requested_fp: str, requested_at: datetime,
                        expires_at: datetime) -> ApprovalRecord:
    """Record a pending approval; return it."""
    row = conn.execute(insert(approvals).values(
        action=action, request=dict(request), target=target, requested_by=requested_by,
        requested_role=requested_role, requested_fp=requested_fp,
        requested_at=requested_at, expires_at=expires_at).returning(*approvals.c)).one()
    return _record(row)


def get_approval_txn(conn: Connection, approval_id: int, *,
                     lock: bool = False) -> ApprovalRecord | None:
    """One approval (locked for a decision with ``lock``), or None."""
    query = select(approvals).where(approvals.c.id == approval_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return _record(row) if row is not None else None


def decide_approval_txn(conn: Connection, approval_id: int, *, status: str,
                        decided_by: str | None, decided_fp: str | None,
                        decided_at: datetime, reason: str | None = None,
                        result: Mapping[str, Any] | None = None) -> ApprovalRecord:
    """Record the decision on a pending approval (approved, rejected or expired)."""
    row = conn.execute(
        update(approvals).where(approvals.c.id == approval_id)
        .values(status=status, decided_by=decided_by, decided_fp=decided_fp,
                decided_at=decided_at, reason=reason,
                result=dict(result) if result is not None else None)
        .returning(*approvals.c)).one()
    return _record(row)


def expire_due_txn(conn: Connection, now: datetime) -> int:
    """Mark every pending approval past its expiry as expired; return how many."""
    return int(conn.execute(
        update(approvals).where(approvals.c.status == "pending",
                                approvals.c.expires_at <= now)
        .values(status="expired", decided_at=approvals.c.expires_at)).rowcount)


def list_approvals_txn(conn: Connection, *, status: str | None = None,
                       before_id: int | None = None, limit: int = 50) -> list[ApprovalRecord]:
    """Approvals, newest first, of one ``status``, with ids below ``before_id``."""
    query = select(approvals)
    if status is not None:
        query = query.where(approvals.c.status == status)
    if before_id is not None:
        query = query.where(approvals.c.id < before_id)
    rows = conn.execute(query.order_by(approvals.c.id.desc()).limit(limit)).all()
    return [_record(r) for r in rows]
