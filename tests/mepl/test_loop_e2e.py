"""The whole loop through real parts: embedded PostgreSQL, SMPP over loopback TCP
against the simulator, the HTTP callback listener, reference handsets."""

from __future__ import annotations

import io
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.app.pdus import PduQuery, around_message_txn, pdu_page_txn
from mepl.demo import SERVER_NUMBER, DemoOptions, run_demo
from signing.keystore import ServerKeyStore
from tests.support.pdus import stored_pdus
from tests.support.pg import migrated_database


class WholeLoopTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.engine = create_engine(migrated_database("loop"))
        self.addCleanup(self.engine.dispose)
        tmp = tempfile.mkdtemp(prefix="mepl-test-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.keys = ServerKeyStore(Path(tmp) / "keys")
        self.keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER_NUMBER,))

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()

    @inlineCallbacks
    def test_signed_commands_replies_and_alerts_complete_and_every_byte_is_stored(self) -> Any:
        out = io.StringIO()
        status = yield run_demo(reactor, self.keys, self.engine,
                                DemoOptions(devices=5, timeout=60, receipt_delay=0.05), out)
        self.assertEqual(status, 0, out.getvalue())
        # 5 group LOCKs + status query + notify + 2 policy LOCKs, all answered and verified.
        self.assertEqual(self.scalar("SELECT count(*) FROM commands WHERE state = 'done'"), 9)
        self.assertEqual(self.scalar("SELECT count(*) FROM commands WHERE state <> 'done'"), 0)
        self.assertEqual(self.scalar(
            "SELECT count(*) FROM commands WHERE requested_by LIKE 'policy:%' "
            "AND priority < 100"), 2)
        # Every reply row is linked to its command; every command frame is kept.
        self.assertEqual(self.scalar(
            "SELECT count(DISTINCT command_id) FROM messages WHERE kind = 'mo' "
            "AND command_id IS NOT NULL"), 9)
        self.assertEqual(self.scalar("SELECT count(*) FROM commands WHERE frame IS NULL"), 0)
        # The notification needed two SMS parts, each with its own SMSC id.
        self.assertEqual(self.scalar(
            "SELECT max(part_total) FROM messages WHERE kind = 'mt'"), 2)
        # Raw PDUs both ways (many to a row), the HTTP callback, and SHA-256 of each BLOB.
        with self.engine.connect() as conn:
            pdus = stored_pdus(conn)
        self.assertGreater(len([p for p in pdus if p[:2] == ("in", "deliver_sm")]), 9)
        self.assertGreater(len([p for p in pdus if p[:2] == ("out", "submit_sm")]), 9)
        self.assertEqual(self.scalar("SELECT count(*) FROM messages WHERE kind = 'pdu'"), 0)
        # One command's PDUs, found from its stored SMS as `mepl messages pdus --message` does.
        mt = self.scalar("SELECT min(id) FROM messages WHERE kind = 'mt' AND channel = 'smpp' "
                         "AND meta->>'status' = 'delivered'")
        with self.engine.begin() as conn:
            around = around_message_txn(conn, mt)
            page = pdu_page_txn(conn, PduQuery(
                link=around.link, since=around.at - timedelta(minutes=2),
                until=around.at + timedelta(minutes=2), smsc_ids=around.smsc_ids,
                references=around.references))
        seen = [(p.direction, p.command) for p in page.pdus]
        self.assertEqual(seen[:2], [("out", "submit_sm"), ("in", "submit_sm_resp")], seen)
        self.assertIn(("in", "deliver_sm"), seen)
        self.assertEqual({p.reference for p in page.pdus[:2]}, around.references)
        self.assertEqual([p.receipt_for is not None for p in page.pdus if p.command ==
                          "deliver_sm"], [True])
        self.assertEqual(self.scalar(
            "SELECT count(*) FROM messages WHERE channel = 'http' AND kind = 'mo'"), 2)
        self.assertEqual(self.scalar(
            "SELECT count(*) FROM messages WHERE sha256 <> sha256(payload)"), 0)
        # The SIM swap moved the device to its new number, recorded in the history.
        self.assertEqual(self.scalar(
            "SELECT count(*) FROM device_identity_history WHERE new_value = '+447700955555'"),
            1)
        self.assertEqual(self.scalar(
            "SELECT state FROM devices WHERE imei = '350000000000022'"), "lost")
        self.assertIn("demo: OK", out.getvalue())
