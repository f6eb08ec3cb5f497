"""Dispatching: claims seal once, failures requeue or fail, receipts roll up per part."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from blobstore.commands import NewCommand, insert_command_txn
from mepl.outbound import Dispatcher
from mepl.runtime.outbound_txn import record_submitted_txn
from mepl.settings import DispatchConfig
from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.errors import SubmitError
from tests.mepl.helpers import SERVER_NUMBER, World

IMEI = "490154203237518"


class ScriptedSubmitter:
    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[OutboundMessage] = []

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        self.sent.append(message)
        outcome = self.outcomes.pop(0)
        return fail(outcome) if isinstance(outcome, Exception) else succeed(outcome)


class DispatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, self.handset = self.w.enrol(IMEI, "+447700900101")

    def dispatcher(self, submitter: ScriptedSubmitter) -> Dispatcher:
        return Dispatcher(runner=self.w.pool, clock=self.w.clock, submitter=submitter,
                          seal=self.w.signer.seal, key_id=lambda: 1,
                          config=DispatchConfig(SERVER_NUMBER, retry_delay_s=30), worker="t")

    def row(self, command_id: int, column: str) -> Any:
        return self.w.scalar(f"SELECT {column} FROM commands WHERE id = :i", i=command_id)

    def test_temporary_failure_requeues_and_the_resend_carries_the_same_bytes(self) -> None:
        command_id = self.w.queue(self.device_id)
        submitter = ScriptedSubmitter(SubmitError("throttled", temporary=True),
                                      SubmitResult("l1", ("m1",)))
        dispatcher = self.dispatcher(submitter)
        self.successResultOf(dispatcher.run_once())
        self.assertEqual(self.row(command_id, "state"), "queued")
        self.assertEqual(self.successResultOf(dispatcher.run_once()), 0)  # not due yet
        self.w.clock.advance(31)
        self.successResultOf(dispatcher.run_once())
        self.assertEqual(self.row(command_id, "state"), "sent")
        first, second = submitter.sent
        self.assertEqual(first.payload, second.payload)
        self.assertEqual(self.row(command_id, "counter"), 1)
        # The frame really is for this device and verifies on its handset.
        outcome = self.handset.receive(second.payload, "+447700900000", self.w.clock.seconds())
        self.assertEqual(outcome.command.name, "lock")

    def test_permanent_failure_fails_the_command_with_the_reason(self) -> None:
        command_id = self.w.queue(self.device_id)
        dispatcher = self.dispatcher(ScriptedSubmitter(
            SubmitError("invalid destination", temporary=False, code=0x0B)))
        self.successResultOf(dispatcher.run_once())
        self.assertEqual(self.row(command_id, "state"), "failed")
        self.assertIn("invalid destination", self.row(command_id, "last_error"))

    def test_security_commands_are_claimed_before_older_normal_ones(self) -> None:
        normal = self.w.queue(self.device_id, "locate")
        urgent = self.w.run(insert_command_txn, self.device_id, NewCommand(
            opcode="wipe", requested_by="t", priority=10,
            not_after=self.w.now + timedelta(hours=1)))
        ready = self.w.claim()
        self.assertEqual([r.command_id for r in ready], [urgent, normal])

    def test_arguments_that_do_not_encode_fail_the_command_at_claim(self) -> None:
        command_id = self.w.queue(self.device_id, "sleep", minutes=999999)
        self.assertEqual(self.w.claim(), [])
        self.assertEqual(self.row(command_id, "state"), "failed")
        self.assertIn("cannot encode", self.row(command_id, "last_error"))

    def test_multi_part_command_is_delivered_only_when_every_part_is(self) -> None:
        command_id = self.w.queue(self.device_id)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                   message_ids=["p1", "p2", "p3"], now=self.w.now)
        for part, expect in (("p2", "sent"), ("p1", "sent"), ("p3", "delivered")):
            self.w.receipt("l1", part)
            self.assertEqual(self.row(command_id, "state"), expect)

    def test_undeliverable_receipt_requeues_the_command_for_a_resend(self) -> None:
        command_id = self.w.queue(self.device_id)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                   message_ids=["x1"], now=self.w.now)
        self.w.receipt("l1", "x1", "undeliverable")
        self.assertEqual(self.row(command_id, "state"), "queued")
        self.assertEqual(self.row(command_id, "last_error"), "delivery undeliverable")


class HousekeepingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.device_id, self.handset = self.w.enrol(IMEI, "+447700900101")

    def dispatcher(self, submitter: ScriptedSubmitter) -> Dispatcher:
        return Dispatcher(runner=self.w.pool, clock=self.w.clock, submitter=submitter,
                          seal=self.w.signer.seal, key_id=lambda: 1,
                          config=DispatchConfig(SERVER_NUMBER, stale_claim_s=300,
                                                resend_after_s=900, max_attempts=3), worker="t")

    def state(self, command_id: int) -> str:
        return str(self.w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id))

    def test_a_claim_left_by_a_dead_process_is_sent_by_another_with_the_same_frame(
            self) -> None:
        command_id = self.w.queue(self.device_id)
        (claimed,) = self.w.claim()  # a process claims and seals, then dies
        submitter = ScriptedSubmitter(SubmitResult("l1", ("m1",)))
        dispatcher = self.dispatcher(submitter)
        self.assertEqual(self.successResultOf(dispatcher.run_once()), 0)  # claim is fresh
        self.w.clock.advance(301)
        dispatcher._next_housekeeping = 0
        self.assertEqual(self.successResultOf(dispatcher.run_once()), 1)
        self.assertEqual(self.state(command_id), "sent")
        self.assertEqual(submitter.sent[0].payload, claimed.frame)
        self.assertEqual(dispatcher.stats.released, 1)

    def test_an_unanswered_command_is_resent_and_the_handset_does_not_execute_it_twice(
            self) -> None:
        command_id = self.w.queue(self.device_id)
        submitter = ScriptedSubmitter(SubmitResult("l1", ("m1",)), SubmitResult("l1", ("m2",)))
        dispatcher = self.dispatcher(submitter)
        self.successResultOf(dispatcher.run_once())
        first = self.handset.receive(submitter.sent[0].payload, "+447700900000",
                                     self.w.clock.seconds())  # the reply is lost
        self.w.clock.advance(901)
        self.successResultOf(dispatcher.housekeeping())
        self.successResultOf(dispatcher.run_once())
        self.assertEqual(dispatcher.stats.resent, 1)
        self.assertEqual(submitter.sent[1].payload, submitter.sent[0].payload)
        second = self.handset.receive(submitter.sent[1].payload, "+447700900000",
                                      self.w.clock.seconds())
        self.assertTrue(second.duplicate)
        self.assertEqual(second.reply_frame, first.reply_frame)
        self.assertEqual(self.state(command_id), "sent")

    def test_resends_stop_at_max_attempts_and_the_command_expires_at_not_after(self) -> None:
        command_id = self.w.queue(self.device_id)
        outcomes = [SubmitResult("l1", (f"m{i}",)) for i in range(5)]
        submitter = ScriptedSubmitter(*outcomes)
        dispatcher = self.dispatcher(submitter)
        for _ in range(3):
            self.successResultOf(dispatcher.run_once())
            self.w.clock.advance(901)
            self.successResultOf(dispatcher.housekeeping())
        self.assertEqual(self.successResultOf(dispatcher.run_once()), 0)
        self.assertEqual(len(submitter.sent), 3)
        self.assertEqual(self.w.scalar("SELECT attempts FROM commands"), 3)
        self.assertEqual(self.state(command_id), "sent")
        self.w.clock.advance(3600)
        self.successResultOf(dispatcher.housekeeping())
        self.assertEqual(self.state(command_id), "expired")


class ReadinessTests(SynchronousTestCase):
    def test_no_command_is_claimed_while_no_link_is_up(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device_id, _ = w.enrol(IMEI, "+447700900101")
        command_id = w.queue(device_id)
        up = [False]
        submitter = ScriptedSubmitter(SubmitResult("l1", ("m1",)))
        dispatcher = Dispatcher(runner=w.pool, clock=w.clock, submitter=submitter,
                                seal=w.signer.seal, key_id=lambda: 1,
                                config=DispatchConfig(SERVER_NUMBER),
                                worker="t", ready=lambda: up[0])
        self.assertEqual(self.successResultOf(dispatcher.run_once()), 0)
        self.assertEqual(w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id),
                         "queued")
        up[0] = True
        self.assertEqual(self.successResultOf(dispatcher.run_once()), 1)
        self.assertEqual(len(submitter.sent), 1)
