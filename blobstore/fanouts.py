"""Fan-out records: one row per command sent to a group or the whole fleet.

The commands of a fan-out carry its id (``commands.fanout_id``); its progress
is counted in the database, one GROUP BY over the index on
(``fanout_id``, ``state``), however many commands it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from blobstore.schema import commands, fanouts


@dataclass(frozen=True)
class FanoutRecord:
    """A fan-out (plain data): what was sent to whom, by whom, to how many devices."""

    id: int
    opcode: str
    target: str
    count: int
    requested_by: str
    created_at: datetime


def create_fanout_txn(conn: Connection, *, opcode: str, target: str,
                      requested_by: str) -> int:
    """Record a fan-out (its count is set once its commands are queued); return its id."""
    return int(conn.execute(
        insert(fanouts).values(opcode=opcode, target=target, requested_by=requested_by)
        .returning(fanouts.c.id)).scalar_one())


def set_fanout_count_txn(conn: Connection, fanout_id: int, count: int) -> None:
    """Record how many commands the fan-out queued."""
    conn.execute(update(fanouts).where(fanouts.c.id == fanout_id).values(count=count))


def get_fanout_txn(conn: Connection, fanout_id: int) -> FanoutRecord | None:
    """One fan-out, or None."""
    row = conn.execute(select(fanouts).where(fanouts.c.id == fanout_id)).first()
    return FanoutRecord(**dict(row._mapping)) if row is not None else None


def fanout_states_txn(conn: Connection, fanout_id: int) -> dict[str, int]:
    """How many of the fan-out's commands are in each state (states with none left out)."""
    rows = conn.execute(
        select(commands.c.state, func.count())
        .where(commands.c.fanout_id == fanout_id)
        .group_by(commands.c.state)).all()
    return {str(r[0]): int(r[1]) for r in rows}
