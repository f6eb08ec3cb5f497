"""``mepl sms send`` and ``mepl simulate smsc`` as real processes over loopback."""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from sms_gateway.channel import OutboundMessage
from sms_gateway.smpp.session import frames_summary
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.smpp.support import make_harness

R: Any = reactor
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MEPL_")}


def config_file(tmp: Path, port: int, password: str = "secret") -> Path:
    path = tmp / "mepl.toml"
    path.write_text(f"""
[smpp.links.carrier]
host = "127.0.0.1"
port = {port}
system_id = "sim"
password = "{password}"
reconnect_min = 0.1
""")
    return path


class SmsSendTest(unittest.TestCase):
    timeout = 60

    def tmpdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="mepl-smpp-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def setUp(self) -> None:
        self.sim = SmscSimulator(SimulatorConfig(receipt_delay=0.05), clock=R,
                                 rng=random.Random(4))
        self.port = R.listenTCP(0, self.sim.factory(), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.sim.stop)
        self.seen: list[Any] = []
        self.sim.add_submit_observer(self.seen.append)
        self.received: list[str] = []  # what the simulator read, in order
        self.sim.add_pdu_observer(lambda direction, raw: self.received.append(
            frames_summary([raw])[0][0]) if direction == "in" else None)

    def run_cli(self, *args: str) -> defer.Deferred[tuple[bytes, bytes, int]]:
        return getProcessOutputAndValue(sys.executable, ("-m", "mepl.cli.main", *args),
                                        env=ENV, path=str(Path(__file__).parents[2]))

    @defer.inlineCallbacks
    def test_sms_send_prints_part_ids_and_the_rolled_up_receipt(self) -> Any:
        base = self.tmpdir()
        cfg = config_file(base, 1)  # a wrong port: --port overrides it
        out, err, code = yield self.run_cli(
            "sms", "send", "--config", str(cfg), "--port", str(self.port.getHost().port),
            "--to", "+447700900123", "--hex", "ab" * 300, "--wait-receipt", "--timeout", "20")
        self.assertEqual(code, 0, err)
        lines = out.decode().splitlines()
        ids = [s.message_id for s in self.seen]
        self.assertEqual(len(ids), 3)
        self.assertEqual(lines[:3], [f"part {i}/3: message id {m}" for i, m in
                                     enumerate(ids, start=1)])
        self.assertEqual(lines[3], "receipt: delivered")
        # every receipt is answered, the last one too, and only then comes the unbind
        self.assertEqual(self.received.count("deliver_sm_resp"), 3)
        self.assertEqual(self.received[-1], "unbind")

    @defer.inlineCallbacks
    def test_sms_send_with_bad_password_reports_the_refusal_at_once(self) -> Any:
        base = self.tmpdir()
        cfg = config_file(base, self.port.getHost().port, password="wrong")
        # --timeout far beyond the test's own: only an immediate exit passes
        _out, err, code = yield self.run_cli("sms", "send", "--config", str(cfg), "--to",
                                            "+447700900123", "--text", "hi", "--timeout", "600")
        self.assertEqual(code, 1)
        self.assertIn(b"mepl: error: bind carrier refused by the SMSC: "
                      b"0x0000000E ESME_RINVPASWD (invalid password)", err)
        self.assertEqual(self.received.count("bind_transceiver"), 1)  # no retry either
        self.assertEqual(self.seen, [])

    @defer.inlineCallbacks
    def test_sms_send_to_an_unreachable_smsc_still_gives_up_after_the_timeout(self) -> Any:
        base = self.tmpdir()
        free = R.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        number = free.getHost().port
        yield free.stopListening()  # nothing listens there now
        cfg = config_file(base, number)
        _out, err, code = yield self.run_cli("sms", "send", "--config", str(cfg), "--to",
                                            "+447700900123", "--text", "hi", "--timeout", "1")
        self.assertEqual(code, 1)
        self.assertIn(b"could not bind carrier", err)

    @defer.inlineCallbacks
    def test_sms_send_without_links_fails_clearly(self) -> Any:
        _out, err, code = yield self.run_cli("sms", "send", "--to", "+447700900123",
                                            "--text", "hi")
        self.assertEqual(code, 2)
        self.assertIn(b"no SMPP link configured", err)


class _Lines(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.first_line: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.buffer = b""

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer and not self.first_line.called:
            self.first_line.callback(self.buffer.split(b"\n")[0].decode())

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class SimulateSmscTest(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_simulator_process_accepts_a_bind_and_answers_submits(self) -> Any:
        proc = _Lines()
        transport = R.spawnProcess(proc, sys.executable,
                                   [sys.executable, "-m", "mepl.cli.main", "simulate", "smsc",
                                    "--port", "0", "--system-id", "sim", "--password", "secret"],
                                   env=ENV, path=str(Path(__file__).parents[2]))
        line = yield proc.first_line
        self.assertTrue(line.startswith("smsc simulator listening on 127.0.0.1:"), line)
        number = int(line.rsplit(":", 1)[1])
        sim_stub = SmscSimulator(SimulatorConfig(), clock=R)  # only for the harness signature
        h = make_harness(R, TCP4ClientEndpoint(R, "127.0.0.1", number), sim_stub, port=number)
        h.bind.startService()
        try:
            yield h.bind.when_up()
            result = yield h.bind.submit(OutboundMessage("+447700900123", b"hello"))
            self.assertEqual(len(result.message_ids), 1)
            int(result.message_ids[0], 16)  # hex ids
        finally:
            yield h.bind.stopService()
            transport.signalProcess("TERM")
            yield proc.ended
