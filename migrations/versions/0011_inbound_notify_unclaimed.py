"""Storing inbound items already claimed by their worker wakes nobody.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Items an SMPP bind stores are claimed at birth by the inbound worker of the
process that stored them, which applies them from memory.  The NOTIFY on
``mepl_inbound`` after an INSERT into ``inbound_queue`` now fires only when
the statement inserted at least one unclaimed row (an HTTP callback, or a
batch the worker had no room for): otherwise every process would wake and
run a claim that finds nothing.  The trigger reads the statement's inserted
rows through a transition table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_UNCLAIMED = """
CREATE FUNCTION mepl_notify_unclaimed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM added WHERE claimed_by IS NULL) THEN
        PERFORM pg_notify(TG_ARGV[0], '');
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(NOTIFY_UNCLAIMED)
    op.execute("DROP TRIGGER inbound_queue_notify ON inbound_queue")
    op.execute("CREATE TRIGGER inbound_queue_notify AFTER INSERT ON inbound_queue "
               "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
               "EXECUTE FUNCTION mepl_notify_unclaimed('mepl_inbound')")


def downgrade() -> None:
    op.execute("DROP TRIGGER inbound_queue_notify ON inbound_queue")
    op.execute("CREATE TRIGGER inbound_queue_notify AFTER INSERT ON inbound_queue "
               "FOR EACH STATEMENT EXECUTE FUNCTION mepl_notify('mepl_inbound')")
    op.execute("DROP FUNCTION mepl_notify_unclaimed()")
