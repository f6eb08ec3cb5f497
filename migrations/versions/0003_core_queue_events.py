"""The core made true: the inbound queue, command events, per-device server keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

- ``inbound_queue``: every stored inbound item (gateway callback, MO part,
  delivery receipt) has a row here until one transaction applies it; workers
  in any process claim rows with a lease.  It replaces the recovery sweep
  over ``messages`` (and its partial index).
- ``command_events``: one row per command transition, appended in the same
  transaction.  Existing commands get one ``migrated`` event with their
  current state.
- ``device_server_keys``: the server key each device has accepted.
- ``security_events``: verified alerts and what the server noticed about a device.
- Command states: ``refused`` (the device said no) is new; ``replied`` (a
  state no transaction ever left a command in) becomes ``done``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_STATES = ("queued", "sending", "sent", "delivered", "done", "refused", "failed",
              "expired", "cancelled")
OLD_STATES = ("queued", "sending", "sent", "delivered", "replied", "done", "failed",
              "expired", "cancelled")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _jsonb() -> postgresql.JSONB:
    return postgresql.JSONB(astext_type=sa.Text())


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.execute("UPDATE commands SET state = 'done' WHERE state = 'replied'")
    op.drop_constraint(op.f("ck_commands_state"), "commands", type_="check")
    op.create_check_constraint("state", "commands", _in("state", NEW_STATES))
    op.drop_index("ix_messages_unprocessed_callbacks", table_name="messages")

    op.create_table(
        "command_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("command_id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("details", _jsonb(), server_default=sa.text("'{}'"), nullable=False),
        sa.ForeignKeyConstraint(["command_id"], ["commands.id"], ondelete="CASCADE",
                                name=op.f("fk_command_events_command_id_commands")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_events")),
    )
    op.create_index(op.f("ix_command_events_command_id_id"), "command_events",
                    ["command_id", "id"])
    op.create_index(op.f("ix_command_events_device_id_id"), "command_events",
                    ["device_id", "id"])
    op.execute(
        "INSERT INTO command_events (command_id, device_id, from_state, to_state, event, "
        "actor, at) SELECT id, device_id, NULL, state, 'migrated', 'migration:0003', "
        "updated_at FROM commands ORDER BY id"
    )

    op.create_table(
        "inbound_queue",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default="pending", nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("smsc_message_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('callback', 'mo', 'dlr')",
                           name=op.f("ck_inbound_queue_kind")),
        sa.CheckConstraint("state IN ('pending', 'waiting', 'failed')",
                           name=op.f("ck_inbound_queue_state")),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name=op.f("fk_inbound_queue_message_id_messages")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_queue")),
        sa.UniqueConstraint("message_id", name=op.f("uq_inbound_queue_message_id")),
    )
    op.create_index("ix_inbound_queue_due", "inbound_queue", ["available_at", "id"],
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_inbound_queue_receipts", "inbound_queue", ["link", "smsc_message_id"],
                    postgresql_where=sa.text("kind = 'dlr'"))
    op.create_index("ix_inbound_queue_waiting", "inbound_queue", ["created_at"],
                    postgresql_where=sa.text("state = 'waiting'"))
    # Callbacks acknowledged but never processed under 0002 are queued now.
    op.execute(
        "INSERT INTO inbound_queue (message_id, kind, link) SELECT id, 'callback', link "
        "FROM messages WHERE channel = 'http' AND direction = 'in' AND kind IN ('mo', 'dlr') "
        "AND error IS NULL AND (meta ->> 'processed') IS NULL AND external_id IS NOT NULL "
        "ORDER BY id"
    )

    op.create_table(
        "device_server_keys",
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name=op.f("fk_device_server_keys_device_id_devices")),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_server_keys")),
    )
    op.create_index(op.f("ix_device_server_keys_key_id"), "device_server_keys", ["key_id"])

    op.create_table(
        "security_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("details", _jsonb(), server_default=sa.text("'{}'"), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE",
                                name=op.f("fk_security_events_device_id_devices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
    )
    op.create_index(op.f("ix_security_events_device_id_id"), "security_events",
                    ["device_id", "id"])
    op.create_index(op.f("ix_security_events_at"), "security_events", ["at"])


def downgrade() -> None:
    op.drop_table("security_events")
    op.drop_table("device_server_keys")
    op.drop_table("inbound_queue")
    op.drop_table("command_events")
    op.create_index(
        "ix_messages_unprocessed_callbacks", "messages", ["created_at"],
        postgresql_where=sa.text(
            "channel = 'http' AND direction = 'in' AND kind IN ('mo', 'dlr') "
            "AND error IS NULL AND (meta ->> 'processed') IS NULL"),
    )
    op.execute("UPDATE commands SET state = 'failed' WHERE state = 'refused'")
    op.drop_constraint(op.f("ck_commands_state"), "commands", type_="check")
    op.create_check_constraint("state", "commands", _in("state", OLD_STATES))
