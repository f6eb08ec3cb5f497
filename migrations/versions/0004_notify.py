"""Wake-ups without polling: NOTIFY when commands or inbound items are queued.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

A statement-level trigger on ``commands`` notifies ``mepl_commands`` after any
INSERT (one notification per statement however many rows: a fan-out to a
million devices is one); a trigger on ``inbound_queue`` notifies
``mepl_inbound`` after an INSERT and when a waiting receipt becomes due.
PostgreSQL delivers notifications at commit and folds duplicates within a
transaction.  Every ``mepl run`` listens and wakes its dispatcher or inbound
worker at once; polling stays as the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_FUNCTION = """
CREATE FUNCTION mepl_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(NOTIFY_FUNCTION)
    op.execute("CREATE TRIGGER commands_notify AFTER INSERT ON commands "
               "FOR EACH STATEMENT EXECUTE FUNCTION mepl_notify('mepl_commands')")
    op.execute("CREATE TRIGGER inbound_queue_notify AFTER INSERT ON inbound_queue "
               "FOR EACH STATEMENT EXECUTE FUNCTION mepl_notify('mepl_inbound')")
    op.execute("CREATE TRIGGER inbound_queue_due_notify AFTER UPDATE OF state ON inbound_queue "
               "FOR EACH ROW WHEN (OLD.state = 'waiting' AND NEW.state = 'pending') "
               "EXECUTE FUNCTION mepl_notify('mepl_inbound')")


def downgrade() -> None:
    op.execute("DROP TRIGGER inbound_queue_due_notify ON inbound_queue")
    op.execute("DROP TRIGGER inbound_queue_notify ON inbound_queue")
    op.execute("DROP TRIGGER commands_notify ON commands")
    op.execute("DROP FUNCTION mepl_notify()")
