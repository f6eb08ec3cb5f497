"""The TLS front refuses at the handshake: no certificate, expired, revoked, foreign CA.

Each time the fake API never sees a request, and a ``tls_refused`` record reaches
``POST /v1/proxy/audit`` with what the proxy saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from tests.console_proxy.harness import Client, ProxyHarness
from tests.console_proxy.pkihelp import Pki

REFUSED = (ResponseNeverReceived, ResponseFailed, SSL.Error)
pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


class TlsRefusalTest(unittest.TestCase):
    timeout = 30

    async def refused(self, h: ProxyHarness, client: Client) -> dict[str, Any]:
        audit = h.api.next_audit()
        with self.assertRaises(REFUSED):  # the handshake fails: no response at all
            await client.fetch("GET", "/v1/whoami")
        record = await audit
        self.assertEqual(h.api.forwarded, [])
        self.assertEqual(record["event"], "tls_refused")
        self.assertTrue(record["source"].startswith("127.0.0.1:"))
        self.assertIsNone(record["method"])
        return record

    def run_async(self, coro: Any) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(coro)

    def test_no_client_certificate_is_refused_at_the_handshake(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            record = await self.refused(h, h.client(None))
            self.assertEqual(record["reason"], "no_certificate")
            self.assertIsNone(record["subject"])
        return self.run_async(go())

    def test_expired_certificate_is_refused_at_the_handshake(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            record = await self.refused(h, h.client("old", "admin", expired=True))
            self.assertEqual(record["reason"], "expired")
            self.assertEqual(record["subject"], "CN=old,OU=admin,O=acme")
            self.assertEqual(len(record["fingerprint"]), 64)
        return self.run_async(go())

    def test_foreign_ca_certificate_is_refused_at_the_handshake(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            other = Pki.create(h.root, name="evil")
            record = await self.refused(h, h.client("mallory", "admin", pki=other))
            self.assertEqual(record["reason"], "unknown_ca")
            self.assertEqual(record["subject"], "CN=mallory,OU=admin,O=evil")
        return self.run_async(go())

    def test_revoked_certificate_is_refused_at_the_handshake(self) -> Any:
        async def go() -> None:
            h = ProxyHarness(self)
            cert, key = h.pki.admin("rita", "operator")
            h.pki.revoke("rita")
            h.service.reload_tls()
            await h.start()
            client = Client(self, h.base, h.pki.ca, cert, key)
            record = await self.refused(h, client)
            self.assertEqual(record["reason"], "revoked")
            self.assertEqual(record["subject"], "CN=rita,OU=operator,O=acme")
        return self.run_async(go())

    def test_revoked_after_a_crl_reload_without_restart_is_refused(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            cert, key = h.pki.admin("sam", "viewer")
            code, _, _ = await Client(self, h.base, h.pki.ca, cert, key).fetch(
                "GET", "/v1/whoami")
            self.assertEqual(code, 200)
            h.api.forwarded.clear()
            h.pki.revoke("sam")                      # a new crl.pem on disk
            h.clock.advance(h.config.reload_check_s)  # the next file check reloads it
            record = await self.refused(h, Client(self, h.base, h.pki.ca, cert, key))
            self.assertEqual(record["reason"], "revoked")
        return self.run_async(go())

    def test_an_open_connection_is_closed_when_its_certificate_is_revoked(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            client = h.client("tess", "viewer", persistent=True)
            code, _, _ = await client.fetch("GET", "/v1/whoami")
            self.assertEqual(code, 200)
            self.assertEqual(len(h.service.site.live), 1)
            h.pki.revoke("tess")
            h.clock.advance(h.config.reload_check_s)
            for _ in range(400):  # reactor turns until the close went through
                if not h.service.site.live:
                    break
                await task.deferLater(reactor, 0.005, lambda: None)
            self.assertEqual(len(h.service.site.live), 0)
        return self.run_async(go())

    def test_a_role_outside_viewer_operator_admin_is_refused_at_the_handshake(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            from datetime import UTC, datetime

            from console_proxy import pki
            # a certificate of the right CA whose OU is not a role (here: the server cert)
            server = pki.issue_server(h.pki.dir, ["root-host"], ca_passphrase=None,
                                      now=datetime.now(UTC), client_auth=True)
            record = await self.refused(h, Client(self, h.base, h.pki.ca, server.files[1],
                                                  server.files[0]))
            self.assertEqual(record["reason"], "bad_role")
        return self.run_async(go())

    def test_a_broken_crl_file_keeps_the_previous_one(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            Path(h.pki.crl).write_text("not a crl")
            h.clock.advance(h.config.reload_check_s)
            code, _, body = await h.client("uma", "viewer").fetch("GET", "/v1/whoami")
            self.assertEqual(code, 200, body)
            self.assertEqual(json.loads(body)["claims"]["sub"], "uma")
        return self.run_async(go())

    def test_sighup_reload_applies_a_new_crl_and_refetches_the_policy(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            cert, key = h.pki.admin("hal", "viewer")
            fetches = len(h.api.seen)
            h.pki.revoke("hal")
            self.assertTrue(await h.service.reload())      # what SIGHUP calls
            self.assertEqual(len(h.api.seen), fetches + 1)
            record = await self.refused(h, Client(self, h.base, h.pki.ca, cert, key))
            self.assertEqual(record["reason"], "revoked")
        return self.run_async(go())
