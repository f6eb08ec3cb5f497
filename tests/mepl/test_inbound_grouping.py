"""With group commit, a claimed batch of inbound items costs a few transactions, not one each."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mepl.runtime.inbound_worker import InboundWorker
from mepl.runtime.outbound_txn import record_submitted_txn
from mepl.settings import DispatchConfig
from signing.alerts import make_alert
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus
from tests.mepl.faults import FaultyRunner
from tests.mepl.helpers import SERVER_ID, SERVER_NUMBER, World

IMEI = "490154203237518"
NUMBER = "+447700900101"


class GroupedWorkerTests(SynchronousTestCase):
    def test_forty_receipts_and_an_alert_are_applied_in_a_handful_of_transactions(
            self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device_id, handset = w.enrol(IMEI, NUMBER)
        commands = [w.queue(device_id) for _ in range(40)]
        for ready in w.claim():
            w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                  message_ids=[f"id-{ready.command_id}"], now=w.now)
        counting = FaultyRunner(w.pool)  # never fails: counts the transactions
        worker = InboundWorker(runner=counting, clock=w.clock, server_id=SERVER_ID,
                               config=DispatchConfig(server_number=SERVER_NUMBER),
                               worker="grouped", group=True)
        for command_id in commands:
            self.successResultOf(w.inbound.receiver.on_receipt(_receipt(w, command_id)))
        self.successResultOf(w.inbound.receiver.on_inbound(w.mo(
            NUMBER, handset.alert(make_alert("lost"), w.clock.seconds()))))
        results: list[Any] = []
        worker.run_once().addBoth(results.append)
        for _ in range(10):
            w.clock.advance(0)
        self.assertEqual(results, [41])
        self.assertEqual(w.scalar("SELECT count(*) FROM commands WHERE state = 'delivered'"),
                         40)
        self.assertEqual(w.scalar("SELECT state FROM devices"), "lost")
        self.assertEqual(w.scalar("SELECT count(*) FROM inbound_queue"), 0)
        # claim + one set-based transaction for the 40 receipts + the alert's
        # look-up and its apply
        self.assertEqual(len(counting.calls), 4, counting.calls)
        self.assertEqual([c for c in counting.calls if "receipt" in c], ["apply_receipts[40]"])


def _receipt(w: World, command_id: int) -> DeliveryReceipt:
    return DeliveryReceipt(channel=Channel.SMPP, link="l1", message_id=f"id-{command_id}",
                           status=DeliveryStatus.DELIVERED, received_at=w.now)
