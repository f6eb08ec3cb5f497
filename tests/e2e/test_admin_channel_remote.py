"""The admin channel with the admin API on another host: TCP, mutual TLS, the proxy's own
client certificate (docs/operator-guide.md section 6b, "The admin API on another host").

Every part is real and on 127.0.0.1: an admin PKI made with ``console_proxy.pki``
(the CA, the API's server certificate from ``issue_server``, the proxy's client
certificate from ``issue_proxy``, admins), a :class:`~mepl.service.MeplService` on
the embedded PostgreSQL whose admin API listens on ``admin.listen`` with
``tls_cert``/``tls_key``/``client_ca``, the console proxy
(:class:`~console_proxy.service.ProxyService`) with ``upstream.url`` pointing at it,
and the client library (blocking: it runs in a thread, the reactor keeps serving).
Raw TLS connections straight to the API show what it refuses at the handshake.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from console_proxy import pki
from console_proxy.client import Client, Forbidden, Identity, device_target
from console_proxy.config import config_from_dict
from console_proxy.service import ProxyService
from mepl.admin.api import Outgoing
from mepl.admin.errors import unauthenticated
from mepl.service import MeplService
from mepl.settings import load_settings
from mepl.signer import ServerSigner
from signing.keystore import ServerKeyStore
from tests.support.pg import migrated_database

SERVER_NUMBER = "+447700900000"
DEVICE = "490154203237518"
PASSPHRASE = b"Remote-Passphrase-42"
ADMINS = {"olga": "operator", "vic": "viewer", "ada": "admin"}
PROXY_NAME = "proxy-remote"
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _raw_request(port: int, ca: Path, cert: tuple[Path, Path] | None,
                 max_tls: ssl.TLSVersion | None = None) -> bytes:
    """A GET straight to the API over TLS: the answer's bytes, or what TLS raised."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca))
    if max_tls is not None:
        context.maximum_version = max_tls
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return answer


