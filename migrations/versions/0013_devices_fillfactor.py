"""``devices`` pages keep room for updates (fillfactor 80), so they stay HOT.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Every reply and alert updates its device row (last-seen time, replay
window), and none of those columns is indexed, so PostgreSQL can write the
new row version on the same page without touching the four indexes of
``devices`` (a HOT update), but only when the page has room.  A bulk import
fills pages completely, so each device's first update after it went to
another page with a new entry in every index: 39 % of the device updates
of a 10k fan-out and its alerts were not HOT (``pg_stat_user_tables``).

Fillfactor 80 leaves a fifth of each page free when rows are inserted; the
table grows by about a quarter.  ``ALTER TABLE ... SET`` does not rewrite
the table: pages written from now on follow it, and ``VACUUM FULL devices``
(in a maintenance window: it locks the table) applies it to the rows
already there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE devices SET (fillfactor = 80)")


def downgrade() -> None:
    op.execute("ALTER TABLE devices RESET (fillfactor)")
