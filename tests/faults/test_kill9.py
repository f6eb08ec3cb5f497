"""Scenario 1: kill -9 of a ``mepl run`` process mid fan-out, repeatedly, two processes running.

Each round queues a fan-out to the whole fleet, waits until it is under way
(some commands answered, not all), SIGKILLs the older of the two processes
and starts a fresh one.  The dead process's claims come back after
``stale_claim_s`` and its inbound leases after ``callback_grace_s``; the
committed frames are sent again, so a handset that already executed one
answers from its stored reply.  Expected final state: every command ``done``.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.faults.rig import FaultRig, Scale


class KillNineTests(TestCase):
    timeout = 300
    scale = Scale("quick", devices=20, faults=3)

    @inlineCallbacks
    def test_kill_9_mid_fan_out_loses_nothing_and_executes_nothing_twice(self) -> Any:
        rig = FaultRig(self, self.scale.devices)
        yield rig.start()
        rig.spawn()
        rig.spawn()
        yield rig.bound(2)
        mid = 0
        try:
            for _ in range(self.scale.faults):
                rig.fan_out()
                # Killed as soon as the fan-out is in flight (claimed, sent, not yet
                # answered): waiting for the first reply let a small fan-out finish
                # before the kill on a fast machine.
                yield rig.wait_for(lambda: rig.count(
                    "SELECT count(*) FROM commands WHERE state IN "
                    "('sending', 'sent', 'delivered')") > 0,
                    "the fan-out under way", step=0.01)
                unfinished = rig.count("SELECT count(*) FROM commands WHERE state NOT IN "
                                       "('done', 'refused', 'failed', 'expired')")
                mid += unfinished > 0
                yield rig.kill9(rig.live()[0])
                rig.spawn()
                yield rig.bound(2)
            yield rig.settle()
        finally:
            yield rig.stop()
        self.assertEqual(mid, self.scale.faults, "every kill must land mid fan-out")
        rig.check("kill -9", self.scale, {"kill -9 mid fan-out": self.scale.faults})


@pytest.mark.faults
class FullKillNineTests(KillNineTests):
    timeout = 900
    scale = Scale("full", devices=200, faults=5)
