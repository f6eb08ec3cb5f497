"""``mepl run`` as an operator runs it: a separate process, a TOML config, an SMSC
on loopback, an external PostgreSQL, keys from ``mepl keys init``, SIGTERM to stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import treq
from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from mepl.cli.main import main
from mepl.fleet import SimulatedFleet, make_device
from signing.keystore import ServerKeyStore
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.support.pg import migrated_database

SERVER = "+447700900000"


class Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived  # noqa: N815

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


class RunProcessTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def test_run_dispatches_a_queued_command_and_stops_cleanly_on_sigterm(self) -> Any:
        url = migrated_database("run")
        engine = create_engine(url)
        self.addCleanup(engine.dispose)
        state = Path(tempfile.mkdtemp(prefix="mepl-test-"))
        self.addCleanup(shutil.rmtree, state, True)
        self.assertEqual(main(["keys", "init", "--state-dir", str(state),
                               "--trusted-number", SERVER]), 0)
        sim = SmscSimulator(SimulatorConfig(system_id="op", password="pw123456",
                                            receipt_delay=0.05), clock=reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(sim.factory())
        self.addCleanup(port.stopListening)
        self.addCleanup(sim.stop)
        fleet = SimulatedFleet(sim, reactor, SERVER)
        device = make_device(ServerKeyStore(state / "keys").bundle("490154203237518"),
                             "+447700900123", "234150000000001")
        fleet.add(device)
        # The operator's own steps: register, enrol the handset's key, queue a LOCK.
        db = ["--database-url", url, "--state-dir", str(state)]
        self.assertEqual(main(["devices", "add", "--imei", device.imei, "--phone",
                               "07700 900123", "--region", "GB", *db]), 0)
        self.assertEqual(main(["devices", "enrol", device.imei, "--public-key",
                               device.public_key.hex(), *db]), 0)
        self.assertEqual(main(["commands", "send", "--device", "+447700900123",
                               "--opcode", "lock", "--arg", "emergency_dialer=false", *db]), 0)
        with engine.connect() as conn:
            command_id = conn.execute(text("SELECT id FROM commands")).scalar_one()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
        probe.close()
        config = state / "mepl.toml"
        config.write_text(f"""
[mepl]
log_level = "info"
[dispatch]
server_number = "{SERVER}"
poll_interval_s = 0.05
[metrics]
port = {metrics_port}
[smpp.links.carrier]
host = "127.0.0.1"
port = {port.getHost().port}
system_id = "op"
password = "pw123456"
""")
        proto = Collect()
        env = {**os.environ, "MEPL_DATABASE_URL": url}
        reactor.spawnProcess(proto, sys.executable,
                             [sys.executable, "-m", "mepl.cli.main", "run", "--config",
                              str(config), "--state-dir", str(state)], env=env)
        state_now = None
        for _ in range(300):
            with engine.connect() as conn:
                state_now = conn.execute(text("SELECT state FROM commands WHERE id = :i"),
                                         {"i": command_id}).scalar()
            if state_now == "done":
                break
            yield deferLater(reactor, 0.1, lambda: None)
        response = yield treq.get(f"http://127.0.0.1:{metrics_port}/metrics",
                                  pool=HTTPConnectionPool(reactor, persistent=False))
        metrics = (yield treq.content(response)).decode()
        proto.transport.signalProcess(signal.SIGTERM)
        code = yield proto.ended
        output = proto.output.decode(errors="replace")
        self.assertEqual(state_now, "done", output)
        self.assertEqual(code, 0, output)
        self.assertEqual(device.executed, 1)
        self.assertEqual(main(["commands", "show", str(command_id), *db]), 0)
        self.assertIn("MEPL stopped", output)
        self.assertIn('mepl_dispatch_total{outcome="sent"} 1.0', metrics)
        self.assertIn('mepl_smpp_link_up{link="carrier"} 1.0', metrics)
        self.assertIn('mepl_inbound_total{event="replies"} 1.0', metrics)
        self.assertNotIn("pw123456", output)  # the bind password never reaches the log
        with engine.connect() as conn:
            unbinds = conn.execute(text(
                "SELECT count(*) FROM messages WHERE kind = 'pdu' AND meta->>'command' = 'unbind'"
            )).scalar()
        self.assertEqual(unbinds, 1)
