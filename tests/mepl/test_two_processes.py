"""Two MEPL services on one PostgreSQL (as two processes would be): every command of a
fan-out is claimed, signed and sent exactly once, and every reply is verified once."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from blobstore.commands import NewCommand, insert_group_commands_txn
from mepl.demo import GROUP, SERVER_NUMBER, demo_imei, enrol_txn
from mepl.fleet import SimulatedFleet, make_device
from mepl.service import MeplService
from mepl.settings import load_settings
from mepl.signer import ServerSigner
from signing.keystore import ServerKeyStore
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.support.pg import migrated_database

DEVICES = 120


class TwoProcessTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_a_fan_out_is_shared_between_two_services_and_each_command_is_sent_once(
            self) -> Any:
        engine = create_engine(migrated_database("two"))
        self.addCleanup(engine.dispose)
        tmp = tempfile.mkdtemp(prefix="mepl-test-")
        self.addCleanup(shutil.rmtree, tmp, True)
        keys = ServerKeyStore(Path(tmp) / "keys")
        keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER_NUMBER,))
        signer = ServerSigner.load(keys.directory, {})
        sim = SmscSimulator(SimulatorConfig(system_id="two", password="pw",
                                            receipt_delay=0.05), clock=reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(sim.factory())
        self.addCleanup(port.stopListening)
        self.addCleanup(sim.stop)
        fleet = SimulatedFleet(sim, reactor, SERVER_NUMBER)
        devices = [make_device(keys.bundle(demo_imei(i)), f"+4477009{i + 1:05d}",
                               f"23415{i:010d}") for i in range(DEVICES)]
        for device in devices:
            fleet.add(device)
        with engine.begin() as conn:
            enrol_txn(conn, devices)
            insert_group_commands_txn(conn, GROUP, NewCommand(
                opcode="lock", requested_by="test",
                not_after=datetime.now(UTC) + timedelta(hours=1)))
        settings = load_settings({
            "dispatch": {"server_number": SERVER_NUMBER, "poll_interval_s": 0.02,
                         "claim_batch": 10},
            "smpp": {"links": {"sim": {"host": "127.0.0.1", "port": port.getHost().port,
                                       "system_id": "two", "password": "pw", "window": 5,
                                       "source_addr": SERVER_NUMBER[1:]}}}})
        services = [MeplService(settings, reactor=reactor, engine=engine, signer=signer,
                                worker=f"mepl-{n}") for n in (1, 2)]
        for service in services:
            service.startService()
        try:
            done = 0
            for _ in range(600):
                with engine.connect() as conn:
                    done = conn.execute(text(
                        "SELECT count(*) FROM commands WHERE state = 'done'")).scalar_one()
                if done == DEVICES:
                    break
                yield deferLater(reactor, 0.05, lambda: None)
        finally:
            yield gatherResults([s.stopService() for s in services])
        self.assertEqual(done, DEVICES)
        sent = [s.dispatcher.stats.sent for s in services]
        self.assertEqual(sum(sent), DEVICES)
        self.assertTrue(all(n > 0 for n in sent), f"one service did all the work: {sent}")
        self.assertEqual(sum(d.executed for d in devices), DEVICES)
        self.assertEqual(sum(d.duplicates for d in devices), 0)
        with engine.connect() as conn:
            workers = conn.execute(text(
                "SELECT count(DISTINCT claimed_by) FROM commands")).scalar_one()
            counters = conn.execute(text(
                "SELECT count(*) FROM commands WHERE counter = 1")).scalar_one()
        self.assertEqual(workers, 2)
        self.assertEqual(counters, DEVICES)  # one counter per device, none skipped or reused
