"""Operations over real HTTP: ``/healthz``, ``/readyz`` and ``/metrics`` of a running
:class:`MeplService` against a real PostgreSQL, an SMSC simulator on loopback and a
reference handset."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from blobstore.embedded import start_embedded
from blobstore.errors import StoreUnavailableError
from blobstore.migrate import upgrade
from mepl.cli.main import main
from mepl.fleet import SimulatedFleet, make_device
from mepl.service import MeplService
from mepl.settings import Settings, load_settings
from mepl.signer import ServerSigner
from signing.alerts import make_alert
from signing.keystore import ServerKeyStore
from signing.transport import DEVICE_PORT, SERVER_PORT
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from sms_gateway.udh import Udh
from tests.support.pg import migrated_database

SERVER = "+447700900000"
PHONE = "+447700900123"
IMEI = "490154203237518"


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def settings_for(smsc_port: int, metrics_port: int, **metrics: Any) -> Settings:
    return load_settings({
        "dispatch": {"server_number": SERVER, "poll_interval_s": 0.05},
        "metrics": {"port": metrics_port, "refresh_interval_s": 0.1, "lag_interval_s": 0.05,
                    **metrics},
        "smpp": {"links": {"carrier": {
            "host": "127.0.0.1", "port": smsc_port, "system_id": "op", "password": "pw123456",
            "source_addr": SERVER[1:], "reconnect_min": 0.2, "reconnect_max": 1.0}}},
        "http": {"host": "127.0.0.1", "port": 0, "gateways": {"hosted": {
            "format": "json", "auth": "hmac", "secret": "s" * 32}}},
    })


class OperationsTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="mepl-test-"))
        self.addCleanup(shutil.rmtree, self.state, True)
        self.keys = ServerKeyStore(self.state / "keys")
        self.keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER,))
        self.http = HTTPConnectionPool(reactor, persistent=False)

    @inlineCallbacks
    def get(self, port: int, path: str) -> Any:
        response = yield treq.get(f"http://127.0.0.1:{port}{path}", pool=self.http)
        body = yield treq.content(response)
        return response.code, body.decode()

    @inlineCallbacks
    def simulator(self) -> Any:
        sim = SmscSimulator(SimulatorConfig(system_id="op", password="pw123456",
                                            receipt_delay=0.05), clock=reactor)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(sim.factory())
        self.addCleanup(port.stopListening)
        self.addCleanup(sim.stop)
        return sim, port.getHost().port

    @inlineCallbacks
    def start(self, settings: Settings, engine: Any) -> Any:
        service = MeplService(settings, reactor=reactor, engine=engine,
                              signer=ServerSigner.load(self.keys.directory, {}), worker="ops")
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        yield service.when_bound()
        return service

    @inlineCallbacks
    def wait_until(self, check: Any, what: str) -> Any:
        for _ in range(400):
            if check():
                return
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"timed out waiting for {what}")

    @inlineCallbacks
    def test_ready_and_healthy_then_metrics_show_every_family_after_real_traffic(self) -> Any:
        url = migrated_database("ops")
        engine = create_engine(url)
        self.addCleanup(engine.dispose)
        sim, smsc_port = yield self.simulator()
        fleet = SimulatedFleet(sim, reactor, SERVER)
        device = make_device(self.keys.bundle(IMEI), PHONE, "234150000000001")
        fleet.add(device)
        db = ["--database-url", url, "--state-dir", str(self.state)]
        self.assertEqual(main(["devices", "add", "--imei", IMEI, "--phone", PHONE, *db]), 0)
        self.assertEqual(main(["devices", "enrol", IMEI, "--public-key",
                               device.public_key.hex(), *db]), 0)
        metrics_port = free_port()
        service = yield self.start(settings_for(smsc_port, metrics_port), engine)

        code, body = yield self.get(metrics_port, "/healthz")
        self.assertEqual(code, 200, body)
        self.assertTrue(json.loads(body)["checks"]["reactor"]["ok"])
        code, body = yield self.get(metrics_port, "/readyz")
        ready = json.loads(body)
        self.assertEqual((code, ready["status"], ready["failed"]), (200, "ready", []), body)
        self.assertEqual(ready["checks"]["channels"]["smpp_up"], ["carrier"])
        self.assertTrue(ready["checks"]["schema"]["ok"])

        # Traffic: a LOCK answered by the handset, a forged alert, a refused callback.
        self.assertEqual(main(["commands", "send", "--device", PHONE, "--opcode", "lock",
                               "--arg", "emergency_dialer=false", *db]), 0)

        def done() -> bool:
            with engine.connect() as conn:
                return conn.execute(text(
                    "SELECT count(*) FROM commands WHERE state = 'done'")).scalar() == 1

        yield self.wait_until(done, "the LOCK to be done")
        frame = bytearray(device.handset.alert(make_alert("lost"), reactor.seconds()))
        frame[-1] ^= 0xFF
        yield sim.inject_mo(PHONE, SERVER, bytes(frame), 0x04,
                            Udh(dest_port=SERVER_PORT, src_port=DEVICE_PORT))
        yield self.wait_until(
            lambda: service.worker.counts.get("rejected_bad_signature", 0) == 1,
            "the forged alert to be refused")
        host, http_port = service.http_address or ("", 0)
        response = yield treq.post(f"http://{host}:{http_port}/gateways/hosted/inbound",
                                   data=b"{}", pool=self.http)
        yield treq.content(response)
        yield deferLater(reactor, 0.3, lambda: None)  # a state-gauge refresh after the traffic

        code, body = yield self.get(metrics_port, "/metrics")
        self.assertEqual(code, 200)
        samples = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

        def value(name: str, **labels: str) -> float:
            return samples[(name, tuple(sorted(labels.items())))]

        carrier = {"link": "carrier"}
        self.assertEqual(value("mepl_smpp_link_up", **carrier), 1.0)
        self.assertEqual(value("mepl_smpp_window_size", **carrier), 10.0)
        self.assertGreaterEqual(value("mepl_smpp_window_in_use", **carrier), 0.0)
        self.assertEqual(value("mepl_smpp_submits_total", **carrier), 1.0)
        self.assertEqual(value("mepl_smpp_throttles_total", **carrier), 0.0)
        self.assertEqual(value("mepl_smpp_reconnects_total", **carrier), 0.0)
        self.assertEqual(value("mepl_submit_latency_seconds_count", **carrier), 1.0)
        self.assertEqual(value("mepl_commands", state="done"), 1.0)
        self.assertEqual(value("mepl_commands", state="queued"), 0.0)
        self.assertEqual(value("mepl_inbound_queue_depth", state="pending"), 0.0)
        self.assertEqual(value("mepl_inbound_queue_oldest_age_seconds", state="failed"), 0.0)
        self.assertEqual(value("mepl_verification_failures_total", reason="bad_signature"),
                         1.0)
        self.assertEqual(sum(v for (name, labels), v in samples.items()
                             if name == "mepl_http_callbacks_total"
                             and ("gateway", "hosted") in labels), 1.0)
        self.assertGreater(value("mepl_reactor_lag_seconds_count"), 0.0)
        self.assertGreaterEqual(value("mepl_db_transaction_seconds_count",
                                      desc="claim_and_seal"), 1.0)
        descs = {dict(labels)["desc"] for name, labels in samples
                 if name == "mepl_db_transaction_seconds_count"}
        self.assertIn("apply_replies", descs)  # "apply_replies[1]" without its batch size
        self.assertEqual([d for d in descs if "[" in d], [])
        self.assertEqual(value("mepl_dispatch_total", outcome="sent"), 1.0)

    @inlineCallbacks
    def test_a_stopped_database_makes_the_process_not_ready_but_still_alive(self) -> Any:
        embedded = start_embedded(self.state / "db")
        self.addCleanup(embedded.stop)
        engine = create_engine(embedded.url())
        self.addCleanup(engine.dispose)
        upgrade(engine)
        _, smsc_port = yield self.simulator()
        metrics_port = free_port()
        service = yield self.start(settings_for(smsc_port, metrics_port, ready_timeout_s=1.0),
                                   engine)
        code, body = yield self.get(metrics_port, "/readyz")
        self.assertEqual(code, 200, body)
        engine.dispose()
        embedded.stop()
        code, body = yield self.get(metrics_port, "/readyz")
        ready = json.loads(body)
        self.assertEqual(code, 503, body)
        self.assertEqual(ready["status"], "not ready")
        self.assertEqual(ready["failed"], ["database", "schema"])
        self.assertFalse(ready["checks"]["database"]["ok"])
        self.assertTrue(ready["checks"]["database"]["error"])
        self.assertLessEqual(ready["checks"]["database"]["elapsed_s"], 1.5)
        code, _ = yield self.get(metrics_port, "/healthz")
        self.assertEqual(code, 200)
        yield service.stopService()
        # The loops' rounds failed meanwhile (logged): the store is down, as intended.
        self.flushLoggedErrors(StoreUnavailableError)

    @inlineCallbacks
    def test_an_old_schema_and_no_bind_up_are_named_and_stopping_withdraws_readiness(
            self) -> Any:
        engine = create_engine(migrated_database("ops"))
        self.addCleanup(engine.dispose)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0005'"))
        metrics_port = free_port()
        service = MeplService(settings_for(free_port(), metrics_port), reactor=reactor,
                              engine=engine, worker="ops",
                              signer=ServerSigner.load(self.keys.directory, {}))
        service.startService()
        code, body = yield self.get(metrics_port, "/readyz")
        ready = json.loads(body)
        self.assertEqual(code, 503, body)
        self.assertEqual(ready["failed"], ["schema", "channels"])
        self.assertEqual(ready["checks"]["schema"]["revision"], "0005")
        self.assertEqual(ready["checks"]["channels"]["error"],
                         "no SMPP bind up and no HTTP send channel")
        self.assertTrue(ready["checks"]["dispatcher"]["ok"])
        stopping = service.stopService()
        self.assertEqual(service.loops, {"dispatcher": False, "inbound_worker": False})
        yield stopping
