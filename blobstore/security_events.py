"""Security events: verified alerts and what the server noticed about a device.

Examples: an alert (``alert:sim_changed``), a SIM-change alert relayed from a
number other than the one it reports (``sender_mismatch``), an alert raised
too long ago (``stale_alert``).  Written in the transaction that applies the
message they are about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from blobstore.prepared import Prepared
from blobstore.schema import security_events


@dataclass(frozen=True)
class SecurityEventRecord:
    """One security event (plain data)."""

    id: int
    device_id: int | None
    kind: str
    message_id: int | None
    at: datetime
    details: Mapping[str, Any]


def record_security_event_txn(conn: Connection, *, device_id: int | None, kind: str,
                              message_id: int | None, now: datetime,
                              details: Mapping[str, Any] | None = None) -> int:
    """Append one security event; return its id."""
    return int(conn.execute(insert(security_events).values(
        device_id=device_id, kind=kind, message_id=message_id, at=now,
        details=dict(details or {})).returning(security_events.c.id)).scalar_one())


@dataclass(frozen=True)
class NewSecurityEvent:
    """A security event to append (see :func:`record_security_events_txn`)."""

    device_id: int | None
    kind: str
    message_id: int | None
    at: datetime
    details: Mapping[str, Any]


_INSERT_MANY = Prepared("insert_security_events", (
    "INSERT INTO security_events (device_id, kind, message_id, at, details) "
    "SELECT v.device_id, v.kind, v.message_id, v.at, CAST(v.details AS jsonb) "
    "FROM unnest(:device_ids, :kinds, :message_ids, :ats, :details) WITH ORDINALITY "
    "AS v(device_id, kind, message_id, at, details, n) ORDER BY v.n"  # ids in the order given
), {"device_ids": "bigint[]", "kinds": "text[]", "message_ids": "bigint[]",
    "ats": "timestamptz[]", "details": "text[]"})


def record_security_events_txn(conn: Connection, events: Sequence[NewSecurityEvent]) -> None:
    """Append several security events at once (one statement, ids in the order given)."""
    if events:
        _INSERT_MANY(conn, {
            "device_ids": [e.device_id for e in events], "kinds": [e.kind for e in events],
            "message_ids": [e.message_id for e in events], "ats": [e.at for e in events],
            "details": [json.dumps(dict(e.details)) for e in events]})


def device_security_events_txn(conn: Connection, device_id: int, *,
                               limit: int = 100) -> list[SecurityEventRecord]:
    """A device's security events, newest first."""
    rows = conn.execute(select(security_events).where(security_events.c.device_id == device_id)
                        .order_by(security_events.c.id.desc()).limit(limit)).all()
    return [SecurityEventRecord(**dict(r._mapping)) for r in rows]
