"""A bind over real TLS on loopback, verified against a CA file."""

from __future__ import annotations

import datetime
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor, ssl, task
from twisted.trial import unittest

from sms_gateway.channel import OutboundMessage
from sms_gateway.smpp.links import endpoint_for
from sms_gateway.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.smpp.support import link_config, make_harness, nodelay_of

R: Any = reactor
# Twisted builds its server context from pyOpenSSL objects, which pyOpenSSL now deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class TlsBindTest(unittest.TestCase):
    timeout = 30

    def tmpdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="mepl-smpp-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def setUp(self) -> None:
        cert, key = self_signed("localhost")
        self.dir = self.tmpdir()
        (self.dir / "ca.pem").write_bytes(cert)
        options = ssl.PrivateCertificate.loadPEM(key + cert).options()
        self.sim = SmscSimulator(SimulatorConfig(), clock=R, rng=random.Random(5))
        self.port = R.listenSSL(0, self.sim.factory(), options, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.sim.stop)

    def harness(self, ca: Path) -> Any:
        number = self.port.getHost().port
        config = link_config(port=number, host="localhost", tls=True, tls_ca_file=ca)
        h = make_harness(R, endpoint_for(config, R), self.sim, port=number, host="localhost",
                         tls=True, tls_ca_file=ca)
        h.bind.startService()
        self.addCleanup(h.bind.stopService)
        return h

    @defer.inlineCallbacks
    def test_bind_over_tls_verified_against_the_ca_file_submits(self) -> Any:
        h = self.harness(self.dir / "ca.pem")
        up = h.bind.when_up()
        up.addTimeout(10, R)
        yield up
        result = yield h.bind.submit(OutboundMessage("+447700900123", b"over tls"))
        self.assertEqual([s.message_id for s in h.submitted], list(result.message_ids))
        # Nagle is off on the TCP connection under TLS too, on both ends.
        assert h.bind.proto is not None
        self.assertEqual(nodelay_of(h.bind.proto), 1)
        self.assertEqual(nodelay_of(self.sim.connections[0].proto), 1)

    @defer.inlineCallbacks
    def test_bind_refuses_a_server_certificate_from_another_ca(self) -> Any:
        other, _ = self_signed("localhost")
        (self.dir / "other.pem").write_bytes(other)
        h = self.harness(self.dir / "other.pem")
        yield task.deferLater(R, 1.0, lambda: None)
        self.assertFalse(h.bind.is_up)
        self.assertEqual(h.submitted, [])
        self.assertFalse(any(r.command == "bind_transceiver_resp" for r in h.records))

    @defer.inlineCallbacks
    def test_deliver_sm_flood_over_tls_is_answered_in_full_within_the_cap(self) -> Any:
        self.sim.config = SimulatorConfig(window=5000)
        number = self.port.getHost().port
        ca = self.dir / "ca.pem"
        h = make_harness(R, endpoint_for(link_config(port=number, host="localhost", tls=True,
                                                     tls_ca_file=ca), R),
                         self.sim, port=number, host="localhost", tls=True, tls_ca_file=ca,
                         max_buffered=40)

        def store_next_turn(message: Any) -> defer.Deferred[None]:
            d: defer.Deferred[None] = defer.Deferred()
            R.callLater(0, d.callback, None)  # stored a reactor turn later
            return d

        h.inbound_result = store_next_turn
        h.bind.startService()
        self.addCleanup(h.bind.stopService)
        up = h.bind.when_up()
        up.addTimeout(10, R)
        yield up
        statuses = yield defer.gatherResults([
            self.sim.inject_mo("+447700900123", "+4412345", i.to_bytes(2, "big"))
            for i in range(2000)])
        self.assertEqual(statuses, [0] * 2000)
        self.assertEqual(len(h.inbound), 2000)
        self.assertLessEqual(h.bind.backlog.peak, 40)
        self.assertGreater(h.bind.stats["read_pauses"], 0)
        self.assertEqual(h.bind.stats["binds"], 1)
