"""The monthly partitions of ``messages``: listing them and creating the months ahead.

``messages`` is range-partitioned on ``created_at`` (UTC months), with a
default partition for rows outside every range (a clock far ahead, a month
not created in time) so an insert never fails for want of a partition.
``message_partitions`` lists every partition the schema made, with its
bounds and whether it was archived or dropped (:mod:`blobstore.archive`).

:func:`ensure_partitions_txn` creates the months up to ``months_ahead``
after the current one; MEPL runs it at start and every few hours, and
``mepl db partitions --ensure`` by hand.  Several processes may run it at
once: an advisory lock makes them take turns.  If rows of a new month are
already in the default partition, they are moved into the new partition in
the same transaction.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

PREFIX = "messages_part_"
DEFAULT_PARTITION = "messages_part_default"
MONTHS_AHEAD = 3
ENSURE_LOCK_ID = 0x6D706172  # "mpar"
LOCK_TIMEOUT = "5s"


class PartitionError(Exception):
    """The partitions cannot be managed as asked (the message says why and what to do)."""


def is_partition_table(name: str | None) -> bool:
    """Whether ``name`` is one of the partitions (not the ``messages`` table itself)."""
    return bool(name) and str(name).startswith(PREFIX)


def include_in_schema_compare(name: str | None, kind: str, _parents: object) -> bool:
    """Alembic's ``include_name``: every object but the partitions (managed here)."""
    return not (kind == "table" and is_partition_table(name))


def month_start(when: datetime) -> datetime:
    """The first instant of ``when``'s month, in UTC."""
    utc = when.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def add_months(month: datetime, count: int) -> datetime:
    """The first instant of the month ``count`` months after ``month`` (a month start)."""
    index = month.year * 12 + month.month - 1 + count
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    """``messages_part_2027_01`` for the partition holding January 2027."""
    return f"{PREFIX}{month:%Y_%m}"


@dataclasses.dataclass(frozen=True)
class Partition:
    """One partition of ``messages`` as ``message_partitions`` and the catalog see it."""

    name: str
    lower: datetime | None
    upper: datetime | None
    is_default: bool
    state: str
    attached: bool
    rows_estimate: int | None
    bytes: int | None
    archived_at: datetime | None
    archive_file: str | None
    archive_sha256: str | None
    archive_rows: int | None

    def range_text(self) -> str:
        """``2027-01-01 .. 2027-02-01`` (UTC), ``.. 2026-12-01`` or ``default``."""
        if self.is_default:
            return "default"
        low = "" if self.lower is None else f"{self.lower.astimezone(UTC):%Y-%m-%d}"
        high = "" if self.upper is None else f"{self.upper.astimezone(UTC):%Y-%m-%d}"
        return f"{low} .. {high}".strip()

    def to_json(self) -> dict[str, Any]:
        """The partition as JSON-ready values (times in ISO 8601)."""
        out = dataclasses.asdict(self)
        for key in ("lower", "upper", "archived_at"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


_LIST = text("""
SELECT p.name, p.lower, p.upper, p.is_default, p.state,
       (i.inhrelid IS NOT NULL) AS attached,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END AS rows_estimate,
       CASE WHEN c.oid IS NOT NULL THEN pg_total_relation_size(c.oid) END AS bytes,
       p.archived_at, p.archive_file, p.archive_sha256, p.archive_rows
FROM message_partitions p
LEFT JOIN pg_class c ON c.relname = p.name
    AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'messages'::regclass)
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'messages'::regclass
ORDER BY p.is_default, p.lower NULLS FIRST
""")


def list_partitions_txn(conn: Connection) -> list[Partition]:
    """Every partition ``message_partitions`` knows, oldest first, the default last."""
    return [Partition(**row._mapping) for row in conn.execute(_LIST)]


def _literal(when: datetime) -> str:
    # DDL takes no parameters; the value is a datetime we computed, never input.
    return "'" + when.astimezone(UTC).isoformat() + "'"


def _create_month(conn: Connection, lower: datetime) -> str:
    upper = add_months(lower, 1)
    name = partition_name(lower)
    bounds = f"FOR VALUES FROM ({_literal(lower)}) TO ({_literal(upper)})"
    strays = conn.execute(text(
        f"SELECT count(*) FROM {DEFAULT_PARTITION} "  # noqa: S608 - constant name
        "WHERE created_at >= :lower AND created_at < :upper"),
        {"lower": lower, "upper": upper}).scalar_one()
    if strays:
        conn.execute(text(f"ALTER TABLE messages DETACH PARTITION {DEFAULT_PARTITION}"))
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF messages {bounds}"))
        conn.execute(text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "  # noqa: S608
            "WHERE created_at >= :lower AND created_at < :upper RETURNING *) "
            "INSERT INTO messages SELECT * FROM moved"), {"lower": lower, "upper": upper})
        conn.execute(text(f"ALTER TABLE messages ATTACH PARTITION {DEFAULT_PARTITION} DEFAULT"))
    else:
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF messages {bounds}"))
    conn.execute(text(
        "INSERT INTO message_partitions (name, lower, upper) VALUES (:name, :lower, :upper)"),
        {"name": name, "lower": lower, "upper": upper})
    return name


def ensure_partitions_txn(conn: Connection, *, now: datetime,
                          months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create the monthly partitions through ``months_ahead`` months after ``now``'s.

    Returns the names created (empty when all exist).  Waits at most
    :data:`LOCK_TIMEOUT` for the table locks (the caller retries later).
    """
    if not 0 <= months_ahead <= 120:
        raise PartitionError(f"months ahead must be 0 to 120, not {months_ahead}")
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ENSURE_LOCK_ID})
    top = conn.execute(text(
        "SELECT max(upper) FROM message_partitions WHERE NOT is_default")).scalar_one()
    if top is None:
        raise PartitionError("no message partitions: run `mepl db upgrade`")
    end = add_months(month_start(now), months_ahead + 1)
    lower = month_start(top)
    if lower != top.astimezone(UTC):
        raise PartitionError(f"the newest partition ends at {top}, not at a month start")
    created = []
    while lower < end:
        created.append(_create_month(conn, lower))
        lower = add_months(lower, 1)
    return created


def default_partition_rows_txn(conn: Connection) -> int:
    """Rows in the default partition: none unless a month was missing when they came."""
    return int(conn.execute(text(
        f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar_one())  # noqa: S608


_MONTHS_AHEAD = text(
    "SELECT (extract(year FROM top) - extract(year FROM cur)) * 12 "
    "+ extract(month FROM top) - extract(month FROM cur) - 1 "
    "FROM (SELECT max(upper) AT TIME ZONE 'UTC' AS top, "
    "coalesce(CAST(:now AS timestamptz), now()) AT TIME ZONE 'UTC' AS cur "
    "FROM message_partitions WHERE NOT is_default) AS m")


def months_ahead_txn(conn: Connection, *, now: datetime | None = None) -> int:
    """Whole months covered by partitions after ``now``'s month (the database's
    clock by default); negative if behind, -1 without any partition."""
    ahead = conn.execute(_MONTHS_AHEAD, {"now": now}).scalar()
    return -1 if ahead is None else int(ahead)
