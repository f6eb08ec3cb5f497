"""Every statement of the hot paths can use an index: none needs a sequential scan of the
big tables (commands, messages, command_events, inbound_queue).

The statements are the real ones, captured while a small fleet goes through
both flows (claim, seal, submit, receipts before and after their submit,
replies, alerts, multi-part reassembly, housekeeping).  Each is EXPLAINed with
sequential scans discouraged: the planner then picks an index whenever one
fits, so a Seq Scan in the plan means no index can serve the query.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import event, text
from twisted.trial.unittest import SynchronousTestCase

from blobstore.fanouts import fanout_states_txn
from blobstore.prepared import PLAN_GUARDS, STATEMENTS
from mepl.app.history import live_events_txn
from mepl.runtime.outbound_txn import (
    claim_commands_txn,
    housekeeping_txn,
    record_submitted_txn,
)
from signing.alerts import make_alert
from sms_gateway.udh import Concat, Udh
from tests.mepl.helpers import SERVER_NUMBER, World
from tests.support.plans import plan_nodes

BIG_TABLES = frozenset({"commands", "messages", "command_events", "inbound_queue", "devices"})
IMEIS = ("490154203237518", "356938035643809")


def _big_table_scans(plan: Any) -> list[tuple[str, dict[str, Any]]]:
    """(big table, plan node) for each node that reads one (a partition counts as messages)."""
    found = []
    for node in plan_nodes(plan):
        relation = str(node.get("Relation Name"))
        if relation.startswith("messages_part_"):  # a partition of messages
            relation = "messages"
        if relation in BIG_TABLES:
            found.append((relation, node))
    return found


def _seq_scans(plan: Any) -> list[str]:
    return [relation for relation, node in _big_table_scans(plan)
            if node["Node Type"] == "Seq Scan"]


Explained = tuple[str, list[str], str, Any, list[str]]
"""(label, statements before, statement to EXPLAIN, its parameters, statements after)."""


def _explain_each(engine: Any, setup: list[str],
                  statements: list[Explained]) -> list[tuple[str, Any]]:
    """EXPLAIN (FORMAT JSON) each statement on one session after ``setup``; (label, plan)."""
    plans = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            for sql in setup:
                cursor.execute(sql)
            for label, before, statement, parameters, after in statements:
                for sql in before:
                    cursor.execute(sql)
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0]
                plans.append((label, json.loads(plan) if isinstance(plan, str) else plan))
                for sql in after:
                    cursor.execute(sql)
            raw.rollback()
    return plans


def seq_scan_offenders(engine: Any,
                       captured: list[tuple[str, Any]]) -> list[tuple[list[str], str]]:
    """EXPLAIN each captured statement with sequential scans discouraged; return the
    big tables each one still scans sequentially, with the statement's start."""
    plans = _explain_each(engine, ["SET enable_seqscan = off"], [
        (" ".join(statement.split())[:300], [], statement, parameters, [])
        for statement, parameters in captured])
    return [(scans, label) for label, plan in plans if (scans := _seq_scans(plan))]


# Partial indexes read whole by design: only the rows a statement wants are in
# them, and the statement stops at its LIMIT (the claims of queued work).
WHOLE_BY_DESIGN = frozenset({"ix_commands_queue"})


def _whole_scans(plan: Any) -> list[str]:
    """Scans of a big table (or its index) with no condition that bounds them."""
    return [f"{node['Node Type']} on {relation} ({node.get('Index Name')})"
            for relation, node in _big_table_scans(plan)
            if node["Node Type"] == "Seq Scan"
            or (node["Node Type"] in ("Index Scan", "Index Only Scan")
                and "Index Cond" not in node
                and node.get("Index Name") not in WHOLE_BY_DESIGN)]


def generic_plan_offenders(engine: Any,
                           executed: list[tuple[str, Any]]) -> list[tuple[list[str], str]]:
    """The generic plan of each prepared statement (what a session keeps and reuses),
    made with the statistics the tables have now: the whole scans each one contains."""
    plans = _explain_each(engine, ["DEALLOCATE ALL", PLAN_GUARDS.replace("SET LOCAL", "SET")], [
        (name, [STATEMENTS[name].prepare_sql],
         STATEMENTS[name].execute_sql.removeprefix(PLAN_GUARDS), parameters,
         [f"DEALLOCATE {STATEMENTS[name].name}"])
        for name, parameters in executed])
    return [(scans, label) for label, plan in plans if (scans := _whole_scans(plan))]


