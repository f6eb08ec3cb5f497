"""Forwarding through the proxy with real TLS: the assertion, headers, request ids."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet import defer
from twisted.trial import unittest

from tests.console_proxy.harness import ProxyHarness

pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


class ForwardingTest(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_viewer_get_is_forwarded_with_a_valid_assertion_naming_the_admin(self) -> Any:
        h = yield defer.Deferred.fromCoroutine(ProxyHarness(self).start())
        client = h.client("alice", "viewer")
        code, headers, body = yield defer.Deferred.fromCoroutine(
            client.fetch("GET", "/v1/devices/%2B447700900123?region=GB"))
        self.assertEqual(code, 200, body)
        self.assertEqual(h.api.rejected, [])
        [got] = h.api.forwarded
        claims = got.claims
        self.assertEqual((claims["sub"], claims["role"], claims["iss"]),
                         ("alice", "viewer", "proxy-test"))
        self.assertEqual(claims["p"], "/v1/devices/%2B447700900123?region=GB")
        self.assertEqual(len(claims["fp"]), 64)
        self.assertTrue(claims["src"].startswith("127.0.0.1:"))
        self.assertEqual(headers.getRawHeaders(b"x-request-id"), [claims["rid"].encode()])
        self.assertEqual(headers.getRawHeaders(b"x-upstream"), [b"yes"])
        self.assertIsNone(headers.getRawHeaders(b"keep-alive"))

    @defer.inlineCallbacks
    def test_client_supplied_assertion_request_id_and_hop_headers_are_not_passed_on(self) -> Any:
        h = yield defer.Deferred.fromCoroutine(ProxyHarness(self).start())
        client = h.client("bob", "viewer")
        code, _, _ = yield defer.Deferred.fromCoroutine(client.fetch(
            "GET", "/v1/whoami", headers={"MEPL-Assertion": "forged.forged",
                                          "X-Request-Id": "mine", "X-Hop": "secret",
                                          "Connection": "keep-alive, X-Hop",
                                          "Proxy-Authorization": "Basic eA=="}))
        self.assertEqual(code, 200)
        [got] = h.api.forwarded
        self.assertEqual(len(got.headers["mepl-assertion"]), 1)
        self.assertEqual(got.headers["x-request-id"], [got.claims["rid"]])
        self.assertNotIn("x-hop", got.headers)
        self.assertNotIn("proxy-authorization", got.headers)

    @defer.inlineCallbacks
    def test_operator_lock_is_forwarded_with_the_body_hash(self) -> Any:
        h = yield defer.Deferred.fromCoroutine(ProxyHarness(self).start())
        body = json.dumps({"command": "lock", "target": {"device": "353456789012345"}}).encode()
        code, _, answer = yield defer.Deferred.fromCoroutine(
            h.client("olga", "operator").fetch("POST", "/v1/commands", body,
                                               {"Content-Type": "application/json"}))
        self.assertEqual(code, 201, answer)
        [got] = h.api.forwarded
        self.assertEqual(got.body, body)
        self.assertEqual(got.claims["role"], "operator")

    @defer.inlineCallbacks
    def test_admin_wipe_is_forwarded_with_a_valid_assertion(self) -> Any:
        h = yield defer.Deferred.fromCoroutine(ProxyHarness(self).start())
        body = json.dumps({"command": "wipe", "target": {"device": "353456789012345"}}).encode()
        code, _, answer = yield defer.Deferred.fromCoroutine(
            h.client("ada", "admin").fetch("POST", "/v1/commands", body))
        self.assertEqual(code, 201, answer)
        self.assertEqual(h.api.rejected, [])
        [got] = h.api.forwarded
        self.assertEqual((got.claims["sub"], got.claims["role"], got.method),
                         ("ada", "admin", "POST"))
        self.assertEqual(json.loads(got.body)["command"], "wipe")

    @defer.inlineCallbacks
    def test_the_policy_was_fetched_as_role_proxy(self) -> Any:
        h = yield defer.Deferred.fromCoroutine(ProxyHarness(self).start())
        [fetch] = [g for g in h.api.seen if g.target == "/v1/openapi.json"]
        self.assertEqual((fetch.claims["role"], fetch.claims["sub"], fetch.claims["fp"]),
                         ("proxy", "proxy-test", ""))
