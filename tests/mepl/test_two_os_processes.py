"""Two ``mepl run`` OS processes on one PostgreSQL share a fan-out and the inbound traffic:
every command is sealed and sent once, every reply and alert applied once."""

from __future__ import annotations

import os
import shutil
import signal
import sys
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
from blobstore.devices import add_device_txn, set_device_key_txn, set_device_state_txn
from blobstore.groups import add_members_txn, create_group_txn
from blobstore.identity import luhn_check_digit
from mepl.fleet import SimulatedFleet, make_device
from signing.keystore import ServerKeyStore
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.mepl.test_run_process import Collect
from tests.support.pg import migrated_database

SERVER = "+447700900000"
DEVICES = 60
ALERTS = 10


def _imei(n: int) -> str:
    body = f"35{n:012d}"
    return body + luhn_check_digit(body)


class TwoOsProcessTests(TestCase):
    timeout = 150

    @inlineCallbacks
    def test_two_mepl_run_processes_share_a_fan_out_and_inbound_traffic_exactly_once(
            self) -> Any:
        url = migrated_database("twoos")
        engine = create_engine(url)
        self.addCleanup(engine.dispose)
        state = Path(tempfile.mkdtemp(prefix="mepl-test-"))
        self.addCleanup(shutil.rmtree, state, True)
        keys = ServerKeyStore(state / "keys")
        keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER,))
        sim = SmscSimulator(SimulatorConfig(system_id="op", password="pw123456",
                                            receipt_delay=0.05), clock=reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(sim.factory())
        self.addCleanup(port.stopListening)
        self.addCleanup(sim.stop)
        fleet = SimulatedFleet(sim, reactor, SERVER)
        devices = [make_device(keys.bundle(_imei(i)), f"+4477009{i + 1:05d}",
                               f"23415{i:010d}") for i in range(DEVICES)]
        with engine.begin() as conn:
            create_group_txn(conn, "fleet")
            ids = []
            for device in devices:
                fleet.add(device)
                record = add_device_txn(conn, device.imei, imsi=device.imsi,
                                        msisdn=device.msisdn)
                set_device_key_txn(conn, record.id, device.handset.device_key.key_id,
                                   device.public_key)
                set_device_state_txn(conn, record.id, "provisioned")
                ids.append(record.id)
            add_members_txn(conn, "fleet", ids)
        procs = []
        for n in (1, 2):
            config = state / f"mepl-{n}.toml"
            config.write_text(f"""
[mepl]
log_level = "info"
[dispatch]
server_number = "{SERVER}"
poll_interval_s = 0.05
claim_batch = 5
[smpp.links.carrier]
host = "127.0.0.1"
port = {port.getHost().port}
system_id = "op"
password = "pw123456"
window = 5
""")
            proto = Collect()
            reactor.spawnProcess(proto, sys.executable, [
                sys.executable, "-m", "mepl.cli.main", "run", "--config", str(config),
                "--state-dir", str(state)], env={**os.environ, "MEPL_DATABASE_URL": url})
            procs.append(proto)
        try:
            for _ in range(600):  # two interpreters starting on a loaded machine
                if sim.bound_count() == 2:
                    break
                yield deferLater(reactor, 0.1, lambda: None)
            self.assertEqual(sim.bound_count(), 2, "both processes must bind")
            # The fan-out is queued once both are bound, so that neither drains it alone.
            with engine.begin() as conn:
                insert_group_commands_txn(conn, "fleet", NewCommand(
                    opcode="status_query", requested_by="test",
                    arguments={"features": ["battery", "signal"]},
                    not_after=datetime.now(UTC) + timedelta(hours=1)))
            # Inbound traffic while the fan-out runs: signed alerts from ten devices.
            yield gatherResults([fleet.raise_alert(d.msisdn, "invalid_sim")
                                 for d in devices[:ALERTS]])
            done = 0
            for _ in range(900):
                with engine.connect() as conn:
                    done = conn.execute(text(
                        "SELECT count(*) FROM commands WHERE state = 'done'")).scalar_one()
                    alerts = conn.execute(text(
                        "SELECT count(*) FROM security_events WHERE kind = 'alert:invalid_sim'"
                    )).scalar_one()
                if done == DEVICES and alerts == ALERTS:
                    break
                yield deferLater(reactor, 0.1, lambda: None)
        finally:
            for proto in procs:
                if proto.transport is not None and proto.transport.pid is not None:
                    proto.transport.signalProcess(signal.SIGTERM)
            codes = yield gatherResults([p.ended for p in procs])
        output = "\n".join(p.output.decode(errors="replace")[-2000:] for p in procs)
        self.assertEqual(codes, [0, 0], output)
        self.assertEqual(done, DEVICES, output)
        with engine.connect() as conn:
            def one(sql: str) -> Any:
                return conn.execute(text(sql)).scalar_one()

            claimers = one("SELECT count(DISTINCT actor) FROM command_events "
                           "WHERE event = 'claim'")
            submitted = one("SELECT count(*) FROM command_events WHERE event = 'submitted'")
            mt_rows = one("SELECT count(*) FROM messages WHERE kind = 'mt'")
            replies = one("SELECT count(*) FROM command_events WHERE event = 'reply_ok'")
            alerts = one("SELECT count(*) FROM security_events WHERE kind = 'alert:invalid_sim'")
            hwm = one("SELECT sum(counter_hwm) FROM devices")
            queue = one("SELECT count(*) FROM inbound_queue")
        self.assertEqual(claimers, 2, "both processes must have claimed part of the fan-out")
        self.assertEqual((submitted, mt_rows, replies), (DEVICES, DEVICES, DEVICES))
        self.assertEqual(sum(d.executed for d in devices), DEVICES)
        self.assertEqual(sum(d.duplicates for d in devices), 0)
        self.assertEqual((alerts, hwm, queue), (ALERTS, ALERTS, 0))