class QueryPlanTests(SynchronousTestCase):
    maxDiff = None

    def test_no_hot_statement_needs_a_sequential_scan_of_a_big_table(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        captured: list[tuple[str, Any]] = []
        prepared_runs: dict[str, Any] = {}

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any,
                    context: Any, executemany: bool) -> None:
            statement = statement.split("; ")[-1]  # after a prepared statement's plan guards
            first = statement.lstrip().split(None, 1)[0].upper()
            if first == "EXECUTE":  # a prepared statement: EXPLAIN what it runs
                name = statement.split(None, 1)[1].split("(", 1)[0]
                captured.append((STATEMENTS[name].body_sql, parameters))
                prepared_runs.setdefault(name, parameters)
            elif not executemany and first in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH"):
                captured.append((statement, parameters))

        devices = [w.enrol(imei, f"+44770090010{n}") for n, imei in enumerate(IMEIS)]
        event.listen(w.engine, "before_cursor_execute", capture)
        self._run_both_flows(w, devices)
        event.remove(w.engine, "before_cursor_execute", capture)
        self.assertGreater(len(captured), 30)
        executed = {s.split(" ", 1)[0] for s, _ in captured}
        self.assertLessEqual({"SELECT", "UPDATE", "DELETE", "INSERT", "WITH"}, executed)
        offenders = seq_scan_offenders(w.engine, captured)
        self.assertEqual(offenders, [])
        # The tables were analyzed while nearly empty (a new install, the first
        # commands): a generic plan made now is kept by each session until the
        # statistics change, even as a fan-out fills the tables.  None may read a
        # big table whole, with any join method the planner picks for tiny tables.
        self.assertGreater(len(prepared_runs), 20, sorted(prepared_runs))
        self.assertEqual(generic_plan_offenders(w.engine, sorted(prepared_runs.items())), [])

    def test_the_claim_reads_no_more_queued_rows_than_it_claims(self) -> None:
        # A fan-out queues every command with the same created_at: the claim's
        # order (priority, created_at, id) must come from the index, or each claim
        # reads and sorts the whole queue.  Finished commands come first (lower
        # ids), as in a real history: updating the chosen rows must not scan them.
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device, _ = w.enrol(IMEIS[0], "+447700900100")
        with w.engine.connect() as conn:
            for state in ("done", "queued"):
                conn.execute(text(
                    "INSERT INTO commands (device_id, opcode, arguments, priority, "
                    "requested_by, not_after, created_at, state) SELECT :d, 'status_query', "
                    "'{}', 5, 'test', :late, :at, :state FROM generate_series(1, 2000)"),
                    {"d": device, "at": w.now, "late": w.now + timedelta(hours=1),
                     "state": state})
            conn.execute(text("ANALYZE commands"))
            conn.commit()
        captured: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any,
                    context: Any, executemany: bool) -> None:
            if "EXECUTE mepl_due_commands(" in statement or "EXECUTE mepl_claim_rows(" in statement:
                captured.append((statement, parameters))

        with w.engine.connect() as conn:
            event.listen(conn, "before_cursor_execute", capture)
            claimed = claim_commands_txn(conn, worker="t", now=w.now, limit=10)
            event.remove(conn, "before_cursor_execute", capture)
            self.assertEqual([c.id for c in claimed], sorted(c.id for c in claimed))
            self.assertEqual(len(claimed), 10)
            self.assertEqual(len(captured), 2, captured)
            raw: Any = conn.connection.dbapi_connection
            plans = []
            with raw.cursor() as cursor:  # the next ten, with the plans the claim uses
                for statement, parameters in captured:
                    *guards, execute = statement.split("; ")
                    if guards:
                        cursor.execute("; ".join(guards))
                    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + execute, parameters)
                    plans.append(cursor.fetchone()[0])
            conn.rollback()
        read = [(n["Node Type"], n.get("Index Name"), n["Actual Rows"])
                for plan in plans for n in plan_nodes(plan)
                if n.get("Relation Name") == "commands" and n["Node Type"] != "ModifyTable"]
        self.assertEqual([(kind, index, rows <= 10) for kind, index, rows in read],
                         [("Index Scan", "ix_commands_queue", True),
                          ("Index Scan", "pk_commands", True)], read)

    def _run_both_flows(self, w: World, devices: list[Any]) -> None:
        (first, handset), (second, other) = devices
        w.queue(first)
        w.queue(second, "locate")
        ready = w.claim()
        # A receipt before its submit is recorded, then the submits, then the rest.
        w.receipt("l1", f"id-{ready[0].command_id}")
        for command in ready:
            w.run(record_submitted_txn, command, link="l1", channel="smpp",
                  message_ids=[f"id-{command.command_id}"], now=w.now)
        w.inbound.drain()
        w.receipt("l1", f"id-{ready[1].command_id}", "undeliverable")
        reply = handset.receive(ready[0].frame, SERVER_NUMBER, w.clock.seconds())
        w.deliver(w.mo("+447700900100", reply.reply_frame))
        w.deliver(w.mo("+447700900101", other.alert(make_alert("invalid_sim"),
                                                    w.clock.seconds())))
        frame = handset.alert(make_alert("lost", detail="left on the bus " * 12),
                              w.clock.seconds())
        chunks = [frame[i:i + 128] for i in range(0, len(frame), 128)]
        for seq, chunk in enumerate(chunks, start=1):
            w.deliver(replace(w.mo("+447700900100", chunk),
                              udh=Udh(concat=Concat(7, len(chunks), seq))))
        w.clock.advance(1000)
        w.run(housekeeping_txn, now=w.now, stale_before=w.now,
              unanswered_before=w.now - timedelta(seconds=900), max_attempts=5,
              parts_before=w.now - timedelta(seconds=3600),
              receipts_before=w.now - timedelta(days=1))
        # The admin API's reads of the big tables: a fan-out's progress, the live events.
        w.run(fanout_states_txn, 1)
        w.run(live_events_txn, 0, 0)
        w.run(live_events_txn, 0, 0, device_id=first)
        assert w.scalar("SELECT state FROM devices WHERE id = :i", i=first) == "lost"
        assert w.scalar("SELECT count(*) FROM inbound_queue") == 0
        with w.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
