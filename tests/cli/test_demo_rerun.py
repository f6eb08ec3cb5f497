"""``mepl demo`` re-run in one state (same database, same keys) with other --devices."""

from __future__ import annotations

import io
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.demo import GROUP, SERVER_NUMBER, DemoOptions, run_demo
from signing.keystore import ServerKeyStore
from tests.support.pg import migrated_database


class DemoRerunTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.engine = create_engine(migrated_database("rerun"))
        self.addCleanup(self.engine.dispose)
        tmp = tempfile.mkdtemp(prefix="mepl-test-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.keys = ServerKeyStore(Path(tmp) / "keys")
        self.keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER_NUMBER,))

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()

    @inlineCallbacks
    def demo(self, devices: int) -> Any:
        out = io.StringIO()
        status = yield run_demo(reactor, self.keys, self.engine,
                                DemoOptions(devices=devices, timeout=30, receipt_delay=0.05),
                                out)
        self.assertEqual(status, 0, out.getvalue())
        self.assertIn("demo: OK", out.getvalue())
        return out.getvalue()

    @inlineCallbacks
    def test_a_smaller_fleet_after_a_larger_one_targets_only_its_own_devices(self) -> Any:
        yield self.demo(5)
        output = yield self.demo(3)
        self.assertIn("LOCK to 3 devices", output)
        self.assertEqual(self.scalar(
            "SELECT count(*) FROM group_members m JOIN groups g ON g.id = m.group_id "
            f"WHERE g.name = '{GROUP}'"), 3)
        # Nothing was left for the devices of the first run that are not in the second.
        self.assertEqual(self.scalar("SELECT count(*) FROM commands WHERE state <> 'done'"), 0)

    @inlineCallbacks
    def test_a_larger_fleet_after_a_smaller_one_passes_too(self) -> Any:
        yield self.demo(3)
        output = yield self.demo(4)
        self.assertIn("LOCK to 4 devices", output)
