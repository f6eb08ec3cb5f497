"""The schema: SQLAlchemy 2.0 declarative tables with a constraint naming convention.

The first Alembic revision (``migrations/versions/0001_initial.py``) creates
exactly this; a test compares the two.  Several MEPL processes share one
database, so anything that must be unique across them (IMEIs, counters,
gateway message ids) is enforced here, not in memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEVICE_STATES = ("unprovisioned", "provisioned", "locked", "lost", "retired")
COMMAND_STATES = (
    "queued", "sending", "sent", "delivered",
    "done", "refused", "failed", "expired", "cancelled",
)
INBOUND_STATES = ("pending", "waiting", "failed")
APPROVAL_STATUSES = ("pending", "approved", "rejected", "expired")
INBOUND_KINDS = ("callback", "mo", "dlr")
IDENTITY_KINDS = ("imsi", "msisdn")
DIRECTIONS = ("in", "out")
CHANNELS = ("smpp", "http")
PARTITION_STATES = ("attached", "archived", "dropped")
MAX_COUNTER = 2**48 - 1

_NOW = text("now()")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _tz() -> DateTime:
    return DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: DateTime(timezone=True)}


class Device(Base):
    """A field device, keyed by IMEI, with its current SIM identity and keys.

    Never deleted (a trigger refuses it; a device is retired): the message
    and history tables refer to it without foreign keys (migration 0010).
    """

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    imei: Mapped[str] = mapped_column(CHAR(15), unique=True)
    imsi: Mapped[str | None] = mapped_column(Text, index=True)
    msisdn: Mapped[str | None] = mapped_column(Text, index=True)
    state: Mapped[str] = mapped_column(Text, server_default="unprovisioned")
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[int | None] = mapped_column(Integer)
    # Device-side counter (replies, alerts): high-water mark and a bitmap of
    # the 64 counters below it already seen (bit i = hwm - 1 - i).
    counter_hwm: Mapped[int] = mapped_column(BigInteger, server_default="0")
    counter_window: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_seen_at: Mapped[datetime | None] = mapped_column(_tz())
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    updated_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)

    __table_args__ = (
        CheckConstraint("imei ~ '^[0-9]{15}$'", name="imei_digits"),
        CheckConstraint("imsi ~ '^[0-9]{6,15}$'", name="imsi_digits"),
        CheckConstraint("msisdn ~ '^[+][1-9][0-9]{1,14}$'", name="msisdn_e164"),
        CheckConstraint(_in("state", DEVICE_STATES), name="state"),
        CheckConstraint("counter_hwm >= 0", name="counter_hwm"),
        # room on each page for updated rows: last-seen and replay-window
        # updates stay HOT (migration 0013)
        {"postgresql_with": {"fillfactor": 80}},
    )


class DeviceIdentityHistory(Base):
    """Every IMSI and phone number a device has had, and when it changed."""

    __tablename__ = "device_identity_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    device_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("devices.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(Text)
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    source: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("kind", IDENTITY_KINDS), name="kind"),
        Index(None, "device_id", "changed_at"),
        Index(None, "kind", "new_value"),
    )


class Group(Base):
    """A named set of devices, the target of fan-out commands."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)

    __table_args__ = (
        CheckConstraint("name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'", name="name"),
    )


class GroupMember(Base):
    """Membership of a device in a group."""

    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)


class ServerKeyCounter(Base):
    """The next counter for frames signed with server key ``key_id`` to ``device_id``."""

    __tablename__ = "server_key_counters"

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    next_counter: Mapped[int] = mapped_column(BigInteger, server_default="1")

    __table_args__ = (
        CheckConstraint(f"next_counter BETWEEN 1 AND {MAX_COUNTER + 1}", name="range"),
    )


