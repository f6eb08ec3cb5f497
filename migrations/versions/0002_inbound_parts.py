"""Indexes for the inbound flow: stored parts to reassemble, callbacks to recover.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Parts of one message may reach different MEPL processes (several binds) or
straddle a restart, so they are collected from the ``messages`` table rather
than process memory: a partial index finds a sender's stored parts.  Gateway
callbacks are acknowledged once stored; a second partial index finds those
whose processing never finished (the process stopped), for recovery.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_inbound_parts", "messages", ["peer", "part_total", "created_at"],
        postgresql_where=sa.text("kind = 'mo' AND direction = 'in' AND part_total > 1"),
    )
    op.create_index(
        "ix_messages_unprocessed_callbacks", "messages", ["created_at"],
        postgresql_where=sa.text(
            "channel = 'http' AND direction = 'in' AND kind IN ('mo', 'dlr') "
            "AND error IS NULL AND (meta ->> 'processed') IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unprocessed_callbacks", table_name="messages")
    op.drop_index("ix_messages_inbound_parts", table_name="messages")
