"""Failure injection at every transaction boundary of both inbound flows and the receipt flow.

For each scenario, a clean run counts the transactions; then every one of
them in turn fails, before it runs or after it committed.  The peer does what
a real one does (an SMSC redelivers a deliver_sm answered with an error, a
gateway retries a callback answered 503), the workers go on (leases run
out, failed items come back), and the invariants are checked: nothing
acknowledged is lost, and each reaction happens exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mepl.http_store import blobstore_callback_store
from mepl.inbound import InboundReceiver
from mepl.runtime.inbound_worker import InboundWorker
from mepl.runtime.outbound_txn import record_submitted_txn
from mepl.settings import DispatchConfig
from signing.alerts import make_alert
from signing.transport import armour
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus
from sms_gateway.http import (
    CallbackHandler,
    CallbackRequest,
    HttpConfig,
    HttpGatewayConfig,
    HttpMetrics,
)
from sms_gateway.http.auth import sign_body
from tests.mepl.faults import FaultyRunner
from tests.mepl.helpers import SERVER_ID, SERVER_NUMBER, World

IMEI = "490154203237518"
NUMBER = "+447700900101"
SECRET = "s" * 32


class Rig:
    """One world whose inbound side runs on a FaultyRunner."""

    def __init__(self, fail_at: int | None, mode: str, group: bool = False) -> None:
        self.w = World.create()
        self.device_id, self.handset = self.w.enrol(IMEI, NUMBER)
        self.runner = FaultyRunner(self.w.pool, fail_at=fail_at, mode=mode)
        config = DispatchConfig(server_number=SERVER_NUMBER, retry_delay_s=5)
        self.worker = InboundWorker(runner=self.runner, clock=self.w.clock, server_id=SERVER_ID,
                                    config=config, worker="w1", group=group)
        self.receiver = InboundReceiver(runner=self.runner, clock=self.w.clock,
                                        wake=lambda: None, max_rows=1)
        gateways = HttpConfig(gateways={"hosted": HttpGatewayConfig(
            format="json", auth="hmac", secret=SECRET)})
        self.http = CallbackHandler(gateways, blobstore_callback_store(self.runner),
                                    clock=self.w.clock, metrics=HttpMetrics(CollectorRegistry()))
        self.worker.reparse = self.http.reparse

    def close(self) -> None:
        self.w.engine.dispose()

    def until_acknowledged(self, attempt: Callable[[], Any]) -> None:
        """Retry as the peer does until the item is acknowledged (at most 3 tries)."""
        for _ in range(3):
            results: list[Any] = []
            attempt().addBoth(results.append)
            if results and not isinstance(results[0], Failure) and results[0] in (None, 200):
                return
        raise AssertionError("never acknowledged")

    def settle(self) -> None:
        """Run the worker until the queue is empty, letting leases and delays run out."""
        for _ in range(12):
            results: list[Any] = []
            self.worker.run_once().addBoth(results.append)
            for _turn in range(8):  # grouped transactions run on the next turns
                self.w.clock.advance(0)
            if self.w.scalar("SELECT count(*) FROM inbound_queue WHERE state = 'pending'") == 0:
                return
            self.w.clock.advance(61)
        raise AssertionError("the inbound queue never drained")

    def post(self, document: dict[str, Any]) -> Any:
        body = json.dumps(document).encode()
        headers = {"content-type": "application/json",
                   "x-mepl-signature": sign_body(SECRET, body, int(self.w.clock.seconds()))}
        request = CallbackRequest(method="POST", target="/gateways/hosted/inbound",
                                  headers=headers, body=body, remote="127.0.0.1")
        return self.http.handle("hosted", "inbound", request).addCallback(lambda r: r.status)


def _sim_swap_over_smpp(rig: Rig) -> None:
    frame = rig.handset.alert(make_alert("sim_changed", imsi="234159999999999"),
                              rig.w.clock.seconds())
    message = rig.w.mo(NUMBER, frame)
    rig.until_acknowledged(lambda: rig.receiver.on_inbound(message))
    rig.settle()


def _lost_over_http(rig: Rig) -> None:
    frame = rig.handset.alert(make_alert("lost"), rig.w.clock.seconds())
    document = {"id": "cb-1", "from": NUMBER, "to": SERVER_NUMBER, "text": armour(frame)}
    rig.until_acknowledged(lambda: rig.post(document))
    rig.settle()


def _receipt_over_smpp(rig: Rig) -> int:
    command_id = rig.w.queue(rig.device_id)
    (ready,) = rig.w.claim()
    rig.w.run(record_submitted_txn, ready, link="l1", channel="smpp", message_ids=["m-1"],
              now=rig.w.now)
    receipt = DeliveryReceipt(channel=Channel.SMPP, link="l1", message_id="m-1",
                              status=DeliveryStatus.DELIVERED, received_at=rig.w.now)
    rig.until_acknowledged(lambda: rig.receiver.on_receipt(receipt))
    rig.settle()
    return command_id


class FaultInjectionTests(SynchronousTestCase):
    group = False

    def sweep(self, scenario: Callable[[Rig], Any], check: Callable[[Rig, Any], None]) -> int:
        clean = Rig(None, "before", self.group)
        self.addCleanup(clean.close)
        check(clean, scenario(clean))
        boundaries = len(clean.runner.calls)
        self.assertGreaterEqual(boundaries, 3)
        injected = 0
        for mode in ("before", "after"):
            for n in range(1, boundaries + 1):
                rig = Rig(n, mode, self.group)
                self.addCleanup(rig.close)
                outcome = scenario(rig)
                injected += len(rig.runner.injected)
                with self.subTest(mode=mode, boundary=n, desc=rig.runner.calls[n - 1]):
                    check(rig, outcome)
        self.assertEqual(injected, 2 * boundaries)
        return boundaries

    def test_a_sim_swap_alert_over_smpp_locks_the_device_exactly_once_whatever_fails(
            self) -> None:
        def check(rig: Rig, _: Any) -> None:
            w = rig.w
            self.assertEqual(w.scalar("SELECT count(*) FROM commands WHERE requested_by = "
                                      "'policy:sim_changed' AND opcode = 'lock'"), 1)
            self.assertEqual(w.scalar("SELECT imsi FROM devices"), "234159999999999")
            self.assertEqual(w.scalar("SELECT counter_hwm FROM devices"), 1)
            self.assertEqual(w.scalar("SELECT count(*) FROM security_events WHERE kind = "
                                      "'alert:sim_changed'"), 1)
            self.assertEqual(w.scalar("SELECT count(*) FROM inbound_queue"), 0)

        self.sweep(_sim_swap_over_smpp, check)

    def test_a_lost_alert_through_an_http_gateway_is_applied_exactly_once_whatever_fails(
            self) -> None:
        def check(rig: Rig, _: Any) -> None:
            w = rig.w
            self.assertEqual(w.scalar("SELECT state FROM devices"), "lost")
            self.assertEqual(w.scalar("SELECT count(*) FROM commands WHERE requested_by = "
                                      "'policy:lost'"), 1)
            self.assertEqual(w.scalar("SELECT count(*) FROM messages WHERE channel = 'http' "
                                      "AND external_id IS NOT NULL"), 1)
            self.assertEqual(w.scalar("SELECT count(*) FROM inbound_queue"), 0)

        self.sweep(_lost_over_http, check)

    def test_a_delivery_receipt_moves_its_command_on_exactly_once_whatever_fails(
            self) -> None:
        def check(rig: Rig, command_id: int) -> None:
            w = rig.w
            self.assertEqual(w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id),
                             "delivered")
            self.assertEqual(w.scalar("SELECT count(*) FROM command_events WHERE command_id = "
                                      ":i AND event = 'delivered'", i=command_id), 1)
            self.assertEqual(w.scalar("SELECT count(*) FROM inbound_queue"), 0)

        self.sweep(_receipt_over_smpp, check)


class GroupedFaultInjectionTests(FaultInjectionTests):
    """The same, with the worker's look-ups and applies in group commits (as `mepl run` does)."""

    group = True
