"""The message and history tables reference devices and commands without foreign keys.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

``messages.device_id``, ``messages.command_id``, ``command_events.command_id``
and ``security_events.device_id`` had foreign keys.  Each inserted row (and
each update that sets one of these columns) ran a check that locks the
referenced row ``FOR KEY SHARE``: a row lock written to the WAL, taken on the
same command and device rows the hot transactions update, several times per
command.  These four tables are logs: MEPL writes them only with ids it has
just read (and locked) in the same transaction, and devices and commands are
never deleted (a device is retired, a command ends in a final state; their
history keeps pointing at them).

That last rule is now the database's: a trigger refuses ``DELETE`` on
``devices`` and ``commands`` (row by row, so it costs nothing until someone
tries), which is what the foreign keys protected the references from.  The
foreign keys between the registry's own tables (commands -> devices, group
members, keys, counters, identity history) stay: those are not written per
message.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DROPPED = (
    # (table, constraint, column, referenced table, ON DELETE)
    ("messages", "fk_messages_device_id_devices", "device_id", "devices", None),
    ("messages", "fk_messages_command_id_commands", "command_id", "commands", None),
    ("command_events", "fk_command_events_command_id_commands", "command_id", "commands",
     "CASCADE"),
    ("security_events", "fk_security_events_device_id_devices", "device_id", "devices",
     "CASCADE"),
)

KEEP_FUNCTION = """
CREATE FUNCTION mepl_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted (retire a device; a command ends in a final '
        'state): their history refers to them', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def upgrade() -> None:
    for table, name, _, _, _ in _DROPPED:
        op.drop_constraint(name, table, type_="foreignkey")
    op.execute(KEEP_FUNCTION)
    for table in ("devices", "commands"):
        op.execute(f"CREATE TRIGGER {table}_never_deleted BEFORE DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION mepl_never_deleted()")


def downgrade() -> None:
    for table in ("devices", "commands"):
        op.execute(f"DROP TRIGGER {table}_never_deleted ON {table}")
    op.execute("DROP FUNCTION mepl_never_deleted()")
    for table, name, column, referred, on_delete in _DROPPED:
        op.create_foreign_key(name, table, referred, [column], ["id"], ondelete=on_delete)
