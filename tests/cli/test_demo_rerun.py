"""``mepl demo`` re-run in one state (same database, same keys) with other --devices,
and in a state whose keys it cannot use."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.cli.main import main
from mepl.demo import GROUP, SERVER_NUMBER, DemoOptions, run_demo
from tests.mepl import test_loop_e2e
from tests.support.pg import migrated_database


class DemoRerunTests(TestCase):
    timeout = 180
    # The whole-loop test's world: a migrated database and fresh server keys.
    setUp = test_loop_e2e.WholeLoopTests.setUp
    scalar = test_loop_e2e.WholeLoopTests.scalar

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


def test_demo_refuses_keys_that_do_not_trust_its_server_number(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init", "--state-dir", str(tmp_path),
                 "--trusted-number", "+12025550123"]) == 0
    url = migrated_database("demokeys")
    assert main(["demo", "--state-dir", str(tmp_path), "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert f"do not trust the demo's server number {SERVER_NUMBER}" in err
    assert "--state-dir" in err
