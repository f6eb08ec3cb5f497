"""``mepl run`` as an operator runs it: a separate process, a TOML config, an SMSC
on loopback, an external PostgreSQL, keys from ``mepl keys init``, SIGTERM to stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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
from tests.support.pdus import stored_pdus
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
            unbinds = [p for p in stored_pdus(conn) if p[:2] == ("out", "unbind")]
        self.assertEqual(len(unbinds), 1)


# A busy or invalid port: one clear line, a non-zero status, promptly, no traceback.

EXIT_BOUND_S = 30.0  # interpreter start, imports and the database check included


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def busy_port() -> tuple[socket.socket, int]:
    """A port on loopback held by a listening socket (close it when done)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, holder.getsockname()[1]


def mepl_process(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run ``python -m mepl.cli.main ARGV``; (exit status, stdout+stderr, seconds)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mepl.cli.main", *argv],
                          capture_output=True, text=True, timeout=EXIT_BOUND_S + 30,
                          env={**os.environ, **(env or {})}, check=False)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def run_with(tmp_path: Path, extra_config: str) -> tuple[int, str, float]:
    url = migrated_database("busy")
    assert main(["keys", "init", "--state-dir", str(tmp_path),
                 "--trusted-number", SERVER]) == 0
    config = tmp_path / "mepl.toml"
    config.write_text(f"""
[dispatch]
server_number = "{SERVER}"
[smpp.links.carrier]
host = "127.0.0.1"
port = {free_port()}
system_id = "op"
password = "pw123456"
{extra_config}
""")
    return mepl_process("run", "--config", str(config), "--state-dir", str(tmp_path),
                        env={"MEPL_DATABASE_URL": url})


def assert_one_clear_line(code: int, output: str, seconds: float, line: str) -> None:
    assert code == 1, output
    assert f"mepl: error: {line}" in output, output
    assert "Traceback" not in output, output
    assert seconds < EXIT_BOUND_S, output


def test_run_on_a_busy_callback_port_says_so_and_exits(tmp_path: Path) -> None:
    holder, port = busy_port()
    with holder:
        code, output, seconds = run_with(tmp_path, f"""
[http]
host = "127.0.0.1"
port = {port}
[http.gateways.hosted]
format = "json"
auth = "hmac"
secret = "0123456789abcdef0123"
""")
    assert_one_clear_line(code, output, seconds,
                          f"port 127.0.0.1:{port} is already in use (http.port)")


def test_run_on_a_busy_metrics_port_says_so_and_exits(tmp_path: Path) -> None:
    holder, port = busy_port()
    with holder:
        code, output, seconds = run_with(tmp_path, f"[metrics]\nport = {port}\n")
    assert_one_clear_line(code, output, seconds,
                          f"port 127.0.0.1:{port} is already in use (metrics.port)")


def test_simulate_smsc_on_a_busy_port_says_so_and_exits() -> None:
    holder, port = busy_port()
    with holder:
        code, output, seconds = mepl_process("simulate", "smsc", "--port", str(port))
    assert_one_clear_line(code, output, seconds,
                          f"port 127.0.0.1:{port} is already in use (--port)")


def test_simulate_smsc_refuses_an_invalid_port_or_address() -> None:
    code, output, _ = mepl_process("simulate", "smsc", "--port", "70000")
    assert code == 2 and "--port: invalid port '70000' (0 to 65535)" in output, output
    assert "Traceback" not in output
    code, output, seconds = mepl_process("simulate", "smsc", "--host", "192.0.2.1",
                                         "--port", "0")
    assert_one_clear_line(code, output, seconds, "cannot listen on 192.0.2.1:0 (--host)")
