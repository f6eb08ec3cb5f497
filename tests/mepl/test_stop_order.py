"""A stopping process applies what its own links store while they stop.

A bind stores and acknowledges deliver_sm until its unbind (the early
receipts it held are released then, every deliver_sm already read is
answered); an HTTP listener finishes the callbacks in progress.  Those items
are acknowledged and queued, so the inbound worker must outlive the links
and apply what is due before the process stops; otherwise they wait in the
queue for whichever process runs next (the fault suite's full-scale SMSC
disconnects scenario found receipts left ``pending`` that way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mepl.inbound import InboundReceiver
from mepl.service import MeplService
from mepl.settings import load_settings
from signing.alerts import make_alert
from sms_gateway.channel import OutboundMessage
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.mepl.helpers import SERVER_NUMBER, World

IMEI = "490154203237518"
SENDER = "+447700900101"


class WorkerFinishTests(SynchronousTestCase):
    """``InboundWorker.finish``: the worker's last act, on a Clock."""

    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, self.handset = self.w.enrol(IMEI, SENDER)
        self.worker = self.w.inbound.worker
        self.receiver = InboundReceiver(runner=self.w.pool, clock=self.w.clock,
                                        wake=self.worker.wake, max_rows=1)

    def store_alert(self) -> None:
        frame = self.handset.alert(make_alert("lost"), self.w.clock.seconds())
        self.successResultOf(self.receiver.on_inbound(self.w.mo(SENDER, frame)))

    def queued(self) -> dict[str, int]:
        with self.w.engine.connect() as conn:
            return {str(state): int(n) for state, n in conn.execute(text(
                "SELECT state, count(*) FROM inbound_queue GROUP BY state"))}

    def test_finish_applies_an_item_stored_after_the_last_round_before_it_stops(
            self) -> None:
        self.worker.start()
        self.w.clock.advance(0)  # the first round: nothing queued yet
        self.store_alert()  # the wake-up's round is scheduled, not run
        self.assertEqual(self.queued(), {"pending": 1})
        self.assertEqual(self.successResultOf(self.worker.finish(10.0)), 1)
        self.assertEqual(self.queued(), {})
        self.assertEqual(self.worker.counts["alert_lost"], 1)

    def test_stop_alone_leaves_an_item_stored_after_the_last_round_queued(self) -> None:
        self.worker.start()
        self.w.clock.advance(0)
        self.store_alert()
        self.successResultOf(self.worker.stop())
        self.w.clock.advance(60)
        self.assertEqual(self.queued(), {"pending": 1})

    def test_no_round_runs_after_finish(self) -> None:
        self.worker.start()
        self.w.clock.advance(0)
        self.assertEqual(self.successResultOf(self.worker.finish(10.0)), 0)
        self.store_alert()  # woken, but finished: another process applies it
        self.w.clock.advance(60)
        self.assertEqual(self.queued(), {"pending": 1})
        self.assertEqual(self.worker.counts["alert_lost"], 0)

    def test_finish_ends_when_what_is_left_cannot_be_applied_yet(self) -> None:
        self.worker.start()
        self.w.clock.advance(0)
        self.successResultOf(self.receiver.on_receipt(DeliveryReceipt(
            channel=Channel.SMPP, link="l1", message_id="never-recorded",
            status=DeliveryStatus.DELIVERED, received_at=self.w.now)))
        self.assertEqual(self.successResultOf(self.worker.finish(10.0)), 1)
        self.assertEqual(self.queued(), {"waiting": 1})  # for its submit, not claimed again


class StoresWhileStopping(Service):
    """A link stand-in: stores one item while it stops, as a bind releasing a held receipt."""

    def __init__(self, store: Callable[[], Deferred[None]]) -> None:
        self.store = store

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return self.store()


class ServiceStopOrderTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_an_item_a_link_stores_while_stopping_is_applied_before_the_service_stops(
            self) -> Any:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        _, handset = w.enrol(IMEI, SENDER)
        settings = load_settings({"dispatch": {"server_number": SERVER_NUMBER}})
        service = MeplService(settings, reactor=reactor, engine=w.engine, signer=w.signer,
                              worker="stopping")

        def store() -> Deferred[None]:
            frame = handset.alert(make_alert("lost"), w.clock.seconds())
            return service.inbound.on_inbound(w.mo(SENDER, frame))

        StoresWhileStopping(store).setServiceParent(service)  # type: ignore[no-untyped-call]
        service.startService()
        yield service.stopService()
        self.assertEqual(w.scalar("SELECT count(*) FROM messages WHERE kind = 'mo'"), 1)
        self.assertEqual(w.scalar("SELECT count(*) FROM inbound_queue"), 0)
        self.assertEqual(service.worker.counts["alert_lost"], 1)

    @inlineCallbacks
    def test_a_receipt_a_bind_holds_at_stop_is_applied_by_the_stopping_service(
            self) -> Any:
        # The simulator sends the receipt long before the submit_sm_resp, so the
        # bind holds it (its id is unknown) and releases it in its stop, after
        # the submit is answered: as in the fault suite's SMSC disconnects.
        w = World.create()
        self.addCleanup(w.engine.dispose)
        sim = SmscSimulator(SimulatorConfig(system_id="stop", password="pw",
                                            receipt_delay=0.01, response_delay=1.0),
                            clock=reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            sim.factory())
        self.addCleanup(port.stopListening)
        self.addCleanup(sim.stop)
        settings = load_settings({
            "dispatch": {"server_number": SERVER_NUMBER},
            "smpp": {"links": {"sim": {"host": "127.0.0.1", "port": port.getHost().port,
                                       "system_id": "stop", "password": "pw"}}}})
        service = MeplService(settings, reactor=reactor, engine=w.engine, signer=w.signer,
                              worker="stopping")
        service.startService()
        try:
            yield service.when_bound()
            bind = service.binds["sim"]
            submitted = bind.submit(OutboundMessage("+447700900123", b"not a command"))
            for _ in range(200):
                if len(bind.hold):
                    break
                yield deferLater(reactor, 0.01, lambda: None)
            self.assertEqual(len(bind.hold), 1)
        finally:
            yield service.stopService()
        result = yield submitted
        self.assertEqual(sim.stats["receipts"], 1)
        with w.engine.connect() as conn:
            left = [tuple(r) for r in conn.execute(text(
                "SELECT kind, state, smsc_message_id, claimed_by, attempts FROM inbound_queue"))]
        # Its submit is not a recorded command, so the receipt waits for it; what
        # matters is that this process applied it, not the next one.
        self.assertEqual(left, [("dlr", "waiting", result.message_ids[0], None, 1)])


class StopWithTheSmscGoneTests(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_a_stop_does_not_wait_for_a_link_that_is_down_to_finish_a_round(self) -> Any:
        # A submit in flight when the SMSC vanishes waits for the link to come
        # back (down_timeout, 60 s).  The dispatcher's round waits for it; a stop
        # that waited for that round before stopping the links hung for a minute
        # (bench_queued's SIGTERM after its SMSC-gone phase was answered by SIGKILL).
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device_id, _ = w.enrol(IMEI, SENDER)
        sim = SmscSimulator(SimulatorConfig(system_id="gone", password="pw",
                                            response_delay=30.0), clock=reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            sim.factory())
        self.addCleanup(sim.stop)
        settings = load_settings({
            "dispatch": {"server_number": SERVER_NUMBER, "poll_interval_s": 0.05},
            "smpp": {"links": {"sim": {"host": "127.0.0.1", "port": port.getHost().port,
                                       "system_id": "gone", "password": "pw"}}}})
        service = MeplService(settings, reactor=reactor, engine=w.engine, signer=w.signer,
                              worker="stopping")
        service.startService()
        stopped = False
        try:
            yield service.when_bound()
            bind = service.binds["sim"]
            w.queue(device_id)
            for _ in range(300):
                if bind.submits_in_flight():
                    break
                yield deferLater(reactor, 0.01, lambda: None)
            self.assertTrue(bind.submits_in_flight())
            yield port.stopListening()
            sim.stop()  # the connection drops; the unanswered submit waits for the link
            yield deferLater(reactor, 0.2, lambda: None)
            started = reactor.seconds()
            yield service.stopService()
            stopped = True
            self.assertLess(reactor.seconds() - started, 10.0)
        finally:
            if not stopped:
                yield service.stopService()
        # The command was not sent: it is back in the queue for a later attempt.
        self.assertEqual(w.scalar("SELECT state FROM commands"), "queued")