class RemoteAdminApiTests(TestCase):
    """The proxy reaches a remote admin API over mutual TLS; nothing else gets in."""

    timeout = 90

    @inlineCallbacks
    def setUp(self) -> Any:
        self.tmp = Path(tempfile.mkdtemp(prefix="remote", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.engine = create_engine(migrated_database("remote"))
        self.addCleanup(self.engine.dispose)
        now = datetime.now(UTC)
        self.pki = self.tmp / "pki"
        pki.init_ca(self.pki, deployment="acme", passphrase=None, now=now)
        self.proxy_front = pki.issue_server(self.pki, ["localhost", "127.0.0.1"],
                                            ca_passphrase=None, now=now)
        self.api_server = pki.issue_server(self.pki, ["127.0.0.1"], ca_passphrase=None,
                                           now=now)
        self.proxy_client = pki.issue_proxy(self.pki, PROXY_NAME, ca_passphrase=None, now=now)
        for name, role in ADMINS.items():
            pki.issue_admin(self.pki, name, role, ca_passphrase=None,
                            bundle_passphrase=PASSPHRASE, now=now)
        foreign = self.tmp / "foreign"
        pki.init_ca(foreign, deployment="acme", passphrase=None, now=now)
        self.foreign_proxy = pki.issue_proxy(foreign, PROXY_NAME, ca_passphrase=None, now=now)
        self._add_device()

        keys = ServerKeyStore(self.tmp / "keys")
        keys.init(now=now, passphrase=None, trusted_numbers=(SERVER_NUMBER,))
        self.api_port = _free_port()
        settings = load_settings({
            "dispatch": {"server_number": SERVER_NUMBER},
            "mepl": {"state_dir": str(self.tmp / "state")},
            "admin": {"assertion_keys": [str(self.pki / pki.ASSERTION_PUB)],
                      "listen": f"127.0.0.1:{self.api_port}",
                      "tls_cert": str(self.api_server.files[1]),
                      "tls_key": str(self.api_server.files[0]),
                      "client_ca": str(self.pki / pki.CA_CERT)}})
        self.service = MeplService(settings, reactor=reactor, engine=self.engine,
                                   signer=ServerSigner.load(keys.directory, {}))
        self.service.startService()
        self.addCleanup(self.service.stopService)

        config = config_from_dict({
            "proxy": {"name": PROXY_NAME, "listen": "127.0.0.1:0",
                      "server_cert": str(self.proxy_front.files[1]),
                      "server_key": str(self.proxy_front.files[0]),
                      "client_ca": pki.CA_CERT, "crl": pki.CRL_FILE,
                      "assertion_key": pki.ASSERTION_KEY},
            "upstream": {"url": f"https://127.0.0.1:{self.api_port}", "ca": pki.CA_CERT,
                         "cert": str(self.proxy_client.files[1]),
                         "key": str(self.proxy_client.files[0])}}, self.pki)
        self.proxy = ProxyService(config, reactor, reactor)
        port = yield Deferred.fromCoroutine(self.proxy.start())
        self.addCleanup(lambda: Deferred.fromCoroutine(self.proxy.stop()))
        self.proxy_url = f"https://127.0.0.1:{port.getHost().port}"
        self.assertIsNotNone(self.proxy.proxy.policy)  # fetched over the remote TLS link

    def _add_device(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("INSERT INTO devices (imei, msisdn, state, public_key, key_id) "
                              "VALUES (:i, '+447700900101', 'provisioned', :k, 1)"),
                         {"i": DEVICE, "k": os.urandom(32)})

    def audit(self, where: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(
                f"SELECT actor, role, action, target, details FROM audit WHERE {where} "
                "ORDER BY id"), params))

    def as_admin(self, name: str, call: Callable[[Client], T]) -> Deferred[T]:
        """``call`` with the client library connected as ``name`` (in a thread)."""
        identity = Identity.from_pkcs12(self.pki / pki.ISSUED_DIR / f"{name}.p12", PASSPHRASE)

        def run() -> T:
            with Client.connect(self.proxy_url, identity, self.pki / pki.CA_CERT,
                                timeout=15) as client:
                return call(client)
        return deferToThread(run)

    def direct(self, cert: tuple[Path, Path] | None,
               max_tls: ssl.TLSVersion | None = None) -> Deferred[bytes]:
        """A raw request straight to the API (in a thread)."""
        return deferToThread(_raw_request, self.api_port, self.pki / pki.CA_CERT, cert,
                             max_tls)

    @inlineCallbacks
    def test_whoami_and_an_operators_lock_go_through_the_proxy_to_the_remote_api(
            self) -> Any:
        who = yield self.as_admin("olga", lambda c: c.whoami())
        self.assertEqual((who.name, who.role), ("olga", "operator"))
        sent = yield self.as_admin("olga", lambda c: c.send_command(
            "lock", device_target(DEVICE)))
        self.assertIsNotNone(sent.queued)
        command_id = sent.queued.command_id
        command = yield self.as_admin("olga", lambda c: c.get_command(command_id))
        self.assertEqual((command.opcode, command.device), ("lock", DEVICE))
        rows = self.audit("actor = 'olga' AND action = 'command.send' "
                          "AND request_id IS NOT NULL")
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0].details["proxy"], PROXY_NAME)
        self.assertEqual(rows[0].details["outcome"], "ok")

    @inlineCallbacks
    def test_a_direct_connection_without_a_client_certificate_is_refused_at_the_handshake(
            self) -> Any:
        for version in (ssl.TLSVersion.TLSv1_2, None):  # 1.2: the handshake; 1.3: its end
            with self.assertRaises((ssl.SSLError, ConnectionError)) as refused:
                yield self.direct(None, version)
            self.assertNotIn("WRONG_VERSION", str(refused.exception))

    @inlineCallbacks
    def test_a_client_certificate_of_another_ca_is_refused_at_the_handshake(self) -> Any:
        foreign = (self.foreign_proxy.files[1], self.foreign_proxy.files[0])
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            yield self.direct(foreign, ssl.TLSVersion.TLSv1_2)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            yield self.direct(foreign)

    @inlineCallbacks
    def test_an_admins_certificate_of_the_same_ca_is_refused_at_the_handshake(
            self) -> Any:
        issued = self.pki / pki.ISSUED_DIR
        key = serialization.load_pem_private_key((issued / "ada.key").read_bytes(), PASSPHRASE)
        plain = issued / "ada.plain.key"
        plain.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            yield self.direct((issued / "ada.pem", plain), ssl.TLSVersion.TLSv1_2)

    @inlineCallbacks
    def test_the_proxys_certificate_without_an_assertion_gets_the_one_401_and_is_audited(
            self) -> Any:
        answer = yield self.direct((self.proxy_client.files[1], self.proxy_client.files[0]))
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 401"), head)
        self.assertEqual(body, Outgoing(401, unauthenticated("any").body()).encoded())
        rows = self.audit("action = 'request.refused' AND (details->>'status')::int = 401")
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0].details["outcome"].startswith("refused:"))
        self.assertTrue(rows[0].details["source"].startswith("127.0.0.1:"))

    @inlineCallbacks
    def test_a_viewers_refused_lock_is_in_the_audit_under_the_viewers_name(self) -> Any:
        with self.assertRaises(Forbidden):
            yield self.as_admin("vic", lambda c: c.send_command(
                "lock", device_target(DEVICE)))
        page = yield self.as_admin("ada", lambda c: c.list_audit(actor="vic"))
        refused = [e for e in page.items if e.action == "proxy.refused"]
        self.assertEqual(len(refused), 1, page.items)
        entry = refused[0]
        self.assertEqual((entry.actor, entry.role), ("vic", "viewer"))
        self.assertEqual(entry.details["via"], PROXY_NAME)
        self.assertEqual(entry.details["reason"], "requires operator")
        identity = Identity.from_pkcs12(self.pki / pki.ISSUED_DIR / "vic.p12", PASSPHRASE)
        self.assertEqual(entry.details["fingerprint"], identity.fingerprint)
