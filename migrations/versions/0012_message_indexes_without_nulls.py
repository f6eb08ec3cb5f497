"""The ``messages`` look-up indexes hold only the rows that have the key.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

With the raw PDU log on (``smpp.pdu_log = "all"``) six of the nine rows a
command's round trip writes to ``messages`` are PDUs, which have no device,
no command and mostly no SMSC message id.  Every one of them still went into
``ix_messages_command_id``, ``ix_messages_device_id_created_at`` and
``ix_messages_link_smsc_message_id`` as a NULL key: two or three index
insertions per PDU that no query reads, all on the last leaf page of each
index (NULLs sort last), where every concurrent writer met.

The three indexes are now partial (``WHERE <key> IS NOT NULL``).  Every
query that uses them asks for a key value (``command_id = ...``,
``device_id = ...``, ``link = ... AND smsc_message_id = ...``), which
PostgreSQL proves implies the predicate, generic plans included
(``tests/mepl/test_query_plans.py`` EXPLAINs them all).

The upgrade drops and re-creates each index on the partitioned parent,
which rebuilds it on every partition while holding a lock that blocks
writes to ``messages``: on a large install, run it in a maintenance window
(``mepl db upgrade`` prints nothing until it is done).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    # (name, columns, the key that must be present)
    ("ix_messages_command_id", "(command_id)", "command_id"),
    ("ix_messages_device_id_created_at", "(device_id, created_at)", "device_id"),
    ("ix_messages_link_smsc_message_id", "(link, smsc_message_id)", "smsc_message_id"),
)


def upgrade() -> None:
    for name, columns, key in _INDEXES:
        op.execute(f"DROP INDEX {name}")
        op.execute(f"CREATE INDEX {name} ON messages {columns} WHERE {key} IS NOT NULL")


def downgrade() -> None:
    for name, columns, _ in _INDEXES:
        op.execute(f"DROP INDEX {name}")
        op.execute(f"CREATE INDEX {name} ON messages {columns}")
