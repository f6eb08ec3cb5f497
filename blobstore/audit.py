"""The audit trail: append-only records of admin actions.

The database refuses UPDATE, DELETE and TRUNCATE on the table (a trigger
created by the migration), so a row once committed stays as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from blobstore.schema import audit


@dataclass(frozen=True)
class AuditRecord:
    """One audit row."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str | None
    details: Mapping[str, Any]


def append_audit_txn(conn: Connection, *, actor: str, role: str, action: str,
                     target: str | None = None,
                     details: Mapping[str, Any] | None = None,
                     request_id: str | None = None) -> int:
    """Append one audit row (``details`` must be JSON-serialisable); return its id.

    ``request_id`` (an admin API request's id) is unique: a second row with
    the same id raises :class:`sqlalchemy.exc.IntegrityError`.
    """
    return int(conn.execute(
        insert(audit).values(actor=actor, role=role, action=action, target=target,
                             details=dict(details or {}), request_id=request_id)
        .returning(audit.c.id)
    ).scalar_one())


def recent_audit_txn(conn: Connection, *, limit: int = 100,
                     action: str | None = None) -> list[AuditRecord]:
    """The latest audit rows, newest first (optionally of one action)."""
    query = select(audit)
    if action is not None:
        query = query.where(audit.c.action == action)
    rows = conn.execute(query.order_by(audit.c.id.desc()).limit(limit)).all()
    return [AuditRecord(r.id, r.at, r.actor, r.role, r.action, r.target, r.details)
            for r in rows]
