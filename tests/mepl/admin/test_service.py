"""The admin API inside `mepl run`'s service: on its own UNIX socket, woken by NOTIFY."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import create_engine
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from mepl.admin.assertion import b64url, make_assertion
from mepl.service import MeplService
from mepl.settings import load_settings
from mepl.signer import ServerSigner
from signing.keystore import ServerKeyStore
from tests.mepl.admin.support import _Endpoints
from tests.support.pg import migrated_database

SERVER_NUMBER = "+447700900000"


class ServiceTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_the_service_serves_the_admin_api_on_its_socket_and_wakes_streams(self) -> Any:
        engine = create_engine(migrated_database("svc"))
        self.addCleanup(engine.dispose)
        tmp = Path(tempfile.mkdtemp(prefix="svc", dir="/tmp"))
        self.addCleanup(shutil.rmtree, tmp, True)
        keys = ServerKeyStore(tmp / "keys")
        keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=(SERVER_NUMBER,))
        proxy = Ed25519PrivateKey.generate()
        (tmp / "assertion.pub").write_bytes(proxy.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        settings = load_settings({"dispatch": {"server_number": SERVER_NUMBER},
                                  "mepl": {"state_dir": str(tmp)},
                                  "admin": {"assertion_keys": [str(tmp / "assertion.pub")]}})
        service = MeplService(settings, reactor=reactor, engine=engine,
                              signer=ServerSigner.load(keys.directory, {}))
        service.startService()
        try:
            socket = tmp / "admin" / "admin.sock"
            self.assertEqual(socket.stat().st_mode & 0o777, 0o660)
            self.assertIn("mepl_events", service.listener._callbacks)
            claims = {"v": 1, "iss": "p", "sub": "alice", "fp": "ab", "role": "viewer",
                      "rid": uuid.uuid4().hex, "iat": reactor.seconds(),
                      "nonce": b64url(os.urandom(16)), "m": "GET", "p": "/v1/keys",
                      "bh": hashlib.sha256(b"").hexdigest(), "src": "127.0.0.1:1"}
            agent = Agent.usingEndpointFactory(reactor, _Endpoints(socket))
            response = yield agent.request(b"GET", b"http://admin/v1/keys", Headers(
                {"mepl-assertion": [make_assertion(proxy, claims)]}))
            body = yield readBody(response)
            self.assertEqual(response.code, 200, body)
            self.assertIn(b'"active_key_id":1', body)
        finally:
            yield service.stopService()

    def test_without_assertion_keys_the_api_does_not_start(self) -> None:
        settings = load_settings({"dispatch": {"server_number": SERVER_NUMBER}})
        self.assertFalse(settings.admin.enabled)
