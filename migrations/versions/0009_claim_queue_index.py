"""The claim reads an index of queued commands only; no index ends with ``id``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Migration 0008 put ``id`` last in the (state, priority, created_at) index so
the claim's scan could stop at its limit.  That made the index usable for any
condition on ``id``, as a scan of the whole index testing each entry.  A
prepared statement keeps the generic plan made when a session first ran it;
made while ``commands`` held one row (an idle system), a plan could read that
index instead of the primary key for a batch of ids, and keep doing so as the
table grew: more than half of PostgreSQL's CPU in a 20k fan-out went to one
such statement.

The claim now reads ``ix_commands_queue`` on (priority, created_at, id) for
queued commands only (a partial index: no statement without ``state =
'queued'`` can use it, and only queued commands are in it, so it stays small
and a command leaves it once claimed).  The state gauges, the housekeeping
and the admin pages by state read ``ix_commands_state`` on (state).

Building the indexes locks ``commands`` against writes for the time it takes
(about a second per million commands): run the upgrade with ``mepl run``
stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_commands_queue", "commands", ["priority", "created_at", "id"],
                    postgresql_where=sa.text("state = 'queued'"))
    op.create_index("ix_commands_state", "commands", ["state"])
    op.drop_index("ix_commands_state_priority_created_at_id", table_name="commands")


def downgrade() -> None:
    op.create_index("ix_commands_state_priority_created_at_id", "commands",
                    ["state", "priority", "created_at", "id"])
    op.drop_index("ix_commands_state", table_name="commands")
    op.drop_index("ix_commands_queue", table_name="commands")
