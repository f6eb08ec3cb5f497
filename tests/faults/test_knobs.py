"""The fault knobs of the simulator and the fleet, over real loopback TCP with a real bind."""

from __future__ import annotations

import random
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial import unittest

from mepl.fleet import SimulatedFleet, make_device
from signing.keystore import ServerKeyStore
from sms_gateway.channel import OutboundMessage
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator, SubmittedMessage
from tests.faults.rig import SERVER, imei
from tests.smpp.support import Harness, make_harness

R: Any = reactor


class KnobTests(unittest.TestCase):
    timeout = 30

    async def start(self, config: SimulatorConfig, **link_kw: Any) -> Harness:
        sim = SmscSimulator(config, clock=R, rng=random.Random(5))
        port = R.listenTCP(0, sim.factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        h = make_harness(R, TCP4ClientEndpoint(R, "127.0.0.1", number), sim, port=number,
                         **link_kw)
        h.bind.startService()
        self.addCleanup(sim.stop)
        self.addCleanup(h.bind.stopService)
        up = h.bind.when_up()
        up.addTimeout(10, R)
        await up
        return h

    @defer.inlineCallbacks
    def settle(self, sim: SmscSimulator) -> Any:
        for _ in range(200):
            if sim.pending() == 0:
                return
            yield deferLater(R, 0.02, lambda: None)
        self.fail("the simulator never became idle")

    @defer.inlineCallbacks
    def test_a_throttle_burst_answers_exactly_that_many_submits_throttled(self) -> Any:
        h = yield defer.ensureDeferred(self.start(SimulatorConfig(receipt_delay=0.01),
                                                  throttle_pause_min=0.01))
        h.sim.throttle_burst(4)
        results = yield defer.gatherResults([h.bind.submit(OutboundMessage(
            "+447700900123", bytes([i]), request_receipt=False)) for i in range(6)])
        self.assertEqual(len(results), 6)
        self.assertEqual(h.sim.stats["throttled"], 4)
        self.assertEqual(h.sim.stats["accepted"], 6)
        self.assertRaises(ValueError, h.sim.throttle_burst, -1)

    @defer.inlineCallbacks
    def test_receipts_are_duplicated_and_counted_as_sent_and_acknowledged(self) -> Any:
        h = yield defer.ensureDeferred(self.start(SimulatorConfig(
            receipt_delay=0.01, receipt_jitter=0.05, receipt_copies=2)))
        yield defer.gatherResults([h.bind.submit(OutboundMessage("+447700900123", bytes([i])))
                                   for i in range(3)])
        yield self.settle(h.sim)
        for _ in range(100):
            if h.sim.stats["deliver_ok"] == 6:
                break
            yield deferLater(R, 0.02, lambda: None)
        self.assertEqual(len(h.receipts), 6)
        self.assertEqual(len({r.message_id for r in h.receipts}), 3)
        self.assertEqual((h.sim.stats["receipts"], h.sim.stats["deliver_sm"],
                          h.sim.stats["deliver_ok"]), (6, 6, 6))
        self.assertRaises(ValueError, SimulatorConfig, receipt_copies=0)

    @defer.inlineCallbacks
    def test_disconnect_all_counts_the_binds_it_drops(self) -> Any:
        h = yield defer.ensureDeferred(self.start(SimulatorConfig()))
        h.sim.disconnect_all()
        self.assertEqual(h.sim.stats["dropped_binds"], 1)

    def test_an_offline_handset_misses_its_messages_and_replies_go_through_the_uplink(
            self) -> None:
        sim = SmscSimulator(SimulatorConfig(), clock=R)
        fleet = SimulatedFleet(sim, R, SERVER, reply_copies=2)
        # Not self.mktemp(): trial makes that under the working directory (the checkout).
        base = Path(tempfile.mkdtemp(prefix="mepl-knobs-"))
        self.addCleanup(shutil.rmtree, base, True)
        store = ServerKeyStore(base / "keys")
        store.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER,))
        device = make_device(store.bundle(imei(1)), "+447700900001", "234150000000001")
        fleet.add(device)
        sent: list[tuple[str, bytes]] = []
        fleet.uplink = lambda sender, frame: defer.succeed(sent.append((sender, frame)))
        fleet.raise_alert(device.msisdn, "invalid_sim")
        self.assertEqual([s for s, _ in sent], [device.msisdn])
        device.offline = True
        fleet._on_submit(SubmittedMessage("op", "1", ShortMessage(
            destination_addr=device.msisdn.lstrip("+"), source_addr=SERVER.lstrip("+"),
            short_message=b"not a frame"), 0.0))
        self.assertEqual((device.missed, device.executed, device.slots), (1, 0, []))
        self.assertRaises(ValueError, SimulatedFleet, sim, R, SERVER, reply_copies=0)
