"""Operations: a partial index on parked inbound items, for the state gauges.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20

``/metrics`` counts the inbound queue per state every few seconds; pending
and waiting items have their partial indexes already, this gives the parked
ones (``state = 'failed'``) theirs, so no count scans the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_inbound_queue_failed", "inbound_queue", ["created_at"],
                    postgresql_where=sa.text("state = 'failed'"))


def downgrade() -> None:
    op.drop_index("ix_inbound_queue_failed", table_name="inbound_queue")