class Command(Base):
    """One command to one device and its whole lifecycle.

    Never deleted (a trigger refuses it): ``command_events`` and ``messages``
    refer to it without foreign keys (migration 0010).
    """

    __tablename__ = "commands"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    device_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("devices.id"))
    opcode: Mapped[str] = mapped_column(Text)
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    state: Mapped[str] = mapped_column(Text, server_default="queued")
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="100")
    counter: Mapped[int | None] = mapped_column(BigInteger)
    key_id: Mapped[int | None] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    updated_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    not_after: Mapped[datetime] = mapped_column(_tz())
    next_attempt_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(_tz())
    finished_at: Mapped[datetime | None] = mapped_column(_tz())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    frame: Mapped[bytes | None] = mapped_column(LargeBinary)
    fanout_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("fanouts.id"))

    __table_args__ = (
        CheckConstraint(_in("state", COMMAND_STATES), name="state"),
        CheckConstraint("priority BETWEEN 0 AND 1000", name="priority"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # The claim's whole order, queued commands only.  No index on commands
        # ends with id: a generic plan made on a tiny table could scan it whole for
        # a list of ids instead of the primary key (migration 0009).
        Index("ix_commands_queue", "priority", "created_at", "id",
              postgresql_where=text("state = 'queued'")),
        Index(None, "state"),
        Index(None, "device_id", "created_at"),
        Index(
            "uq_commands_key_id_device_id_counter", "key_id", "device_id", "counter",
            unique=True, postgresql_where=text("counter IS NOT NULL"),
        ),
        Index("ix_commands_fanout_id_state", "fanout_id", "state",
              postgresql_where=text("fanout_id IS NOT NULL")),
    )


class Fanout(Base):
    """One command sent to a group or the whole fleet: its commands point here."""

    __tablename__ = "fanouts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    opcode: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, server_default="0")
    requested_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)


