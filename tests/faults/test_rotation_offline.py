"""Scenario 7: handsets offline during a server key rotation.

The key is rotated (``rotate_server_key``: every device pinned to key 1 and
sent ``rotate_key``) while a few handsets are off; a fan-out follows at once.
Until an offline handset acknowledges the rotation, everything for it must
stay sealed under key 1, the key it accepted; the commands it misses are
resent and, once it is back, executed once.  After the rotation is
acknowledged, its next command is sealed under key 2.  Expected final
state: every command ``done``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.app.keys import rotate_server_key
from tests.faults.rig import FaultRig, Scale


class RotationOfflineTests(TestCase):
    timeout = 300
    scale = Scale("quick", devices=20, faults=2)

    @inlineCallbacks
    def test_a_handset_offline_during_a_rotation_is_commanded_with_its_accepted_key(
            self) -> Any:
        rig = FaultRig(self, self.scale.devices)
        yield rig.start()
        offline = dict(list(rig.devices.items())[:self.scale.faults])
        for device in offline.values():
            device.offline = True
        rig.spawn()
        try:
            yield rig.bound(1)
            rotation = rotate_server_key(rig.engine, rig.keys, passphrase=None,
                                         now=datetime.now(UTC), actor="faults")
            rig.queued += rotation.queued or 0
            rig.fan_out()
            # Everyone else rotates and answers; the offline ones miss a resend too.
            yield rig.wait_for(lambda: rig.count(
                "SELECT count(*) FROM commands WHERE state = 'done'") == rig.queued
                - 2 * len(offline) and all(d.missed >= 3 for d in offline.values()),
                "the online handsets done and a resend missed", timeout=60)
            ids = list(offline)
            sealed = rig.scalar("SELECT array_agg(DISTINCT key_id) FROM commands "
                                "WHERE device_id = ANY(:ids)", ids=ids)
            self.assertEqual(sealed, [1], "an offline handset is commanded with key 1 only")
            for device in offline.values():
                device.offline = False
            yield rig.settle()
            rig.fan_out()  # after the rotation: key 2 for everyone
            yield rig.settle()
        finally:
            yield rig.stop()
        keys = rig.scalar("SELECT array_agg(DISTINCT key_id) FROM commands WHERE "
                          "opcode = 'status_query' AND id > (SELECT max(id) - :n FROM "
                          "commands)", n=self.scale.devices)
        self.assertEqual(keys, [2])
        for device in offline.values():
            self.assertEqual([k for k, _ in device.slots], [1, 1, 2])
            self.assertEqual(device.rejected, 0)
        rig.check("handset offline during a key rotation", self.scale, {
            "handsets offline": len(offline),
            "messages missed": sum(d.missed for d in offline.values())})


@pytest.mark.faults
class FullRotationOfflineTests(RotationOfflineTests):
    timeout = 900
    scale = Scale("full", devices=200, faults=10)
