"""Roles, rate limits and the audit of refusals, through the real proxy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet import defer
from twisted.trial import unittest

from tests.console_proxy.harness import ProxyHarness

pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def command(name: str) -> bytes:
    return json.dumps({"command": name, "target": {"device": "353456789012345"}}).encode()


def run(coro: Any) -> defer.Deferred[Any]:
    return defer.Deferred.fromCoroutine(coro)


class RoleTest(unittest.TestCase):
    timeout = 30

    def test_viewer_refused_a_lock_audited_and_never_forwarded(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            code, headers, body = await h.client("val", "viewer").fetch(
                "POST", "/v1/commands", command("lock"))
            self.assertEqual(code, 403)
            error = json.loads(body)["error"]
            self.assertEqual(error["code"], "forbidden")
            self.assertIn("operator", error["message"])
            self.assertEqual(h.api.forwarded, [])
            [record] = h.api.audits
            self.assertEqual((record["event"], record["method"], record["path"]),
                             ("role_refused", "POST", "/v1/commands"))
            self.assertEqual(record["subject"], "CN=val,OU=viewer,O=acme")
            self.assertEqual(record["reason"], "requires operator")
            self.assertEqual(len(headers.getRawHeaders(b"x-request-id")[0]), 32)
        return run(go())

    def test_operator_allowed_a_lock_but_refused_a_wipe(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            client = h.client("otto", "operator")
            code, _, _ = await client.fetch("POST", "/v1/commands", command("lock"))
            self.assertEqual(code, 201)
            code, _, body = await client.fetch("POST", "/v1/commands", command("wipe"))
            self.assertEqual(code, 403, body)
            self.assertEqual([json.loads(g.body)["command"] for g in h.api.forwarded], ["lock"])
            [record] = h.api.audits
            self.assertEqual(record["reason"], "requires admin")
        return run(go())

    def test_a_repeated_or_cased_command_field_takes_the_highest_role(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            client = h.client("oona", "operator")
            sneaky = b'{"command": "lock", "command": "wipe", "target": {"all": true}}'
            code, _, _ = await client.fetch("POST", "/v1/commands", sneaky)
            self.assertEqual(code, 403)
            code, _, _ = await client.fetch("POST", "/v1/commands", command(" WIPE"))
            self.assertEqual(code, 403)
            self.assertEqual(h.api.forwarded, [])
        return run(go())

    def test_operations_match_templates_and_literals_win(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            op = h.client("opal", "operator")
            code, _, _ = await op.fetch("POST", "/v1/commands/42/cancel")
            self.assertEqual(code, 201)
            code, _, _ = await op.fetch("POST", "/v1/devices/retire", b"{}")
            self.assertEqual(code, 403)  # the literal admin route, not a template
            code, _, _ = await op.fetch("GET", "/v1/audit")
            self.assertEqual(code, 403)
            code, _, _ = await h.client("adam", "admin").fetch("GET", "/v1/audit?actor=x")
            self.assertEqual(code, 200)
        return run(go())

    def test_unknown_operation_and_the_proxy_only_route_are_refused(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            admin = h.client("ann", "admin")
            code, _, body = await admin.fetch("DELETE", "/v1/devices")
            self.assertEqual((code, json.loads(body)["error"]["code"]), (404, "not_found"))
            code, _, _ = await admin.fetch("POST", "/v1/proxy/audit", b"{}")
            self.assertEqual(code, 403)
            code, _, body = await admin.fetch("GET", "/v1/devices/../audit")
            self.assertEqual(code, 400, body)
            self.assertEqual(h.api.forwarded, [])
            self.assertEqual([a["reason"] for a in h.api.audits],
                             ["unknown operation", "requires proxy"])
        return run(go())

    def test_audit_endpoint_failing_answers_503_and_forwards_nothing(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            h.api.audit_status = 503
            code, _, body = await h.client("vic", "viewer").fetch(
                "POST", "/v1/commands", command("lock"))
            self.assertEqual(code, 503)
            self.assertEqual(json.loads(body)["error"]["code"], "audit_unavailable")
            self.assertEqual(h.api.forwarded, [])
            self.assertEqual(h.api.audits, [])
        return run(go())


class RateLimitTest(unittest.TestCase):
    timeout = 30

    def test_rate_limit_answers_429_after_the_burst_and_refills_with_the_clock(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self, rate_limit={"rate_per_s": 1.0, "burst": 2}).start()
            client = h.client("rex", "viewer")
            other = h.client("ria", "viewer")
            codes = [(await client.fetch("GET", "/v1/whoami"))[0] for _ in range(3)]
            self.assertEqual(codes, [200, 200, 429])
            code, headers, body = await client.fetch("GET", "/v1/whoami")
            self.assertEqual((code, json.loads(body)["error"]["code"]), (429, "rate_limited"))
            self.assertEqual(headers.getRawHeaders(b"retry-after"), [b"1"])
            self.assertEqual((await other.fetch("GET", "/v1/whoami"))[0], 200)  # per admin
            self.assertEqual([a["event"] for a in h.api.audits], ["rate_limited"] * 2)
            self.assertEqual(len(h.api.forwarded), 3)
            h.clock.advance(1.0)
            self.assertEqual((await client.fetch("GET", "/v1/whoami"))[0], 200)
        return run(go())