class Approval(Base):
    """An action that waits for a second administrator (two-person approval)."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    action: Mapped[str] = mapped_column(Text)
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    target: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(Text)
    requested_role: Mapped[str] = mapped_column(Text)
    requested_fp: Mapped[str] = mapped_column(Text, server_default="")
    requested_at: Mapped[datetime] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz())
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    decided_by: Mapped[str | None] = mapped_column(Text)
    decided_fp: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(_tz())
    reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))

    __table_args__ = (
        CheckConstraint(_in("status", APPROVAL_STATUSES), name="status"),
        Index(None, "status", "id"),
    )


class Message(Base):
    """Every SMS, PDU or callback sent or received, raw bytes kept as a BLOB.

    Partitioned by month of ``created_at`` (native range partitioning; the
    partitions are listed in :class:`MessagePartition`), so old months can be
    archived and dropped whole (``mepl messages archive``).  The primary key
    therefore includes ``created_at``; ids still come from one sequence and
    are unique on their own.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    direction: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    peer: Mapped[str | None] = mapped_column(Text)
    device_id: Mapped[int | None] = mapped_column(BigInteger)  # no FK: see migration 0010
    command_id: Mapped[int | None] = mapped_column(BigInteger)
    smsc_message_id: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)
    part_seq: Mapped[int | None] = mapped_column(SmallInteger)
    part_total: Mapped[int | None] = mapped_column(SmallInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[bytes] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(_tz(), primary_key=True, server_default=_NOW)

    __table_args__ = (
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        CheckConstraint("kind ~ '^[a-z][a-z0-9_-]{0,31}$'", name="kind"),
        CheckConstraint("octet_length(sha256) = 32", name="sha256_length"),
        CheckConstraint(
            "part_seq IS NULL OR (part_seq >= 1 AND part_seq <= part_total)", name="parts"
        ),
        # The look-up indexes leave out the rows without the key (most of them
        # PDUs): migration 0012.
        Index(None, "command_id", postgresql_where=text("command_id IS NOT NULL")),
        Index(None, "device_id", "created_at", postgresql_where=text("device_id IS NOT NULL")),
        Index(None, "link", "smsc_message_id",
              postgresql_where=text("smsc_message_id IS NOT NULL")),
        Index(
            "ix_messages_inbound_parts", "peer", "part_total", "created_at",
            postgresql_where=text("kind = 'mo' AND direction = 'in' AND part_total > 1"),
        ),
        # The raw PDU log of a link in a time window (``mepl messages pdus``): migration 0014.
        Index("ix_messages_pdu_log", "link", "created_at",
              postgresql_where=text("kind IN ('pdu', 'pdu_batch')")),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )


class MessageKey(Base):
    """The gateway ids already stored: (direction, link, external_id) is unique here.

    A partitioned ``messages`` cannot hold a unique index without the
    partition key, so a retried callback is caught by this small table, in
    the same transaction that stores the message.  Keys are deleted with
    the partition that held their messages.
    """

    __tablename__ = "message_keys"

    direction: Mapped[str] = mapped_column(Text, primary_key=True)
    link: Mapped[str] = mapped_column(Text, primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW, index=True)


class MessagePartition(Base):
    """One partition of ``messages``: its range, and whether it was archived or dropped.

    ``lower`` NULL is the open start of the first partition (the table as it
    was before partitioning); ``upper`` NULL with ``is_default`` is the
    default partition, which catches rows outside every range.
    """

    __tablename__ = "message_partitions"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    lower: Mapped[datetime | None] = mapped_column(_tz())
    upper: Mapped[datetime | None] = mapped_column(_tz())
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    state: Mapped[str] = mapped_column(Text, server_default="attached")
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    archived_at: Mapped[datetime | None] = mapped_column(_tz())
    archive_file: Mapped[str | None] = mapped_column(Text)
    archive_sha256: Mapped[str | None] = mapped_column(Text)
    archive_rows: Mapped[int | None] = mapped_column(BigInteger)
    dropped_at: Mapped[datetime | None] = mapped_column(_tz())

    __table_args__ = (
        CheckConstraint(_in("state", PARTITION_STATES), name="state"),
        CheckConstraint("is_default = (upper IS NULL)", name="default_bounds"),
    )


class Audit(Base):
    """Append-only record of admin actions (a trigger refuses UPDATE, DELETE, TRUNCATE)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW, index=True)
    actor: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    request_id: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("uq_audit_request_id", "request_id", unique=True),
    )


class CommandEvent(Base):
    """One transition of one command: its history, and the source of live events.

    Appended in the transaction that makes the transition (never updated);
    ``id`` orders events across every MEPL process sharing the database.
    """

    __tablename__ = "command_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    command_id: Mapped[int] = mapped_column(BigInteger)  # no FK: see migration 0010
    device_id: Mapped[int] = mapped_column(BigInteger)
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))

    __table_args__ = (
        Index(None, "command_id", "id"),
        Index(None, "device_id", "id"),
    )


class InboundQueue(Base):
    """The durable inbound work list: one row per stored inbound item not yet applied.

    Rows point at the stored bytes (``messages``); a worker in any MEPL
    process claims them with a lease (``claimed_by``/``claimed_at``), verifies
    outside any transaction, and deletes the row in the one transaction that
    applies it.  ``waiting`` holds a delivery receipt whose submit is not
    recorded yet, found again by (``link``, ``smsc_message_id``) when it is.
    """

    __tablename__ = "inbound_queue"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # No foreign key: ``messages`` is partitioned (its key includes created_at);
    # a partition is archived only when no queued item points into it.
    message_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    kind: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, server_default="pending")
    link: Mapped[str | None] = mapped_column(Text)
    smsc_message_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    available_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(_tz())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("kind", INBOUND_KINDS), name="kind"),
        CheckConstraint(_in("state", INBOUND_STATES), name="state"),
        Index("ix_inbound_queue_due", "available_at", "id",
              postgresql_where=text("state = 'pending'")),
        Index("ix_inbound_queue_receipts", "link", "smsc_message_id",
              postgresql_where=text("kind = 'dlr'")),
        Index("ix_inbound_queue_waiting", "created_at",
              postgresql_where=text("state = 'waiting'")),
        Index("ix_inbound_queue_failed", "created_at",
              postgresql_where=text("state = 'failed'")),
    )


class DeviceServerKey(Base):
    """Which server key a device has accepted: frames to it are sealed with that key.

    A device moves to the next key only when its signed reply proves it
    accepted the ``rotate_key`` that announced it.
    """

    __tablename__ = "device_server_keys"

    device_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[int] = mapped_column(Integer, index=True)
    updated_at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)


class SecurityEvent(Base):
    """A verified alert, or something security-relevant the server saw about a device."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    device_id: Mapped[int | None] = mapped_column(BigInteger)  # no FK: see migration 0010
    kind: Mapped[str] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(_tz(), server_default=_NOW)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))

    __table_args__ = (
        Index(None, "device_id", "id"),
        Index(None, "at"),
    )


metadata = Base.metadata
devices: Table = metadata.tables["devices"]
identity_history: Table = metadata.tables["device_identity_history"]
groups: Table = metadata.tables["groups"]
group_members: Table = metadata.tables["group_members"]
server_key_counters: Table = metadata.tables["server_key_counters"]
commands: Table = metadata.tables["commands"]
messages: Table = metadata.tables["messages"]
message_keys: Table = metadata.tables["message_keys"]
message_partitions: Table = metadata.tables["message_partitions"]
audit: Table = metadata.tables["audit"]
command_events: Table = metadata.tables["command_events"]
inbound_queue: Table = metadata.tables["inbound_queue"]
device_server_keys: Table = metadata.tables["device_server_keys"]
security_events: Table = metadata.tables["security_events"]
fanouts: Table = metadata.tables["fanouts"]
approvals: Table = metadata.tables["approvals"]
