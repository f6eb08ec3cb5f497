"""A gateway callback acknowledged (stored) but never processed is finished later
from its stored bytes, once."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from blobstore.dispatch import record_submitted_txn
from mepl.http_store import blobstore_callback_store
from mepl.recovery import CallbackRecovery
from signing.alerts import make_alert
from signing.transport import armour
from sms_gateway.http import (
    CallbackHandler,
    CallbackRequest,
    HttpConfig,
    HttpGatewayConfig,
    HttpMetrics,
)
from sms_gateway.http.auth import sign_body
from tests.mepl.helpers import SERVER_NUMBER, World

IMEI = "490154203237518"
SENDER = "+447700900101"
SECRET = "s" * 32


class RecoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, self.handset = self.w.enrol(IMEI, SENDER)
        self.config = HttpConfig(gateways={"hosted": HttpGatewayConfig(
            format="json", auth="hmac", secret=SECRET)})
        # The process that took the callbacks stops before processing them.
        self.crashed = CallbackHandler(self.config, blobstore_callback_store(self.w.pool),
                                       clock=self.w.clock,
                                       metrics=HttpMetrics(CollectorRegistry()))
        self.recovery = CallbackRecovery(runner=self.w.pool, clock=self.w.clock,
                                         inbound=self.w.inbound,
                                         reparse=self.crashed.reparse, grace_s=60)

    def post(self, endpoint: str, document: dict[str, Any]) -> int:
        body = json.dumps(document).encode()
        headers = {"content-type": "application/json",
                   "x-mepl-signature": sign_body(SECRET, body, int(self.w.clock.seconds()))}
        request = CallbackRequest(method="POST", target=f"/gateways/hosted/{endpoint}",
                                  headers=headers, body=body, remote="127.0.0.1")
        reply = self.successResultOf(self.crashed.handle("hosted", endpoint, request))
        return reply.status

    def sweep(self) -> int:
        return int(self.successResultOf(self.recovery.sweep()))

    def test_an_unprocessed_alert_callback_is_processed_once_after_the_grace_period(
            self) -> None:
        frame = self.handset.alert(make_alert("lost"), self.w.clock.seconds())
        self.assertEqual(self.post("inbound", {"id": "g-1", "from": SENDER,
                                               "to": SERVER_NUMBER, "text": armour(frame)}), 200)
        self.assertEqual(self.sweep(), 0)  # still inside the grace period
        self.w.clock.advance(61)
        self.assertEqual(self.sweep(), 1)
        self.assertEqual(self.w.scalar("SELECT state FROM devices"), "lost")
        self.assertEqual(self.w.inbound.counts["alert_lost"], 1)
        self.w.clock.advance(61)
        self.assertEqual(self.sweep(), 0)

    def test_an_unprocessed_receipt_callback_moves_its_command_on(self) -> None:
        command_id = self.w.queue(self.device_id)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="hosted", channel="http",
                   message_ids=["gw-77"], now=self.w.now)
        self.assertEqual(self.post("receipt", {"id": "r-1", "message_id": "gw-77",
                                               "status": "delivered"}), 200)
        self.w.clock.advance(61)
        self.assertEqual(self.sweep(), 1)
        self.assertEqual(self.w.scalar("SELECT state FROM commands WHERE id = :i",
                                       i=command_id), "delivered")

    def test_a_callback_for_a_gateway_no_longer_configured_is_marked_not_recoverable(
            self) -> None:
        self.post("inbound", {"id": "g-2", "from": SENDER, "to": SERVER_NUMBER,
                              "text": "hello"})
        gone = CallbackRecovery(runner=self.w.pool, clock=self.w.clock,
                                inbound=self.w.inbound,
                                reparse=CallbackHandler(
                                    HttpConfig(), blobstore_callback_store(self.w.pool),
                                    clock=self.w.clock,
                                    metrics=HttpMetrics(CollectorRegistry())).reparse)
        self.w.clock.advance(61)
        self.assertEqual(self.successResultOf(gone.sweep()), 0)
        self.assertEqual(gone.failed, 1)
        self.assertTrue(str(self.w.scalar(
            "SELECT error FROM messages WHERE channel = 'http'")).startswith("not recoverable"))
