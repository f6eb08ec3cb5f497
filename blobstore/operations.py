"""Read-only statements for operations: readiness and the state gauges of ``/metrics``.

Each is cheap enough to run every few seconds on a big database: every count
is read from an index (``commands`` by its (state, priority, created_at)
index, the inbound queue by its partial per-state indexes), never by a
sequential scan of the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from blobstore.migrate import current_revision
from blobstore.partitions import DEFAULT_PARTITION, months_ahead_txn
from blobstore.schema import COMMAND_STATES, INBOUND_STATES

# One index-only count per state (the state is the index's first column); the
# planner is told not to pick a sequential scan, which it would for the
# biggest state (done) although the index answers it without the heap's rows.
COMMANDS_BY_STATE = text(
    "SELECT s.state, (SELECT count(*) FROM commands AS c WHERE c.state = s.state) "
    "FROM unnest(CAST(:states AS text[])) AS s(state)"
)
# Every state has its own partial index (ix_inbound_queue_due, _waiting, _failed).
INBOUND_BY_STATE = text(
    "SELECT count(*), extract(epoch FROM now() - min(created_at)) "
    "FROM inbound_queue WHERE state = :state"
)


# The default partition should stay empty; counting stops at a bound so a
# default partition that filled up is never scanned whole every few seconds.
DEFAULT_PARTITION_ROWS = text(
    f"SELECT count(*) FROM (SELECT 1 FROM {DEFAULT_PARTITION} LIMIT 100000) AS d")  # noqa: S608


@dataclass(frozen=True)
class OperationalCounts:
    """Commands per state; inbound queue items per state and the age of the oldest (s);
    the message partitions' months ahead and the rows in the default partition."""

    commands: dict[str, int]
    inbound: dict[str, int]
    inbound_oldest_s: dict[str, float]
    partition_months_ahead: int = 0
    default_partition_rows: int = 0


def operational_counts_txn(conn: Connection) -> OperationalCounts:
    """Counts for the state gauges, each from an index."""
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    commands = {str(state): int(n) for state, n in conn.execute(
        COMMANDS_BY_STATE, {"states": list(COMMAND_STATES)})}
    inbound: dict[str, int] = {}
    oldest: dict[str, float] = {}
    for state in INBOUND_STATES:
        n, age = conn.execute(INBOUND_BY_STATE, {"state": state}).one()
        inbound[state] = int(n)
        oldest[state] = float(age) if age is not None else 0.0
    strays = conn.execute(DEFAULT_PARTITION_ROWS).scalar_one()
    return OperationalCounts(commands, inbound, oldest, months_ahead_txn(conn), int(strays))


def schema_revision_txn(conn: Connection) -> str | None:
    """The schema revision the database is at (None: not migrated); proves it answers."""
    return current_revision(conn)
