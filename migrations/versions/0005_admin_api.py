"""The admin API: request ids in the audit, fan-out records, two-person approvals, live events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10

- ``audit.request_id``: the request id of an admin API request (the proxy's
  assertion ``rid``), unique, so a replayed assertion is refused by every MEPL
  process sharing the database (NULL for rows written by the CLI).
- ``fanouts``: one row per command sent to a group or the whole fleet;
  ``commands.fanout_id`` points at it, indexed with the state so the progress
  of a fan-out of a million commands is one GROUP BY on the index.
- ``approvals``: actions that wait for a second administrator.
- NOTIFY ``mepl_events`` after rows are appended to ``command_events`` or
  ``security_events`` (one per statement), so the live event streams of every
  process wake at once; they poll as the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPROVAL_STATUSES = ("pending", "approved", "rejected", "expired")


def _jsonb() -> postgresql.JSONB:
    return postgresql.JSONB(astext_type=sa.Text())


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.add_column("audit", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index(op.f("uq_audit_request_id"), "audit", ["request_id"], unique=True)

    op.create_table(
        "fanouts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("opcode", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fanouts")),
    )
    op.add_column("commands", sa.Column("fanout_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f("fk_commands_fanout_id_fanouts"), "commands", "fanouts",
                          ["fanout_id"], ["id"])
    op.create_index("ix_commands_fanout_id_state", "commands", ["fanout_id", "state"],
                    postgresql_where=sa.text("fanout_id IS NOT NULL"))

    op.create_table(
        "approvals",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("request", _jsonb(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("requested_role", sa.Text(), nullable=False),
        sa.Column("requested_fp", sa.Text(), server_default="", nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_fp", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", _jsonb(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected', 'expired')",
                           name=op.f("ck_approvals_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index(op.f("ix_approvals_status_id"), "approvals", ["status", "id"])

    op.execute("CREATE TRIGGER command_events_notify AFTER INSERT ON command_events "
               "FOR EACH STATEMENT EXECUTE FUNCTION mepl_notify('mepl_events')")
    op.execute("CREATE TRIGGER security_events_notify AFTER INSERT ON security_events "
               "FOR EACH STATEMENT EXECUTE FUNCTION mepl_notify('mepl_events')")


def downgrade() -> None:
    op.execute("DROP TRIGGER security_events_notify ON security_events")
    op.execute("DROP TRIGGER command_events_notify ON command_events")
    op.drop_index(op.f("ix_approvals_status_id"), table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_commands_fanout_id_state", table_name="commands")
    op.drop_constraint(op.f("fk_commands_fanout_id_fanouts"), "commands", type_="foreignkey")
    op.drop_column("commands", "fanout_id")
    op.drop_table("fanouts")
    op.drop_index(op.f("uq_audit_request_id"), table_name="audit")
    op.drop_column("audit", "request_id")
