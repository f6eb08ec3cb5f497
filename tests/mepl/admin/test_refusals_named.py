"""Refusals the proxy reports are audited under the refused admin's name; a 409 about an
approval says what to do next."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.app.approvals import ApprovalsConfig
from tests.mepl.admin.support import IMEIS, ApiWorld

PROXY = "proxy-1"


class ProxyRefusalActorTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.w = ApiWorld()
        self.w.start()
        self.addCleanup(self.w.stop)

    def report(self, event: str, reason: str, subject: str | None,
               fingerprint: str | None = None) -> Any:
        return self.w.request("POST", "/v1/proxy/audit", {
            "event": event, "reason": reason, "source": "192.0.2.7:5000", "subject": subject,
            "fingerprint": fingerprint, "method": "POST", "path": "/v1/commands"},
            name=PROXY, role="proxy")

    @inlineCallbacks
    def test_a_role_refusal_is_audited_under_the_admins_name_and_listed_by_actor(
            self) -> Any:
        recorded = yield self.report("role_refused", "requires operator",
                                     "CN=vic,OU=viewer,O=acme", "f1" * 32)
        self.assertEqual(recorded.status, 201)
        page = yield self.w.request("GET", "/v1/audit?actor=vic", name="ada", role="admin")
        self.assertEqual(page.status, 200)
        [entry] = page.body["items"]
        self.assertEqual((entry["actor"], entry["role"], entry["action"]),
                         ("vic", "viewer", "proxy.refused"))
        self.assertEqual(entry["details"]["via"], PROXY)
        self.assertEqual(entry["details"]["fingerprint"], "f1" * 32)
        self.assertEqual(entry["details"]["reason"], "requires operator")
        self.assertEqual(entry["target"], "CN=vic,OU=viewer,O=acme")

    @inlineCallbacks
    def test_a_revoked_certificate_is_audited_under_its_name(self) -> Any:
        yield self.report("tls_refused", "revoked", "CN=rita,OU=admin,O=acme", "ab" * 32)
        rows = self.w.rows("SELECT actor, role, details FROM audit "
                           "WHERE action = 'proxy.refused'")
        self.assertEqual([(r.actor, r.role) for r in rows], [("rita", "admin")])
        self.assertEqual(rows[0].details["via"], PROXY)

    @inlineCallbacks
    def test_a_refusal_without_a_verified_subject_stays_the_proxys(self) -> Any:
        yield self.report("tls_refused", "no_certificate", None)
        yield self.report("tls_refused", "unknown_ca", "CN=ada,OU=admin,O=acme", "cd" * 32)
        rows = self.w.rows("SELECT actor, role, details FROM audit "
                           "WHERE action = 'proxy.refused' ORDER BY id")
        self.assertEqual([(r.actor, r.role) for r in rows], [(PROXY, "proxy")] * 2)
        self.assertNotIn("via", rows[1].details)
        self.assertEqual(rows[1].details["admin_fingerprint"], "cd" * 32)
        page = yield self.w.request("GET", "/v1/audit?actor=ada", name="bob", role="admin")
        self.assertEqual([e["action"] for e in page.body["items"]], [])

    @inlineCallbacks
    def test_a_certificate_whose_ou_is_no_role_is_named_with_role_none(self) -> Any:
        yield self.report("tls_refused", "bad_role", "CN=zed,OU=root,O=acme", "ee" * 32)
        rows = self.w.rows("SELECT actor, role FROM audit WHERE action = 'proxy.refused'")
        self.assertEqual([(r.actor, r.role) for r in rows], [("zed", "none")])


class ApprovalHintTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.w = ApiWorld(approvals=ApprovalsConfig(ttl_s=600))
        self.w.start()
        self.addCleanup(self.w.stop)
        self.w.add_devices(*IMEIS)

    @inlineCallbacks
    def ask_wipe(self) -> Any:
        asked = yield self.w.request("POST", "/v1/commands", {
            "command": "wipe", "target": {"device": IMEIS[0]}}, name="alice", role="admin")
        self.assertEqual(asked.status, 202)
        return asked.body["approval"]["id"]

    @inlineCallbacks
    def test_approving_ones_own_request_says_to_ask_another_admin_with_the_command(
            self) -> Any:
        approval_id = yield self.ask_wipe()
        same = yield self.w.request("POST", f"/v1/approvals/{approval_id}/approve", {},
                                    name="alice", role="admin")
        self.assertEqual(same.status, 409)
        hint = same.body["error"]["hint"]
        self.assertIn("a different admin must approve it", hint)
        self.assertIn(f"mdm-console approvals approve {approval_id}", hint)
        rejected = yield self.w.request("POST", f"/v1/approvals/{approval_id}/reject", {},
                                        name="alice", role="admin")
        self.assertEqual(rejected.status, 409)
        self.assertIn(f"mdm-console approvals reject {approval_id}",
                      rejected.body["error"]["hint"])

    @inlineCallbacks
    def test_an_expired_approval_says_to_request_it_again(self) -> Any:
        approval_id = yield self.ask_wipe()
        self.w.clock.offset = 601
        late = yield self.w.request("POST", f"/v1/approvals/{approval_id}/approve", {},
                                    name="bob", role="admin")
        self.assertEqual(late.status, 409)
        self.assertIn("expired", late.body["error"]["message"])
        self.assertIn("request it again", late.body["error"]["hint"])
        self.assertNotIn("GET it", late.body["error"]["hint"])
