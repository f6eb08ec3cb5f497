"""End to end over real loopback TCP: the bind against the simulator, real reactor."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest

from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.events import DeliveryStatus
from sms_gateway.reassembly import Reassembler, add_inbound
from sms_gateway.routing import Route, Router
from sms_gateway.smpp.protocol import no_delay
from sms_gateway.smpp.receipts import MultipartTracker
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from sms_gateway.udh import Concat, Udh
from tests.smpp.support import Harness, make_harness, nodelay_of

R: Any = reactor


class LoopbackTest(unittest.TestCase):
    timeout = 60

    async def start(self, sim_config: SimulatorConfig | None = None, name: str = "a",
                    **link_kw: Any) -> Harness:
        sim = SmscSimulator(sim_config or SimulatorConfig(receipt_delay=0.05), clock=R,
                            rng=random.Random(3))
        port = R.listenTCP(0, sim.factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        h = make_harness(R, TCP4ClientEndpoint(R, "127.0.0.1", number), sim, name,
                         port=number, **link_kw)
        h.bind.startService()
        self.addCleanup(sim.stop)
        self.addCleanup(h.bind.stopService)  # runs first: a graceful unbind
        up = h.bind.when_up()
        up.addTimeout(10, R)
        await up
        return h

    def burst(self, h: Harness, n: int) -> list[defer.Deferred[SubmitResult]]:
        return [h.bind.submit(OutboundMessage("+447700900123", i.to_bytes(4, "big"),
                                              request_receipt=False, reference=str(i)))
                for i in range(n)]

    @defer.inlineCallbacks
    def test_both_ends_turn_nagle_off_so_a_lone_answer_is_not_held_for_a_delayed_ack(
            self) -> Any:
        h = yield defer.ensureDeferred(self.start())
        assert h.bind.proto is not None
        self.assertEqual(nodelay_of(h.bind.proto), 1)
        self.assertEqual(nodelay_of(h.sim.connections[0].proto), 1)
        self.assertFalse(no_delay(object()))  # no TCP underneath: nothing to set

    @defer.inlineCallbacks
    def test_burst_of_10k_with_a_window_loses_nothing(self) -> Any:
        h = yield defer.ensureDeferred(self.start(window=50))
        results = yield defer.gatherResults(self.burst(h, 10_000))
        ids = [r.message_ids[0] for r in results]
        self.assertEqual(len(set(ids)), 10_000)
        self.assertEqual(len(h.submitted), 10_000)
        self.assertEqual({int.from_bytes(s.sm.short_message, "big") for s in h.submitted},
                         set(range(10_000)))
        self.assertEqual(h.bind.stats["failed"], 0)

    @defer.inlineCallbacks
    def test_throttling_storm_completes_everything_in_order(self) -> Any:
        h = yield defer.ensureDeferred(self.start(SimulatorConfig(throttle_tps=1500.0),
                                                  window=10, throttle_pause_min=0.02))
        fired: list[int] = []
        ds = self.burst(h, 3000)
        for i, d in enumerate(ds):
            d.addCallback(lambda r, i=i: fired.append(i))
        yield defer.gatherResults(ds)
        self.assertGreater(h.sim.stats["throttled"], 0)
        self.assertEqual(sorted(fired), list(range(3000)))
        accepted = [int.from_bytes(s.sm.short_message, "big") for s in h.submitted]
        self.assertEqual(sorted(accepted), list(range(3000)))
        # resends go ahead of new traffic: nothing overtaken by more than a window
        worst = max(abs(pos - value) for pos, value in enumerate(accepted))
        self.assertLessEqual(worst, 10)

    @defer.inlineCallbacks
    def test_throttling_storm_with_window_one_is_strictly_in_order(self) -> Any:
        h = yield defer.ensureDeferred(self.start(SimulatorConfig(throttle_tps=800.0),
                                                  window=1, throttle_pause_min=0.02))
        yield defer.gatherResults(self.burst(h, 600))
        self.assertGreater(h.sim.stats["throttled"], 0)
        accepted = [int.from_bytes(s.sm.short_message, "big") for s in h.submitted]
        self.assertEqual(accepted, list(range(600)))

    @defer.inlineCallbacks
    def test_smsc_disconnect_mid_burst_loses_nothing_and_reports_each_once(self) -> Any:
        h = yield defer.ensureDeferred(self.start(SimulatorConfig(disconnect_every=997),
                                                  window=20))
        fired = [0] * 5000
        ds = self.burst(h, 5000)
        for i, d in enumerate(ds):
            d.addBoth(lambda r, i=i: fired.__setitem__(i, fired[i] + 1) or r)
        results = yield defer.gatherResults(ds)
        self.assertEqual(fired, [1] * 5000)
        self.assertTrue(all(isinstance(r, SubmitResult) for r in results))
        self.assertGreaterEqual(h.sim.stats["disconnects"], 4)
        self.assertGreaterEqual(h.bind.stats["binds"], 5)
        seen = {int.from_bytes(s.sm.short_message, "big") for s in h.submitted}
        self.assertEqual(seen, set(range(5000)))

    @defer.inlineCallbacks
    def test_three_part_message_receipts_roll_up_to_one_delivered_status(self) -> Any:
        h = yield defer.ensureDeferred(self.start())
        tracker: MultipartTracker[str] = MultipartTracker()
        final: defer.Deferred[tuple[str, DeliveryStatus]] = defer.Deferred()
        payload = bytes(range(256)) + b"!" * 100
        result = yield h.bind.submit(OutboundMessage("+447700900123", payload))
        self.assertEqual(len(result.message_ids), 3)
        tracker.register("cmd-9", result.message_ids)

        def check() -> bool:
            for receipt in h.receipts:
                done = tracker.update(receipt.message_id, receipt.status)
                if done is not None:
                    final.callback(done)
            h.receipts.clear()
            return final.called

        while not check():
            yield task.deferLater(R, 0.02, lambda: None)
        self.assertEqual(final.result, ("cmd-9", DeliveryStatus.DELIVERED))

    @defer.inlineCallbacks
    def test_inbound_three_part_message_reassembles_from_shuffled_parts(self) -> Any:
        h = yield defer.ensureDeferred(self.start())
        body = b"".join(bytes([i]) * 120 for i in range(3))
        parts = [(seq, body[(seq - 1) * 120 : seq * 120]) for seq in (1, 2, 3)]
        random.Random(11).shuffle(parts)
        statuses = yield defer.gatherResults([
            h.sim.inject_mo("+447700900123", "+447700900000", chunk, 0x04,
                            udh=Udh(dest_port=2948, concat=Concat(0xBEEF, 3, seq, 16)))
            for seq, chunk in parts])
        self.assertEqual(statuses, [0, 0, 0])
        reassembler = Reassembler[Any]()
        done = [add_inbound(reassembler, m, 0.0) for m in h.inbound]
        self.assertEqual([d is None for d in done], [True, True, False])
        self.assertEqual(done[-1].payload, body)  # type: ignore[union-attr]
        self.assertEqual({m.udh.dest_port for m in h.inbound}, {2948})  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def test_router_fails_over_to_the_next_bind_when_one_smsc_goes_away(self) -> Any:
        first = yield defer.ensureDeferred(self.start(name="first"))
        second = yield defer.ensureDeferred(self.start(name="second"))
        router = Router([Route(("first", "second"), prefix="+447")],
                        {"first": first.bind, "second": second.bind})
        message = OutboundMessage("+447700900123", b"route me", request_receipt=False)
        result = yield router.submit(message)
        self.assertEqual((result.link, len(first.submitted), len(second.submitted)),
                         ("first", 1, 0))
        first.sim.config = SimulatorConfig(system_id="other")  # it refuses new binds now
        first.sim.disconnect_all()
        while first.bind.is_up:
            yield task.deferLater(R, 0.01, lambda: None)
        result = yield router.submit(message)
        self.assertEqual(result.link, "second")
        self.assertEqual((len(first.submitted), len(second.submitted)), (1, 1))
