"""``mepl demo``'s admin channel: PKI made once, proxy started, the admin path driven, twice."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.cli.main import build_parser
from mepl.demo import DemoOptions, run_demo
from tests.mepl import test_loop_e2e


class DemoAdminChannelTests(TestCase):
    timeout = 180
    setUp = test_loop_e2e.WholeLoopTests.setUp
    scalar = test_loop_e2e.WholeLoopTests.scalar

    @inlineCallbacks
    def demo(self, state: Path) -> Any:
        out = io.StringIO()
        status = yield run_demo(reactor, self.keys, self.engine, DemoOptions(
            devices=3, timeout=30, receipt_delay=0.05, state_dir=state, proxy_port=0), out)
        self.assertEqual(status, 0, out.getvalue())
        self.assertIn("demo: OK", out.getvalue())
        return out.getvalue()

    @inlineCallbacks
    def test_the_demo_drives_the_admin_channel_through_the_proxy_and_again_in_the_same_state(
            self) -> Any:
        state = Path(tempfile.mkdtemp(prefix="demo", dir="/tmp"))  # short: a UNIX socket
        self.addCleanup(shutil.rmtree, state, True)
        first = yield self.demo(state)
        ca = (state / "pki" / "ca.pem").read_bytes()
        bundle = (state / "pki" / "issued" / "demo-admin.p12").read_bytes()
        second = yield self.demo(state)
        for output in (first, second):
            self.assertIn("admin: whoami through the proxy: demo-admin (admin)", output)
            self.assertIn("by its national number 07700*****", output)
            self.assertRegex(output, r"admin: status query \d+ through the proxy: done")
            self.assertIn(f"mdm-console --config {state}/console/demo-admin.toml devices list",
                          output)
        # The PKI and identities are made once and kept.
        self.assertEqual((state / "pki" / "ca.pem").read_bytes(), ca)
        self.assertEqual((state / "pki" / "issued" / "demo-admin.p12").read_bytes(), bundle)
        for name in ("demo-admin", "demo-approver"):
            secret = state / "pki" / "issued" / f"{name}.passphrase"
            self.assertEqual(secret.stat().st_mode & 0o777, 0o600)
            config = (state / "console" / f"{name}.toml").read_text()
            self.assertIn(f'passphrase_file = "{secret}"', config)
        # The console configuration names the second run's proxy.
        url = next(w for line in second.splitlines() if "console proxy" in line
                   for w in line.split() if w.startswith("https://")).rstrip(",")
        self.assertIn(f'proxy = "{url}"', (state / "console" / "demo-admin.toml").read_text())
        # Through the proxy, audited as the demo's admin, and answered by the handset.
        self.assertEqual(self.scalar(
            "SELECT count(*) FROM audit WHERE actor = 'demo-admin' AND action = 'command.send'"
            " AND details->>'outcome' = 'ok'"), 2)
        self.assertEqual(self.scalar(
            "SELECT count(*) FROM commands WHERE requested_by LIKE '%demo-admin%' "
            "AND opcode = 'status_query' AND state = 'done'"), 2)


def test_demo_help_names_serve_and_the_proxy_port() -> None:
    parser = build_parser()
    args = parser.parse_args(["demo", "--serve", "--proxy-port", "0"])
    assert args.serve is True and args.proxy_port == 0
    assert parser.parse_args(["demo"]).proxy_port is None
