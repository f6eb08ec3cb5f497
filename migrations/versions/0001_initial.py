"""Initial schema: devices, identity history, groups, counters, commands, messages, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

The audit table is append-only: a trigger refuses UPDATE and DELETE per row
and TRUNCATE per statement, for every role including the owner.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_FUNCTION = """
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_at"), "audit", ["at"], unique=False)
    op.execute(AUDIT_FUNCTION)
    op.execute(
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("imei", sa.CHAR(length=15), nullable=False),
        sa.Column("imsi", sa.Text(), nullable=True),
        sa.Column("msisdn", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), server_default="unprovisioned", nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("counter_hwm", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("counter_window", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("imei ~ '^[0-9]{15}$'", name=op.f("ck_devices_imei_digits")),
        sa.CheckConstraint("imsi ~ '^[0-9]{6,15}$'", name=op.f("ck_devices_imsi_digits")),
        sa.CheckConstraint("msisdn ~ '^[+][1-9][0-9]{1,14}$'", name=op.f("ck_devices_msisdn_e164")),
        sa.CheckConstraint(
            "state IN ('unprovisioned', 'provisioned', 'locked', 'lost', 'retired')",
            name=op.f("ck_devices_state"),
        ),
        sa.CheckConstraint("counter_hwm >= 0", name=op.f("ck_devices_counter_hwm")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("imei", name=op.f("uq_devices_imei")),
    )
    op.create_index(op.f("ix_devices_imsi"), "devices", ["imsi"], unique=False)
    op.create_index(op.f("ix_devices_msisdn"), "devices", ["msisdn"], unique=False)
    op.create_table(
        "groups",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'", name=op.f("ck_groups_name")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_groups_name")),
    )
    op.create_table(
        "commands",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("opcode", sa.Text(), nullable=False),
        sa.Column(
            "arguments",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("state", sa.Text(), server_default="queued", nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default="100", nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("frame", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'sending', 'sent', 'delivered', 'replied', "
            "'done', 'failed', 'expired', 'cancelled')",
            name=op.f("ck_commands_state"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_commands_attempts")),
        sa.CheckConstraint("priority BETWEEN 0 AND 1000", name=op.f("ck_commands_priority")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_commands_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
    )
    op.create_index(
        op.f("ix_commands_device_id_created_at"),
        "commands",
        ["device_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_commands_state_priority_created_at"),
        "commands",
        ["state", "priority", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_commands_key_id_device_id_counter",
        "commands",
        ["key_id", "device_id", "counter"],
        unique=True,
        postgresql_where=sa.text("counter IS NOT NULL"),
    )
    op.create_table(
        "device_identity_history",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('imsi', 'msisdn')", name=op.f("ck_device_identity_history_kind")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_identity_history_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_identity_history")),
    )
    op.create_index(
        op.f("ix_device_identity_history_device_id_changed_at"),
        "device_identity_history",
        ["device_id", "changed_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_device_identity_history_kind_new_value"),
        "device_identity_history",
        ["kind", "new_value"],
        unique=False,
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_group_members_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_group_members_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "device_id", name=op.f("pk_group_members")),
    )
    op.create_index(
        op.f("ix_group_members_device_id"), "group_members", ["device_id"], unique=False
    )
    op.create_table(
        "server_key_counters",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("next_counter", sa.BigInteger(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "next_counter BETWEEN 1 AND 281474976710656", name=op.f("ck_server_key_counters_range")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_server_key_counters_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", "device_id", name=op.f("pk_server_key_counters")),
    )
    op.create_index(
        op.f("ix_server_key_counters_device_id"), "server_key_counters", ["device_id"], unique=False
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("peer", sa.Text(), nullable=True),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("command_id", sa.BigInteger(), nullable=True),
        sa.Column("smsc_message_id", sa.Text(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("part_seq", sa.SmallInteger(), nullable=True),
        sa.Column("part_total", sa.SmallInteger(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("meta", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("channel IN ('smpp', 'http')", name=op.f("ck_messages_channel")),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_messages_direction")),
        sa.CheckConstraint("kind ~ '^[a-z][a-z0-9_-]{0,31}$'", name=op.f("ck_messages_kind")),
        sa.CheckConstraint("octet_length(sha256) = 32", name=op.f("ck_messages_sha256_length")),
        sa.CheckConstraint(
            "part_seq IS NULL OR (part_seq >= 1 AND part_seq <= part_total)",
            name=op.f("ck_messages_parts"),
        ),
        sa.ForeignKeyConstraint(
            ["command_id"], ["commands.id"], name=op.f("fk_messages_command_id_commands")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_messages_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(op.f("ix_messages_command_id"), "messages", ["command_id"], unique=False)
    op.create_index(
        op.f("ix_messages_device_id_created_at"),
        "messages",
        ["device_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_messages_link_smsc_message_id"),
        "messages",
        ["link", "smsc_message_id"],
        unique=False,
    )
    op.create_index(
        "uq_messages_direction_link_external_id",
        "messages",
        ["direction", "link", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_messages_direction_link_external_id",
        table_name="messages",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_messages_link_smsc_message_id"), table_name="messages")
    op.drop_index(op.f("ix_messages_device_id_created_at"), table_name="messages")
    op.drop_index(op.f("ix_messages_command_id"), table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_server_key_counters_device_id"), table_name="server_key_counters")
    op.drop_table("server_key_counters")
    op.drop_index(op.f("ix_group_members_device_id"), table_name="group_members")
    op.drop_table("group_members")
    op.drop_index(
        op.f("ix_device_identity_history_kind_new_value"), table_name="device_identity_history"
    )
    op.drop_index(
        op.f("ix_device_identity_history_device_id_changed_at"),
        table_name="device_identity_history",
    )
    op.drop_table("device_identity_history")
    op.drop_index(
        "uq_commands_key_id_device_id_counter",
        table_name="commands",
        postgresql_where=sa.text("counter IS NOT NULL"),
    )
    op.drop_index(op.f("ix_commands_state_priority_created_at"), table_name="commands")
    op.drop_index(op.f("ix_commands_device_id_created_at"), table_name="commands")
    op.drop_table("commands")
    op.drop_table("groups")
    op.drop_index(op.f("ix_devices_msisdn"), table_name="devices")
    op.drop_index(op.f("ix_devices_imsi"), table_name="devices")
    op.drop_table("devices")
    op.drop_index(op.f("ix_audit_at"), table_name="audit")
    op.drop_table("audit")
    op.execute("DROP FUNCTION audit_append_only()")
