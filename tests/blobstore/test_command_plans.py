"""Statements that change commands by id read them by primary key, whatever the statistics.

A prepared statement keeps the generic plan made when a session first ran it,
and a session's first run can come while ``commands`` holds a single row (an
idle system, the first command).  Planned then, the submitted transition read
the (state, priority, created_at, id) index for its source state and tested
each entry against the ids: once the table grew, every claim batch's
transition read every command in that state (more than half of PostgreSQL's
CPU in a 20k fan-out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from blobstore.commands import command_record
from blobstore.lifecycle import Change, transition_ids_txn, transition_many_txn
from mepl.core import lifecycle
from mepl.core.lifecycle import Event
from mepl.runtime.outbound_txn import claim_commands_txn, claim_locked_txn
from tests.support.pg import migrated_database
from tests.support.plans import explain_executes, plan_nodes

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    made = create_engine(migrated_database("cmdplans"))
    with made.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(
            "INSERT INTO devices (imei, msisdn, key_id, public_key, state) "
            "VALUES ('490154203237518', '+447700900001', 1, '\\x00', 'provisioned')"))
        conn.execute(text(
            "INSERT INTO commands (device_id, opcode, arguments, requested_by, not_after, state) "
            "SELECT id, 'status_query', '{}', 'test', :late, 'sending' FROM devices"),
            {"late": NOW + timedelta(days=1)})
        conn.execute(text("VACUUM ANALYZE commands"))  # one row: the planner's view now
    try:
        yield made
    finally:
        made.dispose()


def _commands_scans(engine: Engine, run: Callable[[Connection], Any]) -> list[tuple[str, str]]:
    """(node type, index) of every plan node reading ``commands``, and every Sort:
    generic plans."""
    plans = [plan for per_mode in explain_executes(engine, run) for plan in per_mode]
    assert plans, "no prepared statement ran"
    nodes = [n for plan in plans for n in plan_nodes(plan)]
    return ([("Sort", "") for n in nodes if n["Node Type"] == "Sort"]
            + [(n["Node Type"], n.get("Index Name", "")) for n in nodes
               if n.get("Relation Name") == "commands" and n["Node Type"] != "ModifyTable"])


def _ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(text("SELECT id FROM commands")).scalars()]


def test_the_submitted_transition_reads_commands_by_primary_key(engine: Engine) -> None:
    scans = _commands_scans(engine, lambda c: transition_ids_txn(
        c, Event.SUBMITTED, [*_ids(engine), 10**9], machine=lifecycle, now=NOW, actor="t"))
    assert scans == [("Index Scan", "pk_commands")] * 2


def test_batch_transitions_read_commands_by_primary_key(engine: Engine) -> None:
    [command_id] = _ids(engine)
    scans = _commands_scans(engine, lambda c: transition_many_txn(
        c, [Change(command_id, Event.SUBMITTED, "t")], machine=lifecycle, now=NOW))
    assert scans and set(scans) == {("Index Scan", "pk_commands")}


def test_the_claim_and_its_frames_are_written_by_primary_key(engine: Engine) -> None:
    with engine.connect() as conn:
        [record] = [command_record(r) for r in conn.execute(text("SELECT * FROM commands"))]
    scans = _commands_scans(engine, lambda c: claim_locked_txn(
        c, [record], worker="t", now=NOW, sealed={record.id: (7, 1, b"f")}))
    assert scans == [("Index Scan", "pk_commands")]


def test_the_claim_reads_the_queue_index_in_its_order(engine: Engine) -> None:
    # Planned on a one-row table too: a sort of every queued command (or a scan of
    # every command in the state index) would do as well there, and not at 100k.
    scans = _commands_scans(engine, lambda c: claim_commands_txn(
        c, worker="t", now=NOW, limit=10))
    assert scans == [("Index Scan", "ix_commands_queue")]
