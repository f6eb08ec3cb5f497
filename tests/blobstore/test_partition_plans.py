"""The batch statements over ``messages`` use an index even when its statistics are stale.

Autovacuum never analyzes a partitioned parent, and a month's partition is
analyzed while still small: the planner then has no statistics to join an
array of ids against ``messages``.  Each batch statement must still pick an
index, not a sequential scan of the month's partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from blobstore.inbound_bulk import Link, link_many_txn, sent_parts_txn, set_part_status_txn
from tests.support.pg import migrated_database
from tests.support.plans import explain_executes, plan_nodes

ROWS = 20_000


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    made = create_engine(migrated_database("plans"))
    with made.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE messages"))  # while empty, as at a month's start
        conn.execute(text(
            "INSERT INTO messages (direction, channel, kind, link, smsc_message_id, payload, "
            "sha256) SELECT 'out', 'smpp', 'mt', 'smsc', 'sm-' || g, 'x', :sha "
            "FROM generate_series(1, :n) AS g"), {"sha": hashlib.sha256(b"x").digest(), "n": ROWS})
    try:
        yield made
    finally:
        made.dispose()


def _seq_scanned(plan: Any) -> list[str]:
    return [str(n.get("Relation Name")) for n in plan_nodes(plan)
            if n["Node Type"] == "Seq Scan"
            and n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0) > 100]


def _plans(engine: Engine, run: Any) -> list[list[str]]:
    """Sequential scans in each statement ``run`` sends, planned custom and generic.

    The statements are prepared (``blobstore.prepared``) and run with a forced
    generic plan; the plain form of the same SQL is custom-planned.  Both
    must use an index.
    """
    return [[scan for plan in per_mode for scan in _seq_scanned(plan)]
            for per_mode in explain_executes(
                engine, run, modes=("force_custom_plan", "force_generic_plan"), analyze=True)]


def test_linking_a_batch_of_rows_reads_them_by_index(engine: Engine) -> None:
    ids = [100 * n for n in range(1, 11)]
    assert _plans(engine, lambda c: link_many_txn(c, [Link(i, error="x") for i in ids])) == [[]]


def test_recording_receipt_statuses_reads_the_parts_by_index(engine: Engine) -> None:
    statuses = {100 * n: "delivered" for n in range(1, 11)}
    assert _plans(engine, lambda c: set_part_status_txn(c, statuses)) == [[]]


def test_finding_the_parts_of_a_batch_of_receipts_reads_them_by_index(engine: Engine) -> None:
    keys = [("smsc", f"sm-{100 * n}") for n in range(1, 11)]
    assert _plans(engine, lambda c: sent_parts_txn(c, keys)) == [[]]
