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
from mepl.app.history import live_events_txn
from mepl.runtime.outbound_txn import housekeeping_txn, record_submitted_txn
from signing.alerts import make_alert
from sms_gateway.udh import Concat, Udh
from tests.mepl.helpers import SERVER_NUMBER, World

BIG_TABLES = frozenset({"commands", "messages", "command_events", "inbound_queue", "devices"})
IMEIS = ("490154203237518", "356938035643809")


def _seq_scans(plan: Any) -> list[str]:
    found: list[str] = []
    if isinstance(plan, dict):
        relation = str(plan.get("Relation Name"))
        if relation.startswith("messages_part_"):  # a partition of messages
            relation = "messages"
        if plan.get("Node Type") == "Seq Scan" and relation in BIG_TABLES:
            found.append(relation)
        for value in plan.values():
            found += _seq_scans(value)
    elif isinstance(plan, list):
        for item in plan:
            found += _seq_scans(item)
    return found


def seq_scan_offenders(engine: Any,
                       captured: list[tuple[str, Any]]) -> list[tuple[list[str], str]]:
    """EXPLAIN each captured statement with sequential scans discouraged; return the
    big tables each one still scans sequentially, with the statement's start."""
    offenders = []
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            for statement, parameters in captured:
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0]
                plan = json.loads(plan) if isinstance(plan, str) else plan
                scans = _seq_scans(plan)
                if scans:
                    offenders.append((scans, " ".join(statement.split())[:300]))
            raw.rollback()
    return offenders


class QueryPlanTests(SynchronousTestCase):
    def test_no_hot_statement_needs_a_sequential_scan_of_a_big_table(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        captured: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any,
                    context: Any, executemany: bool) -> None:
            if not executemany and statement.lstrip().split(None, 1)[0].upper() in (
                    "SELECT", "UPDATE", "DELETE", "INSERT", "WITH"):
                captured.append((statement, parameters))

        devices = [w.enrol(imei, f"+44770090010{n}") for n, imei in enumerate(IMEIS)]
        event.listen(w.engine, "before_cursor_execute", capture)
        self._run_both_flows(w, devices)
        event.remove(w.engine, "before_cursor_execute", capture)
        self.assertGreater(len(captured), 30)
        offenders = seq_scan_offenders(w.engine, captured)
        self.assertEqual(offenders, [])

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
