"""Retention: ``messages`` partitioned by month; gateway ids move to ``message_keys``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

PostgreSQL allows a unique index on a partitioned table only when it holds
the partition key, so the gateway-id check (``uq_messages_direction_link_
external_id``) moves to a small ``message_keys`` table written in the same
transaction, and the primary key becomes (id, created_at).  The foreign key
from ``inbound_queue`` goes for the same reason (the archive command checks
instead that no queued item points into a partition it drops).

The existing table is kept as it is, renamed, and attached as the first
partition, open at the start and ending at the first month boundary after
its newest row (``messages_part_until_YYYY_MM``); the upgrade copies no
message.  Monthly partitions follow through three months ahead, then a
default partition catches anything outside them.  ``message_partitions``
lists them all.  MEPL creates the next months as time goes on
(``mepl db partitions --ensure`` does it by hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONTHS_AHEAD = 3
_INDEXES = (
    ("ix_messages_command_id", "command_id", "(command_id)", ""),
    ("ix_messages_device_id_created_at", "device_id_created_at", "(device_id, created_at)", ""),
    ("ix_messages_link_smsc_message_id", "link_smsc_message_id", "(link, smsc_message_id)", ""),
    ("ix_messages_inbound_parts", "inbound_parts", "(peer, part_total, created_at)",
     " WHERE kind = 'mo' AND direction = 'in' AND part_total > 1"),
)
_COLUMNS = """
    id bigint NOT NULL DEFAULT nextval('messages_id_seq'),
    direction text NOT NULL,
    channel text NOT NULL,
    kind text NOT NULL,
    link text,
    peer text,
    device_id bigint,
    command_id bigint,
    smsc_message_id text,
    external_id text,
    part_seq smallint,
    part_total smallint,
    payload bytea NOT NULL,
    sha256 bytea NOT NULL,
    error text,
    meta jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_messages_channel CHECK (channel IN ('smpp', 'http')),
    CONSTRAINT ck_messages_direction CHECK (direction IN ('in', 'out')),
    CONSTRAINT ck_messages_kind CHECK (kind ~ '^[a-z][a-z0-9_-]{0,31}$'),
    CONSTRAINT ck_messages_sha256_length CHECK (octet_length(sha256) = 32),
    CONSTRAINT ck_messages_parts CHECK (part_seq IS NULL OR (part_seq >= 1 AND part_seq <= part_total)),
    CONSTRAINT fk_messages_command_id_commands FOREIGN KEY (command_id) REFERENCES commands (id),
    CONSTRAINT fk_messages_device_id_devices FOREIGN KEY (device_id) REFERENCES devices (id)
