"""Scenarios 2, 3 and 6: the SMSC misbehaves under load, one ``mepl run`` process.

2. **Disconnects**: the simulator drops every bind every ``INTERVAL`` seconds
   while fan-outs run.  Submits in flight are resubmitted after the rebind
   (the same committed frame), receipts and replies lost with the connection
   are made up for by the resend of unanswered commands.
3. **Throttling storms**: bursts of submit_sm answered ESME_RTHROTTLED; the
   link pauses and the commands go out again.
6. **Duplicated, reordered and early receipts and replies**: every receipt
   sent twice, with a random delay (so out of order), and before the
   submit_sm_resp (the simulator answers the submit late); every handset
   sends each reply twice.

Expected final state in each: every command ``done``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from sms_gateway.smpp.simulator import SimulatorConfig
from tests.faults.rig import PASSWORD, SYSTEM_ID, FaultRig, Scale

INTERVAL = 1.0


def sleep(seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


class SmscFaultTests(TestCase):
    timeout = 300
    scale = Scale("quick", devices=20, faults=3)

    @inlineCallbacks
    def run_scenario(self, rig: FaultRig,
                     inject: Callable[[FaultRig], Generator[Any, Any, None]]) -> Any:
        """Start one process, queue a fan-out, inject, settle, stop."""
        yield rig.start()
        rig.spawn()
        try:
            yield rig.bound(1)
            rig.fan_out()
            yield inlineCallbacks(inject)(rig)
            yield rig.settle()
        finally:
            yield rig.stop()

    @inlineCallbacks
    def test_smsc_disconnects_every_few_seconds_under_load_lose_and_double_nothing(
            self) -> Any:
        rig = FaultRig(self, self.scale.devices, sim=SimulatorConfig(
            system_id=SYSTEM_ID, password=PASSWORD, receipt_delay=0.2, response_delay=0.05))

        def inject(rig: FaultRig) -> Generator[Any, Any, None]:
            for n in range(self.scale.faults):
                yield sleep(INTERVAL)
                if n == 1:
                    rig.fan_out()  # more load between the drops
                rig.sim.disconnect_all()
                yield rig.bound(1)

        yield self.run_scenario(rig, inject)
        self.assertGreaterEqual(rig.sim.stats["dropped_binds"], self.scale.faults)
        rig.check("SMSC disconnects", self.scale,
                  {"binds dropped": rig.sim.stats["dropped_binds"]})

    @inlineCallbacks
    def test_throttling_storms_delay_commands_but_every_one_is_done_once(self) -> Any:
        rig = FaultRig(self, self.scale.devices, sim=SimulatorConfig(
            system_id=SYSTEM_ID, password=PASSWORD, receipt_delay=0.05, response_delay=0.02))

        storm = max(5, self.scale.devices // 3)  # submits throttled per storm

        def inject(rig: FaultRig) -> Generator[Any, Any, None]:
            for n in range(self.scale.faults):
                rig.sim.throttle_burst(storm)
                if n == 1:
                    rig.fan_out()
                yield rig.wait_for(lambda n=n: rig.sim.stats["throttled"] >= (n + 1) * storm,
                                   "the storm to pass", timeout=60)

        yield self.run_scenario(rig, inject)
        self.assertEqual(rig.sim.stats["throttled"], storm * self.scale.faults)
        rig.check("throttling storms", self.scale,
                  {"storms": self.scale.faults, "submits throttled": rig.sim.stats["throttled"]})

    @inlineCallbacks
    def test_duplicated_reordered_and_early_receipts_and_replies_are_applied_once(
            self) -> Any:
        rig = FaultRig(self, self.scale.devices, reply_copies=2, sim=SimulatorConfig(
            system_id=SYSTEM_ID, password=PASSWORD, receipt_delay=0.01, receipt_jitter=0.1,
            response_delay=0.3, receipt_copies=2))

        def inject(rig: FaultRig) -> Generator[Any, Any, None]:
            for _ in range(self.scale.faults - 1):
                yield sleep(0.5)
                rig.fan_out()

        yield self.run_scenario(rig, inject)
        stats = rig.sim.stats
        self.assertEqual(stats["receipts"], 2 * stats["accepted"])
        executions = sum(d.executed + d.duplicates for d in rig.devices.values())
        rig.check("duplicated, reordered and early receipts and replies", self.scale, {
            "receipts and replies duplicated": stats["receipts"] - stats["accepted"]
            + executions * (rig.fleet.reply_copies - 1),
            "receipts before their submit_sm_resp, in random order": stats["receipts"]})


@pytest.mark.faults
class FullSmscFaultTests(SmscFaultTests):
    timeout = 900
    scale = Scale("full", devices=200, faults=6)
