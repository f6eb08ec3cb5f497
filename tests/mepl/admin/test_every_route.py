"""Every route of the table answers, and every answer matches its schema (checked by the
test client on each reply)."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from blobstore.pdu_batches import insert_pdu_batches_txn, pack_pdu
from mepl.admin.handlers import KeyRotator
from mepl.admin.routes import ROUTES
from mepl.app.approvals import ApprovalsConfig
from signing.keystore import ServerKeyStore
from tests.mepl.admin.support import IMEIS, ApiWorld


class EveryRouteTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_every_route_answers_within_its_schema(self) -> Any:
        store = ServerKeyStore(Path(tempfile.mkdtemp(prefix="adm-keys-")) / "keys")
        self.addCleanup(shutil.rmtree, store.directory.parent, True)
        store.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=("+447700900000",))
        w = ApiWorld(approvals=ApprovalsConfig(rotate_key=True),
                     keys=KeyRotator(store, None))
        w.start()
        self.addCleanup(w.stop)
        w.add_devices(IMEIS[0], IMEIS[1], group="north")
        w.sql("INSERT INTO security_events (device_id, kind) SELECT id, 'alert:lost' "
              "FROM devices WHERE imei = :i", i=IMEIS[0])
        ok: list[tuple[str, int]] = []

        def done(reply: Any, *statuses: int) -> Any:
            self.assertIn(reply.status, statuses or (200,), reply.body)
            return reply.body

        get = lambda path, role="viewer": w.request("GET", path, role=role)  # noqa: E731
        post = lambda path, body, role="admin", name="alice": w.request(  # noqa: E731
            "POST", path, body, role=role, name=name)
        done((yield get("/v1/openapi.json")))
        done((yield get("/v1/whoami")))
        page = done((yield get("/v1/devices?limit=1&state=provisioned")))
        self.assertIsNotNone(page["next"])
        done((yield get(f"/v1/devices?after={page['next']}&q=35")))
        enrolled = done((yield post("/v1/devices", {
            "imei": IMEIS[2], "msisdn": "07700 900 777", "group": "south",
            "public_key": os.urandom(32).hex()})), 201)
        self.assertEqual(enrolled["device"]["msisdn"], "+447700900777")
        done((yield get("/v1/devices/%2B447700900777")))
        done((yield get(f"/v1/devices/{IMEIS[0]}/identity")))
        done((yield get(f"/v1/devices/{IMEIS[0]}/messages")))
        done((yield get(f"/v1/devices/{IMEIS[0]}/commands")))
        done((yield get("/v1/groups")))
        done((yield post("/v1/groups", {"name": "east", "devices": [IMEIS[0]]})), 201)
        done((yield get("/v1/groups/east")))
        done((yield post("/v1/groups/east/members", {"add": [IMEIS[1]],
                                                     "remove": [IMEIS[0]]})))
        sent = done((yield post("/v1/commands", {"command": "unlock",
                                                 "target": {"device": IMEIS[0]}},
                                role="operator")), 201)
        command_id = sent["queued"]["command_id"]
        done((yield get("/v1/commands?device=" + IMEIS[0])))
        done((yield get(f"/v1/commands/{command_id}")))
        done((yield post(f"/v1/commands/{command_id}/cancel", {}, role="operator")))
        fan = done((yield post("/v1/commands", {"command": "locate",
                                                "target": {"all": True}})), 201)
        done((yield get(f"/v1/fanouts/{fan['queued']['fanout_id']}")))
        alerts = done((yield get(f"/v1/alerts?device={IMEIS[0]}&since=2000-01-01")))
        self.assertEqual(len(alerts["items"]), 1)
        resp = bytes.fromhex("00000013" "80000004" "00000000" "00000005") + b"a1\0"
        sent = datetime.now(UTC).replace(microsecond=0)
        with w.engine.begin() as conn:
            insert_pdu_batches_txn(conn, [("in", "carrier", pack_pdu(
                sent.timestamp(), "cmd-1", resp))])
        window = (f"since={(sent - timedelta(seconds=5)).isoformat()}&until="
                  f"{(sent + timedelta(seconds=5)).isoformat()}").replace("+", "%2B")
        pdus = done((yield get(f"/v1/pdus?link=carrier&{window}&smsc_id=A1")))
        self.assertEqual([(p["command"], p["smsc_message_id"], p["hex"])
                          for p in pdus["items"]], [("submit_sm_resp", "a1", resp.hex())])
        missing = yield get("/v1/pdus?since=2026-12-04T11:59:00Z")
        self.assertEqual((missing.status, missing.body["error"]["field"]), (400, "link"))
        rotation = done((yield post("/v1/keys/rotate", {"valid_days": 3})), 202)
        self.assertEqual(store.load().active_key_id, 1)
        approved = done((yield post(f"/v1/approvals/{rotation['approval']['id']}/approve",
                                    {}, name="bob")))
        self.assertEqual(approved["approval"]["result"]["rotation"]["key_id"], 2)
        self.assertEqual(store.load().active_key_id, 2)
        self.assertEqual(w.sql("SELECT count(*) FROM commands WHERE opcode = 'rotate_key' "
                               "AND requested_by LIKE '%alice approved by bob%'"), 3)
        wipe = done((yield post("/v1/commands", {"command": "wipe",
                                                 "target": {"device": IMEIS[1]}})), 202)
        done((yield get("/v1/approvals")))
        done((yield get(f"/v1/approvals/{wipe['approval']['id']}")))
        done((yield post(f"/v1/approvals/{wipe['approval']['id']}/reject", {}, name="bob")))
        other = done((yield post("/v1/devices/retire", {"devices": [IMEIS[1]]})))
        self.assertEqual(other["retired"], [IMEIS[1]])
        done((yield post(f"/v1/devices/{IMEIS[2]}/retire", {})))
        wipe2 = done((yield post("/v1/commands", {"command": "wipe",
                                                  "target": {"device": IMEIS[0]}})), 202)
        done((yield post(f"/v1/approvals/{wipe2['approval']['id']}/approve", {},
                         name="bob")))
        done((yield get("/v1/audit?actor=alice&limit=5", role="admin")))
        refused = yield get("/v1/audit")
        self.assertEqual(refused.status, 403)
        done((yield get("/v1/keys")))
        done((yield w.request("POST", "/v1/proxy/audit", {
            "event": "rate_limited", "reason": "60 requests a minute", "source": "a:1",
            "subject": "alice", "fingerprint": "ab", "method": "GET", "path": "/v1/devices"},
            role="proxy", name="proxy-1")), 201)
        response, sink = yield w.stream()
        self.assertEqual(response.code, 200)
        w.seen_routes.add("events")
        sink.transport.stopProducing()
        self.assertEqual(w.seen_routes, {r.name for r in ROUTES})
        self.assertEqual(ok, [])
