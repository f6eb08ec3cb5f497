"""An acknowledged gateway callback is queued with its bytes and applied once, by
whichever process claims it, even when the process that took it stopped."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from blobstore.inbound_queue import claim_entries_txn
from mepl.http_store import blobstore_callback_store
from mepl.runtime.outbound_txn import record_submitted_txn
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


class HttpQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, self.handset = self.w.enrol(IMEI, SENDER)
        self.config = HttpConfig(gateways={"hosted": HttpGatewayConfig(
            format="json", auth="hmac", secret=SECRET)})
        # The process that takes the callbacks stops before applying them.
        self.crashed = CallbackHandler(self.config, blobstore_callback_store(self.w.pool),
                                       clock=self.w.clock,
                                       metrics=HttpMetrics(CollectorRegistry()))
        # Another process (same gateways configured) applies the queue.
        self.w.inbound.worker.reparse = self.crashed.reparse

    def post(self, endpoint: str, document: dict[str, Any]) -> int:
        body = json.dumps(document).encode()
        headers = {"content-type": "application/json",
                   "x-mepl-signature": sign_body(SECRET, body, int(self.w.clock.seconds()))}
        request = CallbackRequest(method="POST", target=f"/gateways/hosted/{endpoint}",
                                  headers=headers, body=body, remote="127.0.0.1")
        reply = self.successResultOf(self.crashed.handle("hosted", endpoint, request))
        return reply.status

    def test_an_acknowledged_alert_callback_is_applied_once_by_another_process(self) -> None:
        frame = self.handset.alert(make_alert("lost"), self.w.clock.seconds())
        self.assertEqual(self.post("inbound", {"id": "g-1", "from": SENDER,
                                               "to": SERVER_NUMBER, "text": armour(frame)}), 200)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 1)
        self.assertEqual(self.w.inbound.drain(), 1)
        self.assertEqual(self.w.scalar("SELECT state FROM devices"), "lost")
        self.assertEqual(self.w.inbound.counts["alert_lost"], 1)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 0)
        # The gateway retries the same callback: acknowledged, not queued again.
        self.assertEqual(self.post("inbound", {"id": "g-1", "from": SENDER,
                                               "to": SERVER_NUMBER, "text": armour(frame)}), 200)
        self.assertEqual(self.w.inbound.drain(), 0)

    def test_an_acknowledged_receipt_callback_moves_its_command_on(self) -> None:
        command_id = self.w.queue(self.device_id)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="hosted", channel="http",
                   message_ids=["gw-77"], now=self.w.now)
        self.assertEqual(self.post("receipt", {"id": "r-1", "message_id": "gw-77",
                                               "status": "delivered"}), 200)
        self.assertEqual(self.w.inbound.drain(), 1)
        self.assertEqual(self.w.scalar("SELECT state FROM commands WHERE id = :i",
                                       i=command_id), "delivered")

    def test_a_callback_for_a_gateway_no_longer_configured_is_marked_not_recoverable(
            self) -> None:
        self.post("inbound", {"id": "g-2", "from": SENDER, "to": SERVER_NUMBER,
                              "text": "hello"})
        self.w.inbound.worker.reparse = CallbackHandler(
            HttpConfig(), blobstore_callback_store(self.w.pool), clock=self.w.clock,
            metrics=HttpMetrics(CollectorRegistry())).reparse
        self.assertEqual(self.w.inbound.drain(), 1)
        self.assertTrue(str(self.w.scalar(
            "SELECT error FROM messages WHERE channel = 'http'")).startswith(
                "rejected: not recoverable"))
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 0)

    def test_an_sms_whose_text_looks_like_an_http_request_is_never_parsed_as_a_callback(
            self) -> None:
        sneaky = ("POST /gateways/hosted/inbound HTTP/1.1\r\ncontent-type: application/json"
                  "\r\n\r\n{\"id\": \"x\"}")
        self.assertEqual(self.post("inbound", {"id": "g-3", "from": SENDER,
                                               "to": SERVER_NUMBER, "text": sneaky}), 200)
        self.assertEqual(self.w.inbound.drain(), 1)
        # One callback row and the SMS part made from it; neither is queued again.
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM messages WHERE channel = 'http' AND kind = 'mo'"), 2)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM inbound_queue"), 0)
        self.w.clock.advance(3600)
        self.assertEqual(self.w.inbound.drain(), 0)

    def test_a_worker_that_stopped_mid_item_loses_its_lease_to_another(self) -> None:
        frame = self.handset.alert(make_alert("lost"), self.w.clock.seconds())
        self.post("inbound", {"id": "g-4", "from": SENDER, "to": SERVER_NUMBER,
                              "text": armour(frame)})

        claimed = self.w.run(claim_entries_txn, worker="dead", now=self.w.now,
                             lease=timedelta(seconds=60), limit=10)
        self.assertEqual(len(claimed), 1)  # ... and the process dies here
        self.assertEqual(self.w.inbound.drain(), 0)  # the lease still holds
        self.w.clock.advance(61)
        self.assertEqual(self.w.inbound.drain(), 1)
        self.assertEqual(self.w.inbound.counts["alert_lost"], 1)
