"""Commands through the admin API, and two-person approval of the dangerous ones."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.app.approvals import ApprovalsConfig
from tests.mepl.admin.support import IMEIS, ApiWorld


class CommandTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.w = ApiWorld(approvals=ApprovalsConfig(ttl_s=600, retire_min=3))
        self.w.start()
        self.addCleanup(self.w.stop)
        self.w.add_devices(*IMEIS, group="north")

    def commands(self) -> int:
        return int(self.w.sql("SELECT count(*) FROM commands"))

    @inlineCallbacks
    def test_an_operators_lock_to_one_device_is_queued_with_its_history(self) -> Any:
        reply = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"device": "+447700900100"}})
        self.assertEqual(reply.status, 201)
        queued = reply.body["queued"]
        self.assertEqual((queued["command"], queued["target"], queued["count"]),
                         ("lock", IMEIS[0], 1))
        shown = yield self.w.request("GET", f"/v1/commands/{queued['command_id']}",
                                     role="viewer", name="vic")
        self.assertEqual(shown.status, 200)
        self.assertEqual(shown.body["command"]["requested_by"], "operator:alice")
        self.assertEqual([e["to"] for e in shown.body["history"]], ["queued"])
        rows = self.w.rows("SELECT actor, action, details, request_id FROM audit "
                           "WHERE action = 'command.send' ORDER BY id")
        self.assertEqual(len(rows), 2)  # the use case's row and the request's row
        request_row = next(r for r in rows if r.request_id is not None)
        self.assertEqual(request_row.details["outcome"], "ok")
        self.assertEqual(request_row.details["status"], 201)
        self.assertEqual(request_row.details["source"], "127.0.0.1:50000")
        self.assertEqual(len(request_row.details["fingerprint"]), 64)
        listed = yield self.w.request("GET", f"/v1/devices/{IMEIS[0]}/commands",
                                      role="viewer")
        self.assertEqual([c["id"] for c in listed.body["items"]], [queued["command_id"]])
        cancelled = yield self.w.request("POST", f"/v1/commands/{queued['command_id']}/cancel",
                                         {})
        self.assertEqual(cancelled.status, 200)
        again = yield self.w.request("POST", f"/v1/commands/{queued['command_id']}/cancel", {})
        self.assertEqual(again.status, 409)

    @inlineCallbacks
    def test_bad_requests_name_the_field(self) -> Any:
        reply = yield self.w.request("POST", "/v1/commands", {"command": "lock"})
        self.assertEqual((reply.status, reply.body["error"]["field"]), (400, "target"))
        reply = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"device": IMEIS[0]}, "colour": "red"})
        self.assertEqual((reply.status, reply.body["error"]["field"]), (400, "colour"))
        reply = yield self.w.request("POST", "/v1/commands", {
            "command": "notify", "args": {"bogus": "1"}, "target": {"device": IMEIS[0]}})
        self.assertEqual((reply.status, reply.body["error"]["field"]), (400, "arguments"))
        reply = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"device": "no such thing"}})
        self.assertEqual(reply.status, 400)
        reply = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"device": "353918058450947"}})
        self.assertEqual(reply.status, 404)
        reply = yield self.w.request("GET", "/v1/devices?limit=0", role="viewer")
        self.assertEqual((reply.status, reply.body["error"]["field"]), (400, "limit"))
        self.assertEqual(self.commands(), 0)

    @inlineCallbacks
    def test_an_admins_wipe_waits_for_a_second_admin_who_approves_it(self) -> Any:
        w = self.w
        asked = yield w.request("POST", "/v1/commands", {
            "command": "wipe", "target": {"device": IMEIS[1]}}, name="alice", role="admin")
        self.assertEqual(asked.status, 202)
        approval = asked.body["approval"]
        self.assertEqual((approval["action"], approval["status"]), ("command.wipe", "pending"))
        self.assertEqual(approval["requested_by"]["name"], "alice")
        self.assertEqual(self.commands(), 0)
        self.assertEqual(w.sql("SELECT count(*) FROM commands WHERE frame IS NOT NULL"), 0)
        same = yield w.request("POST", f"/v1/approvals/{approval['id']}/approve", {},
                               name="alice", role="admin")
        self.assertEqual(same.status, 409)
        self.assertIn("another administrator", same.body["error"]["message"])
        self.assertEqual(self.commands(), 0)
        operator = yield w.request("POST", f"/v1/approvals/{approval['id']}/approve", {},
                                   name="olga", role="operator")
        self.assertEqual(operator.status, 403)
        pending = yield w.request("GET", "/v1/approvals?status=pending", role="viewer")
        self.assertEqual([a["id"] for a in pending.body["items"]], [approval["id"]])
        done = yield w.request("POST", f"/v1/approvals/{approval['id']}/approve", {},
                               name="bob", role="admin")
        self.assertEqual(done.status, 200)
        decided = done.body["approval"]
        self.assertEqual((decided["status"], decided["decided_by"]["name"]),
                         ("approved", "bob"))
        command_id = decided["result"]["queued"]["command_id"]
        shown = yield w.request("GET", f"/v1/commands/{command_id}", role="viewer")
        self.assertEqual(shown.body["command"]["opcode"], "wipe")
        self.assertEqual(shown.body["command"]["requested_by"],
                         "admin:alice approved by admin:bob")
        note = shown.body["history"][0]["details"]["note"]
        self.assertIn("admin:alice", note)
        self.assertIn("admin:bob", note)
        audited = w.rows("SELECT actor, action, details FROM audit WHERE request_id IS NULL "
                         "AND action IN ('command.send', 'approval.approve') ORDER BY id")
        self.assertEqual([(r.actor, r.action) for r in audited],
                         [("alice", "command.send"), ("bob", "approval.approve")])
        self.assertEqual(audited[0].details["approved_by"], "bob")
        self.assertEqual(audited[1].details["requested_by"], "alice")
        twice = yield w.request("POST", f"/v1/approvals/{approval['id']}/approve", {},
                                name="carol", role="admin")
        self.assertEqual(twice.status, 409)
        self.assertEqual(self.commands(), 1)

    @inlineCallbacks
    def test_a_rejected_request_queues_nothing(self) -> Any:
        asked = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"group": "north"}}, name="alice", role="admin")
        self.assertEqual((asked.status, asked.body["approval"]["action"]),
                         (202, "command.lock.group"))
        approval_id = asked.body["approval"]["id"]
        rejected = yield self.w.request("POST", f"/v1/approvals/{approval_id}/reject",
                                        {"reason": "wrong group"}, name="bob", role="admin")
        self.assertEqual(rejected.status, 200)
        self.assertEqual((rejected.body["approval"]["status"],
                          rejected.body["approval"]["reason"]), ("rejected", "wrong group"))
        late = yield self.w.request("POST", f"/v1/approvals/{approval_id}/approve", {},
                                    name="carol", role="admin")
        self.assertEqual(late.status, 409)
        self.assertEqual(self.commands(), 0)

    @inlineCallbacks
    def test_an_approval_past_its_expiry_cannot_be_approved_and_is_marked_expired(
            self) -> Any:
        asked = yield self.w.request("POST", "/v1/commands", {
            "command": "lock", "target": {"all": True}}, name="alice", role="admin")
        self.assertEqual(asked.body["approval"]["action"], "command.lock.fleet")
        approval_id = asked.body["approval"]["id"]
        self.w.clock.offset = 601
        late = yield self.w.request("POST", f"/v1/approvals/{approval_id}/approve", {},
                                    name="bob", role="admin")
        self.assertEqual(late.status, 409)
        self.assertIn("expired", late.body["error"]["message"])
        self.assertEqual(self.commands(), 0)
        self.assertEqual(self.w.sql("SELECT status FROM approvals"), "expired")
        shown = yield self.w.request("GET", f"/v1/approvals/{approval_id}", role="viewer")
        self.assertEqual(shown.body["approval"]["status"], "expired")

    @inlineCallbacks
    def test_a_fanout_is_recorded_and_its_progress_counted_by_state(self) -> Any:
        sent = yield self.w.request("POST", "/v1/commands", {
            "command": "locate", "target": {"group": "north"}})
        self.assertEqual(sent.status, 201)
        queued = sent.body["queued"]
        self.assertEqual((queued["count"], queued["command_id"]), (4, None))
        fanout = queued["fanout_id"]
        self.w.sql("UPDATE commands SET state = 'done' WHERE id = (SELECT min(id) FROM "
                   "commands WHERE fanout_id = :f)", f=fanout)
        self.w.sql("UPDATE commands SET state = 'failed' WHERE id = (SELECT max(id) FROM "
                   "commands WHERE fanout_id = :f)", f=fanout)
        progress = yield self.w.request("GET", f"/v1/fanouts/{fanout}", role="viewer")
        self.assertEqual(progress.status, 200)
        body = progress.body
        self.assertEqual(body["states"], {"queued": 2, "done": 1, "failed": 1})
        self.assertEqual((body["total"], body["done"], body["failed"], body["finished"]),
                         (4, 1, 1, 2))
        self.assertEqual(body["requested_by"], "operator:alice")
        listed = yield self.w.request("GET", f"/v1/commands?fanout={fanout}&state=queued",
                                      role="viewer")
        self.assertEqual(len(listed.body["items"]), 2)
        missing = yield self.w.request("GET", "/v1/fanouts/999", role="viewer")
        self.assertEqual(missing.status, 404)

    @inlineCallbacks
    def test_retiring_many_devices_needs_approval_and_one_does_not(self) -> Any:
        one = yield self.w.request("POST", f"/v1/devices/{IMEIS[3]}/retire", {},
                                   name="alice", role="admin")
        self.assertEqual((one.status, one.body["retired"]), (200, [IMEIS[3]]))
        many = yield self.w.request("POST", "/v1/devices/retire",
                                    {"devices": list(IMEIS[:3])}, name="alice", role="admin")
        self.assertEqual(many.status, 202)
        self.assertEqual(self.w.sql("SELECT count(*) FROM devices WHERE state = 'retired'"), 1)
        done = yield self.w.request(
            "POST", f"/v1/approvals/{many.body['approval']['id']}/approve", {},
            name="bob", role="admin")
        self.assertEqual(done.status, 200)
        self.assertEqual(done.body["approval"]["result"]["retired"], list(IMEIS[:3]))
        self.assertEqual(self.w.sql("SELECT count(*) FROM devices WHERE state = 'retired'"), 4)
