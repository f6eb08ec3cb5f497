"""The dispatcher's claim reads the queue in index order, and stops at its limit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

The claim takes due commands ``ORDER BY priority, created_at, id LIMIT n``.
The index on (state, priority, created_at) could not give that order: every
command of a fan-out has the same ``created_at``, so PostgreSQL read all the
queued rows and sorted them by id for each claim (2,000 rows read for 200
claimed at 5,000 devices; the whole queue at 100,000).  The index now ends
with ``id``, the claim's whole order: the scan stops after ``n`` rows,
whatever the queue's depth.

Building it locks ``commands`` against writes for the time it takes (about
a second per million commands): run the upgrade with ``mepl run`` stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_commands_state_priority_created_at_id", "commands",
                    ["state", "priority", "created_at", "id"])
    op.drop_index("ix_commands_state_priority_created_at", table_name="commands")


def downgrade() -> None:
    op.create_index("ix_commands_state_priority_created_at", "commands",
                    ["state", "priority", "created_at"])
    op.drop_index("ix_commands_state_priority_created_at_id", table_name="commands")
