"""The raw PDU log is found by link and time (``ix_messages_pdu_log``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

With ``smpp.pdu_log = "batched"`` (the default since issue 9's PDU batches)
the SMSC id of a submit_sm_resp is inside a batch row, not in an indexed
column, so the PDUs of a message could only be found by scanning a month of
``messages``.  ``mepl messages pdus`` reads the PDU rows of one link in a
time window; this partial index holds only PDU rows (both layouts), keyed
by (``link``, ``created_at``): one entry per batch row, a few per thousand
PDUs.

Creating an index on the partitioned ``messages`` builds it on every
partition while holding a lock that blocks writes to ``messages``: on a
large install, run the upgrade in a maintenance window.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_messages_pdu_log ON messages (link, created_at) "
               "WHERE kind IN ('pdu', 'pdu_batch')")


def downgrade() -> None:
    op.execute("DROP INDEX ix_messages_pdu_log")
