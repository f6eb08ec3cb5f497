"""The proxy must be the only way in: assertions, roles, the audit of every request."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.admin.config import AdminConfig
from mepl.config import ConfigError, build
from mepl.settings import load_settings
from tests.mepl.admin.support import IMEIS, ApiWorld


class AssertionTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.w = ApiWorld()
        self.w.start()
        self.addCleanup(self.w.stop)
        self.w.add_devices(IMEIS[0])

    def refusals(self) -> list[Any]:
        return self.w.rows("SELECT actor, role, action, details, request_id FROM audit "
                           "WHERE action = 'request.refused' ORDER BY id")

    @inlineCallbacks
    def test_missing_forged_expired_replayed_or_misbound_assertions_get_one_identical_401(
            self) -> Any:
        w = self.w
        target = "/v1/whoami"
        good = w.assertion("GET", target)
        first = yield w.request("GET", target, assertion=good)
        self.assertEqual(first.status, 200)
        self.assertEqual(first.body["name"], "alice")
        other = Ed25519PrivateKey.generate()
        answers = [
            (yield w.request("GET", target, assertion="")),                      # none
            (yield w.request("GET", target, assertion=good)),                    # replayed
            (yield w.request("GET", target, iat=w.clock.seconds() - 120)),       # expired
            (yield w.request("GET", target, iat=w.clock.seconds() + 120)),       # future
            (yield w.request("GET", target, m="POST")),                          # other method
            (yield w.request("GET", target, p="/v1/devices")),                   # other path
            (yield w.request("GET", target, bh="00" * 32)),                      # other body
            (yield w.request("GET", target, v=2)),                               # version
            (yield w.request("GET", target, assertion=good.split(".")[0] + ".AAAA")),
            (yield w.request("GET", target, assertion=w.assertion("GET", target)[:-3] + "abc")),
        ]
        forged = ApiWorld.assertion.__get__(w)  # same claims, signed by a foreign key
        w.key, real = other, w.key
        answers.append((yield w.request("GET", target, assertion=forged("GET", target))))
        w.key = real
        self.assertEqual({a.status for a in answers}, {401})
        self.assertEqual({a.raw for a in answers}, {answers[0].raw})
        self.assertEqual(answers[0].body["error"]["code"], "unauthenticated")
        self.assertIsNone(answers[1].headers.getRawHeaders("x-request-id"))
        rows = self.refusals()
        self.assertEqual(len(rows), len(answers))
        reasons = [r.details["outcome"] for r in rows]
        self.assertEqual(reasons[:3], ["refused:no assertion", "refused:replayed assertion",
                                       "refused:assertion expired or from the future"])
        self.assertIn("refused:bad signature", reasons)
        self.assertIn("refused:body hash mismatch", reasons)
        self.assertEqual({r.details["status"] for r in rows}, {401})
        self.assertEqual({r.request_id for r in rows}, {None})

    @inlineCallbacks
    def test_a_replay_to_a_second_api_instance_on_the_same_database_is_refused(self) -> Any:
        other = ApiWorld(url=self.w.url, key=self.w.key)
        other.start()
        self.addCleanup(other.stop)
        good = self.w.assertion("GET", "/v1/whoami")
        first = yield self.w.request("GET", "/v1/whoami", assertion=good)
        again = yield other.request("GET", "/v1/whoami", assertion=good)
        self.assertEqual((first.status, again.status), (200, 401))
        self.assertEqual(again.body["error"]["code"], "unauthenticated")
        rows = self.refusals()
        self.assertEqual([r.details["outcome"] for r in rows],
                         ["refused:request id already used (replayed assertion)"])

    @inlineCallbacks
    def test_a_replayed_command_sent_to_another_instance_queues_nothing_more(self) -> Any:
        other = ApiWorld(url=self.w.url, key=self.w.key)
        other.start()
        self.addCleanup(other.stop)
        body = {"command": "lock", "target": {"device": IMEIS[0]}}
        raw = b'{"command": "lock", "target": {"device": "%s"}}' % IMEIS[0].encode()
        good = self.w.assertion("POST", "/v1/commands", raw)
        first = yield self.w.request("POST", "/v1/commands", raw_body=raw, assertion=good)
        again = yield other.request("POST", "/v1/commands", raw_body=raw, assertion=good)
        self.assertEqual((first.status, again.status), (201, 401))
        self.assertEqual(self.w.sql("SELECT count(*) FROM commands"), 1)
        self.assertTrue(body)

    @inlineCallbacks
    def test_a_viewer_is_refused_a_lock_and_the_refusal_is_audited(self) -> Any:
        reply = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"device": IMEIS[0]}}, name="vic", role="viewer")
        self.assertEqual(reply.status, 403)
        self.assertEqual(reply.body["error"]["code"], "forbidden")
        self.assertEqual(self.w.sql("SELECT count(*) FROM commands"), 0)
        row = self.w.rows("SELECT actor, role, action, details, request_id FROM audit")[-1]
        self.assertEqual((row.actor, row.role, row.action), ("vic", "viewer", "command.send"))
        self.assertEqual(row.details["outcome"], "refused:forbidden")
        self.assertEqual(row.details["status"], 403)
        self.assertEqual(row.request_id, reply.headers.getRawHeaders("x-request-id")[0])

    @inlineCallbacks
    def test_an_operator_is_refused_a_wipe_and_policy_commands(self) -> Any:
        for command, args in (("wipe", {}), ("set_restrictions", {"restrictions": "none"})):
            reply = yield self.w.request("POST", "/v1/commands", {
                "command": command, "args": args, "target": {"device": IMEIS[0]}})
            self.assertEqual(reply.status, 403, command)
            self.assertIn("admin", reply.body["error"]["message"])
        self.assertEqual(self.w.sql("SELECT count(*) FROM commands"), 0)

    @inlineCallbacks
    def test_the_proxy_role_may_only_fetch_the_document_and_record_refusals(self) -> Any:
        doc = yield self.w.request("GET", "/v1/openapi.json", name="proxy-1", role="proxy")
        self.assertEqual(doc.status, 200)
        self.assertEqual(doc.body["openapi"], "3.1.0")
        devices = yield self.w.request("GET", "/v1/devices", name="proxy-1", role="proxy")
        self.assertEqual(devices.status, 403)
        recorded = yield self.w.request("POST", "/v1/proxy/audit", {
            "event": "tls_refused", "reason": "certificate revoked",
            "source": "192.0.2.7:5000", "subject": "mallory", "fingerprint": None,
            "method": None, "path": None}, name="proxy-1", role="proxy")
        self.assertEqual(recorded.status, 201)
        row = self.w.rows("SELECT actor, action, target, details FROM audit "
                          "WHERE action = 'proxy.refused'")[0]
        self.assertEqual((row.actor, row.target), ("proxy-1", "mallory"))
        self.assertEqual(row.details["reason"], "certificate revoked")
        admin = yield self.w.request("POST", "/v1/proxy/audit", {
            "event": "tls_refused", "reason": "x", "source": "y"}, name="eve", role="admin")
        self.assertEqual(admin.status, 403)

    @inlineCallbacks
    def test_when_the_audit_cannot_be_written_the_request_fails_and_changes_nothing(
            self) -> Any:
        self.w.sql("CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE EXCEPTION 'audit disk full'; END $$")
        self.w.sql("CREATE TRIGGER no_audit BEFORE INSERT ON audit FOR EACH ROW "
                   "EXECUTE FUNCTION no_audit()")
        reply = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"device": IMEIS[0]}})
        self.assertEqual(reply.status, 503)
        self.assertEqual(reply.body["error"]["code"], "audit_unavailable")
        self.assertEqual(self.w.sql("SELECT count(*) FROM commands"), 0)
        read = yield self.w.request("GET", "/v1/devices")
        self.assertEqual(read.status, 503)
        refused = yield self.w.request("GET", "/v1/devices", assertion="")
        self.assertEqual(refused.status, 503)

    @inlineCallbacks
    def test_the_socket_is_0660_in_a_0750_directory(self) -> Any:
        path = self.w.config.socket
        assert path is not None
        self.assertEqual(path.stat().st_mode & 0o777, 0o660)
        self.assertEqual(path.parent.stat().st_mode & 0o777, 0o750)
        yield None


def test_tcp_without_tls_and_a_client_ca_is_refused_at_start_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"dispatch": {"server_number": "+447700900000"},
                       "admin": {"listen": "0.0.0.0:9443", "assertion_keys": ["k.pub"]}})
    assert info.value.key == "admin.listen"
    assert "client_ca" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build(AdminConfig, {"listen": "127.0.0.1:9443", "tls_cert": "c.pem",
                            "tls_key": "k.pem"}, "admin")
    assert "client_ca" in str(info.value) and info.value.key == "admin.listen"
    ok = build(AdminConfig, {"listen": "127.0.0.1:9443", "tls_cert": "c.pem",
                             "tls_key": "k.pem", "client_ca": "ca.pem"}, "admin")
    assert ok.tcp == ("127.0.0.1", 9443)