"""  # noqa: E501


def _month(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


def _next(month: datetime) -> datetime:
    return _month(month.year, month.month + 1)


def upgrade() -> None:
    bind = op.get_bind()
    op.drop_constraint("fk_inbound_queue_message_id_messages", "inbound_queue",
                       type_="foreignkey")

    op.create_table(
        "message_keys",
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("direction", "link", "external_id", name="pk_message_keys"),
    )
    op.create_index("ix_message_keys_created_at", "message_keys", ["created_at"])
    op.execute(
        "INSERT INTO message_keys (direction, link, external_id, message_id, created_at) "
        "SELECT direction, coalesce(link, ''), external_id, id, created_at FROM messages "
        "WHERE external_id IS NOT NULL ON CONFLICT DO NOTHING")
    op.drop_index("uq_messages_direction_link_external_id", table_name="messages",
                  postgresql_where=sa.text("external_id IS NOT NULL"))

    op.create_table(
        "message_partitions",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("lower", sa.DateTime(timezone=True), nullable=True),
        sa.Column("upper", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("state", sa.Text(), server_default="attached", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archive_file", sa.Text(), nullable=True),
        sa.Column("archive_sha256", sa.Text(), nullable=True),
        sa.Column("archive_rows", sa.BigInteger(), nullable=True),
        sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('attached', 'archived', 'dropped')",
                           name="ck_message_partitions_state"),
        sa.CheckConstraint("is_default = (upper IS NULL)",
                           name="ck_message_partitions_default_bounds"),
        sa.PrimaryKeyConstraint("name", name="pk_message_partitions"),
    )

    # The existing rows stay where they are: the table becomes the first partition.
    now, newest = bind.execute(sa.text(
        "SELECT now(), max(created_at) FROM messages")).one()
    this_month = _month(now.astimezone(UTC).year, now.astimezone(UTC).month)
    first_upper = this_month
    if newest is not None:
        newest = newest.astimezone(UTC)
        first_upper = max(this_month, _next(_month(newest.year, newest.month)))
    first = f"messages_part_until_{first_upper:%Y_%m}"
    op.execute(f"ALTER TABLE messages RENAME TO {first}")
    op.execute(f"ALTER TABLE {first} DROP CONSTRAINT pk_messages")
    op.execute(f"ALTER TABLE {first} ADD CONSTRAINT {first}_pkey PRIMARY KEY (id, created_at)")
    for index, suffix, _, _ in _INDEXES:
        op.execute(f"ALTER INDEX {index} RENAME TO {first}_{suffix}")
    op.execute(f"CREATE TABLE messages ({_COLUMNS}, "
               "CONSTRAINT pk_messages PRIMARY KEY (id, created_at)"
               ") PARTITION BY RANGE (created_at)")
    op.execute("ALTER SEQUENCE messages_id_seq OWNED BY messages.id")
    op.execute(f"ALTER TABLE {first} ALTER COLUMN id DROP DEFAULT")
    op.execute(f"ALTER TABLE messages ATTACH PARTITION {first} "
               f"FOR VALUES FROM (MINVALUE) TO ('{first_upper.isoformat()}')")
    for index, _, columns, where in _INDEXES:
        op.execute(f"CREATE INDEX {index} ON messages {columns}{where}")
    partitions: list[tuple[str, datetime | None, datetime | None]] = [
        (first, None, first_upper)]
    lower = first_upper
    end = this_month
    for _ in range(MONTHS_AHEAD + 1):
        end = _next(end)
    while lower < end:
        upper = _next(lower)
        name = f"messages_part_{lower:%Y_%m}"
        op.execute(f"CREATE TABLE {name} PARTITION OF messages "
                   f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')")
        partitions.append((name, lower, upper))
        lower = upper
    op.execute("CREATE TABLE messages_part_default PARTITION OF messages DEFAULT")
    partitions.append(("messages_part_default", None, None))
    table = sa.table("message_partitions", sa.column("name"), sa.column("lower"),
                     sa.column("upper"), sa.column("is_default"))
    op.bulk_insert(table, [{"name": n, "lower": lo, "upper": up, "is_default": up is None}
                           for n, lo, up in partitions])


def downgrade() -> None:
    bind = op.get_bind()
    dropped = bind.execute(sa.text(
        "SELECT count(*) FROM message_partitions WHERE state = 'dropped'")).scalar_one()
    if dropped:
        raise RuntimeError(f"{dropped} message partition(s) were archived and dropped; "
                           "restore them from their archives before downgrading")
    op.execute(f"CREATE TABLE messages_flat ({_COLUMNS})")
    op.execute("INSERT INTO messages_flat SELECT * FROM messages")
    op.execute("ALTER SEQUENCE messages_id_seq OWNED BY messages_flat.id")
    op.execute("DROP TABLE messages")  # and every partition
    op.execute("ALTER TABLE messages_flat RENAME TO messages")
    op.execute("ALTER TABLE messages ADD CONSTRAINT pk_messages PRIMARY KEY (id)")
    for index, _, columns, where in _INDEXES:
        op.execute(f"CREATE INDEX {index} ON messages {columns}{where}")
    op.create_index("uq_messages_direction_link_external_id", "messages",
                    ["direction", "link", "external_id"], unique=True,
                    postgresql_where=sa.text("external_id IS NOT NULL"))
    op.drop_table("message_partitions")
    op.drop_index("ix_message_keys_created_at", table_name="message_keys")
    op.drop_table("message_keys")
    op.create_foreign_key("fk_inbound_queue_message_id_messages", "inbound_queue", "messages",
                          ["message_id"], ["id"], ondelete="CASCADE")

