"""Every format and every error path through real HTTP on 127.0.0.1 (trial, real reactor)."""

from __future__ import annotations

import json
import time

from twisted.trial.unittest import TestCase

from sms_gateway.events import DeliveryStatus
from sms_gateway.http import HttpConfig, MemoryCallbackStore
from sms_gateway.http.auth import sign_body
from tests.http.helpers import (
    HMAC_SECRET,
    JASMIN_PASSWORD,
    JASMIN_USER,
    TOKEN,
    Listener,
    async_test,
    gateways,
)

BASIC = "Basic " + __import__("base64").b64encode(
    f"{JASMIN_USER}:{JASMIN_PASSWORD}".encode()).decode()
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
KANNEL_MO = ("token=" + TOKEN + "&id=6d1e2f3a-0000-4000-8000-000000000001"
             "&from=447700900123&to=447700900001&text=%01%02%FF%00"
             "&udh=%06%05%04%0B%84%23%F0&coding=1&charset=&smsc=smsc1&time=1795330800")


def signed(body: bytes, at: int | None = None, secret: str = HMAC_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "X-Mepl-Signature": sign_body(secret, body, int(time.time()) if at is None else at)}


class FormatsTest(TestCase):
    def setUp(self) -> None:
        self.store = MemoryCallbackStore()
        self.srv = Listener(self, self.store)

    @async_test
    async def test_kannel_get_binary_mo_is_stored_then_acknowledged_with_empty_body(self) -> None:
        code, _, body = await self.srv.client.fetch(
            "GET", self.srv.url("kannel1", "inbound", KANNEL_MO))
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(len(self.store.rows), 1)
        self.assertEqual(self.store.rows[0].kind, "mo")
        message, stored = self.srv.seen.inbound[0]
        self.assertEqual(stored.message_id, 1)
        self.assertEqual(message.sender, "+447700900123")
        self.assertEqual(message.payload, b"\x01\x02\xff\x00")
        self.assertEqual(message.data_coding, 4)
        assert message.udh is not None
        self.assertEqual((message.udh.dest_port, message.udh.src_port), (2948, 9200))
        self.assertEqual(message.gateway_message_id, "6d1e2f3a-0000-4000-8000-000000000001")

    @async_test
    async def test_kannel_receipt_maps_type_and_our_reference(self) -> None:
        query = f"token={TOKEN}&ref=abc123&type=2&smsc_id=77&answer=stat%3AEXPIRED+err%3A012"
        code, _, body = await self.srv.client.fetch(
            "GET", self.srv.url("kannel1", "receipt", query))
        self.assertEqual((code, body), (200, b""))
        receipt, _ = self.srv.seen.receipts[0]
        self.assertEqual((receipt.message_id, receipt.status, receipt.error_code),
                         ("abc123", DeliveryStatus.EXPIRED, "012"))
        self.assertEqual(self.store.rows[0].external_id, "abc123:2")

    @async_test
    async def test_jasmin_post_mo_is_acknowledged_with_exact_ack_body(self) -> None:
        body = (b"id=j-1&from=%2B447700900123&to=447700900001&origin-connector=smsc1"
                b"&coding=0&content=Hi&binary=4869")
        code, _, answer = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "inbound"), body,
            {"Authorization": BASIC, **FORM})
        self.assertEqual((code, answer), (200, b"ACK/Jasmin"))
        message, _ = self.srv.seen.inbound[0]
        self.assertEqual((message.text, message.extra["origin-connector"]), ("Hi", "smsc1"))

    @async_test
    async def test_json_inbound_signed_is_stored_and_answered_with_row_id(self) -> None:
        doc = json.dumps({"id": "e-1", "from": "+447700900123", "to": "+447700900001",
                          "payload_hex": "cafe", "data_coding": 4}).encode()
        code, _, answer = await self.srv.client.fetch(
            "POST", self.srv.url("json1", "inbound"), doc, signed(doc))
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(answer), {"status": "stored", "message_id": 1})
        self.assertEqual(self.srv.seen.inbound[0][0].payload, b"\xca\xfe")

    @async_test
    async def test_json_receipt_uses_the_shared_status_vocabulary(self) -> None:
        doc = json.dumps({"id": "r-1", "message_id": "m-9", "status": "undeliverable",
                          "error_code": "34"}).encode()
        code, _, _ = await self.srv.client.fetch(
            "POST", self.srv.url("json1", "receipt"), doc, signed(doc))
        self.assertEqual(code, 200)
        receipt, _ = self.srv.seen.receipts[0]
        self.assertEqual((receipt.message_id, receipt.status), ("m-9",
                                                                 DeliveryStatus.UNDELIVERABLE))


class ErrorPathsTest(TestCase):
    def setUp(self) -> None:
        self.store = MemoryCallbackStore()
        self.srv = Listener(self, self.store)

    @async_test
    async def test_unknown_gateway_is_404_with_clear_body_and_counted(self) -> None:
        code, _, body = await self.srv.client.fetch("GET", self.srv.url("nope", "inbound"))
        self.assertEqual(code, 404)
        self.assertIn(b"unknown gateway", body)
        self.assertEqual(self.srv.metric("mepl_http_callbacks_total", gateway="", endpoint="",
                                         outcome="not_found"), 1)
        self.assertEqual(self.store.rows, [])

    @async_test
    async def test_unknown_endpoint_and_bad_paths_are_404(self) -> None:
        for path in ("/gateways/json1/other", "/gateways/json1", "/gateways/a/b/c"):
            code, _, _ = await self.srv.client.fetch("POST", self.srv.base + path, b"{}")
            self.assertEqual(code, 404, path)

    @async_test
    async def test_json_get_is_405_with_allow_header(self) -> None:
        code, headers, _ = await self.srv.client.fetch("GET", self.srv.url("json1", "inbound"))
        self.assertEqual(code, 405)
        self.assertEqual(headers.getRawHeaders(b"allow"), [b"POST"])

    @async_test
    async def test_missing_and_wrong_token_are_401_counted_and_not_stored(self) -> None:
        no_token = KANNEL_MO.replace("token=" + TOKEN + "&", "")
        wrong = KANNEL_MO.replace(TOKEN, "x" * len(TOKEN))
        for query, reason in ((no_token, "missing_credentials"), (wrong, "bad_credentials")):
            code, _, body = await self.srv.client.fetch(
                "GET", self.srv.url("kannel1", "inbound", query))
            self.assertEqual((code, body), (401, b""))
            self.assertEqual(self.srv.metric("mepl_http_auth_failures_total",
                                             gateway="kannel1", reason=reason), 1)
        self.assertEqual(self.store.rows, [])

    @async_test
    async def test_token_in_header_is_accepted(self) -> None:
        query = KANNEL_MO.replace("token=" + TOKEN + "&", "")
        code, _, _ = await self.srv.client.fetch(
            "GET", self.srv.url("kannel1", "inbound", query), headers={"X-Mepl-Token": TOKEN})
        self.assertEqual(code, 200)

    @async_test
    async def test_wrong_basic_credentials_are_401_with_challenge(self) -> None:
        code, headers, body = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "inbound"), b"id=1",
            {"Authorization": "Basic " + __import__("base64").b64encode(b"jasmin:no").decode(),
             **FORM})
        self.assertEqual(code, 401)
        self.assertEqual(headers.getRawHeaders(b"www-authenticate"), [b'Basic realm="mepl"'])
        self.assertIn(b"authentication failed", body)

    @async_test
    async def test_bad_signature_and_stale_timestamp_are_401(self) -> None:
        doc = b'{"id": "x"}'
        cases = ((signed(doc, secret="another-secret-0123456789"), "bad_signature"),
                 (signed(doc, at=int(time.time()) - 3600), "stale_timestamp"),
                 ({"Content-Type": "application/json"}, "missing_credentials"))
        for headers, reason in cases:
            code, _, _ = await self.srv.client.fetch(
                "POST", self.srv.url("json1", "inbound"), doc, headers)
            self.assertEqual(code, 401, reason)
            self.assertEqual(self.srv.metric("mepl_http_auth_failures_total",
                                             gateway="json1", reason=reason), 1)
        self.assertEqual(self.store.rows, [])

    @async_test
    async def test_a_huge_signature_timestamp_is_401_not_a_crash(self) -> None:
        doc = b'{"id": "x"}'
        headers = {"Content-Type": "application/json",
                   "X-Mepl-Signature": "t=" + "9" * 400 + ",v1=" + "0" * 64}
        code, _, body = await self.srv.client.fetch(
            "POST", self.srv.url("json1", "inbound"), doc, headers)
        self.assertEqual(code, 401)
        self.assertIn(b"t=<unix>", body)
        self.assertEqual(self.srv.metric("mepl_http_auth_failures_total", gateway="json1",
                                         reason="bad_signature"), 1)

    @async_test
    async def test_source_outside_allow_list_is_403(self) -> None:
        config = HttpConfig(port=0, gateways=gateways(
            kannel1={"allowed_sources": ("10.0.0.0/8",)},
            jasmin1={"allowed_sources": ("127.0.0.0/8",)}))
        srv = Listener(self, self.store, config)
        code, _, _ = await srv.client.fetch("GET", srv.url("kannel1", "inbound", KANNEL_MO))
        self.assertEqual(code, 403)
        self.assertEqual(srv.metric("mepl_http_auth_failures_total", gateway="kannel1",
                                    reason="source"), 1)
        code, _, _ = await srv.client.fetch(
            "POST", srv.url("jasmin1", "receipt"), b"id=j&message_status=ESME_ROK&level=1",
            {"Authorization": BASIC, **FORM})
        self.assertEqual(code, 200)

    @async_test
    async def test_malformed_kannel_is_stored_with_error_and_answered_400_empty(self) -> None:
        query = KANNEL_MO.replace("udh=%06%05%04%0B%84%23%F0", "udh=zz")
        code, _, body = await self.srv.client.fetch(
            "GET", self.srv.url("kannel1", "inbound", query))
        self.assertEqual((code, body), (400, b""))
        row = self.store.rows[0]
        self.assertEqual(row.kind, "malformed")
        self.assertIn("udh", row.error or "")
        self.assertEqual(self.srv.seen.inbound, [])
        self.assertEqual(self.srv.metric("mepl_http_callbacks_total", gateway="kannel1",
                                         endpoint="inbound", outcome="malformed"), 1)

    @async_test
    async def test_malformed_jasmin_and_json_get_a_clear_400_body_and_are_stored(self) -> None:
        code, _, body = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "receipt"), b"id=j-1&message_status=DELIVRD&level=9",
            {"Authorization": BASIC, **FORM})
        self.assertEqual(code, 400)
        self.assertIn(b"field 'level'", body)
        doc = b"not json"
        code, _, body = await self.srv.client.fetch(
            "POST", self.srv.url("json1", "inbound"), doc, signed(doc))
        self.assertEqual(code, 400)
        self.assertIn(b"not valid UTF-8 JSON", body)
        self.assertEqual([r.kind for r in self.store.rows], ["malformed", "malformed"])

    @async_test
    async def test_oversized_body_is_413_and_stored_truncated_when_authenticated(self) -> None:
        config = HttpConfig(port=0, gateways=gateways(kannel1={"max_body_bytes": 1024},
                                                      json1={"max_body_bytes": 1024}))
        srv = Listener(self, self.store, config)
        code, _, body = await srv.client.fetch(
            "POST", srv.url("kannel1", "inbound", f"token={TOKEN}&id=big"), b"x" * 5000,
            {"Content-Type": "text/plain", "X-Kannel-From": "447700900123",
             "X-Kannel-To": "1234"})
        self.assertEqual((code, body), (413, b""))
        self.assertEqual(len(self.store.rows), 1)
        self.assertEqual((self.store.rows[0].kind, len(self.store.rows[0].body)),
                         ("malformed", 1024))
        doc = b'{"id": "' + b"y" * 5000 + b'"}'
        code, _, body = await srv.client.fetch("POST", srv.url("json1", "inbound"), doc,
                                               signed(doc))
        self.assertEqual(code, 413)
        self.assertIn(b"max_body_bytes", body)
        self.assertEqual(len(self.store.rows), 1)  # a signed body cut short cannot be trusted

    @async_test
    async def test_store_down_gives_503_and_the_retry_lands_exactly_once(self) -> None:
        self.store.failing = True
        url = self.srv.url("kannel1", "inbound", KANNEL_MO)
        code, headers, body = await self.srv.client.fetch("GET", url)
        self.assertEqual((code, body), (503, b""))
        self.assertEqual(headers.getRawHeaders(b"retry-after"), [b"5"])
        self.assertEqual((self.store.rows, self.srv.seen.inbound), ([], []))
        self.store.failing = False
        for _ in range(2):  # the gateway's retry, then a second (duplicate) retry
            code, _, _ = await self.srv.client.fetch("GET", url)
            self.assertEqual(code, 200)
        self.assertEqual(len(self.store.rows), 1)
        self.assertEqual(len(self.srv.seen.inbound), 1)
        self.assertEqual(self.srv.metric("mepl_http_callbacks_total", gateway="kannel1",
                                         endpoint="inbound", outcome="duplicate"), 1)

    @async_test
    async def test_processing_failure_does_not_change_the_acknowledgement(self) -> None:
        def broken(*_: object) -> None:
            raise RuntimeError("processing is broken")

        self.srv.handler._on_inbound = broken
        code, _, _ = await self.srv.client.fetch(
            "GET", self.srv.url("kannel1", "inbound", KANNEL_MO))
        self.assertEqual(code, 200)
        self.assertEqual(self.srv.metric("mepl_http_processing_failures_total",
                                         gateway="kannel1"), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @async_test
    async def test_secrets_are_not_stored(self) -> None:
        await self.srv.client.fetch("GET", self.srv.url("kannel1", "inbound", KANNEL_MO))
        await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "receipt"), b"id=j&message_status=ESME_ROK&level=1",
            {"Authorization": BASIC, **FORM})
        kannel, jasmin = self.store.rows
        self.assertNotIn(TOKEN, kannel.target)
        self.assertIn("token=REDACTED", kannel.target)
        self.assertNotIn("authorization", dict(jasmin.headers))
        self.assertEqual(dict(jasmin.headers)["content-type"], FORM["Content-Type"])


    @async_test
    async def test_a_token_under_a_percent_encoded_name_is_never_stored(self) -> None:
        encoded = KANNEL_MO.replace("token=", "%74oken=")
        malformed = encoded.replace("udh=%06%05%04%0B%84%23%F0", "udh=zz")
        codes = []
        for query in (encoded, malformed):
            code, _, _ = await self.srv.client.fetch(
                "GET", self.srv.url("kannel1", "inbound", query))
            codes.append(code)
        self.assertEqual(codes, [200, 400])
        self.assertEqual([r.kind for r in self.store.rows], ["mo", "malformed"])
        for row in self.store.rows:
            self.assertNotIn(TOKEN.encode(), row.wire_bytes())
            self.assertIn(b"?%74oken=REDACTED&", row.wire_bytes())

    @async_test
    async def test_a_secret_field_in_a_form_body_is_redacted_before_storing(self) -> None:
        body = (b"id=j&message_status=ESME_ROK&level=1&pass%77ord="
                + JASMIN_PASSWORD.encode())
        code, _, _ = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "receipt"), body, {"Authorization": BASIC, **FORM})
        self.assertEqual(code, 200)
        (row,) = self.store.rows
        self.assertNotIn(JASMIN_PASSWORD.encode(), row.wire_bytes())
        self.assertTrue(row.body.endswith(b"&pass%77ord=REDACTED"))
        self.assertEqual(self.srv.seen.receipts[0][0].message_id, "j")


    @async_test
    async def test_client_input_that_trips_a_parser_is_400_stored_and_counted(self) -> None:
        nested = b"[" * 20_000 + b"]" * 20_000
        code, _, body = await self.srv.client.fetch(
            "POST", self.srv.url("json1", "inbound"), nested, signed(nested))
        self.assertEqual(code, 400)
        self.assertIn(b"nested too deeply", body)
        for charset in ("undefined", "punycode"):
            code, _, body = await self.srv.client.fetch(
                "GET", self.srv.url("kannel1", "inbound",
                                    KANNEL_MO.replace("coding=1&charset=",
                                                      f"coding=0&charset={charset}")))
            self.assertEqual((code, body), (400, b""), charset)
        code, _, _ = await self.srv.client.fetch(
            "POST", self.srv.url("kannel1", "inbound", f"token={TOKEN}&id=p1"), b"hi",
            {"Content-Type": 'text/plain; charset="undefined"', "X-Kannel-From": "447700900123",
             "X-Kannel-To": "1234"})
        self.assertEqual(code, 400)
        self.assertEqual([r.kind for r in self.store.rows], ["malformed"] * 4)
        self.assertTrue(all(r.error for r in self.store.rows))
        self.assertEqual(self.srv.metric("mepl_http_callbacks_total", gateway="kannel1",
                                         endpoint="inbound", outcome="malformed"), 3)
        self.assertEqual(self.srv.metric("mepl_http_callbacks_total", gateway="json1",
                                         endpoint="inbound", outcome="malformed"), 1)
        self.assertEqual(self.srv.seen.inbound, [])


    @async_test
    async def test_repeated_bad_tokens_from_one_source_get_429_with_retry_after(self) -> None:
        config = HttpConfig(port=0, gateways=gateways(), auth_failures_per_source=2)
        srv = Listener(self, self.store, config)
        wrong = KANNEL_MO.replace(TOKEN, "x" * len(TOKEN))
        replies = [await srv.client.fetch("GET", srv.url("kannel1", "inbound", query))
                   for query in (wrong, wrong, KANNEL_MO)]
        self.assertEqual([code for code, _, _ in replies], [401, 401, 429])
        _, headers, body = replies[-1]
        self.assertEqual((headers.getRawHeaders(b"retry-after"), body), ([b"300"], b""))
        self.assertEqual(self.store.rows, [])
        self.assertEqual(srv.metric("mepl_http_callbacks_total", gateway="kannel1",
                                    endpoint="inbound", outcome="rate_limited"), 1)


class ParserBugTest(TestCase):
    @async_test
    async def test_a_parser_bug_is_stored_and_answered_500_so_the_gateway_retries(self) -> None:
        from sms_gateway.http import handler

        def broken(*_: object, **__: object) -> None:
            raise KeyError("bug")

        self.patch(handler, "PARSERS", {**handler.PARSERS, ("jasmin", "receipt"): broken})
        store = MemoryCallbackStore()
        srv = Listener(self, store)
        code, _, body = await srv.client.fetch(
            "POST", srv.url("jasmin1", "receipt"), b"id=1&message_status=ESME_ROK&level=1",
            {"Authorization": BASIC, **FORM})
        self.assertEqual(code, 500)
        self.assertIn(b"parser failed", body)
        self.assertEqual(store.rows[0].kind, "malformed")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    @async_test
    async def test_input_errors_escaping_a_parser_are_still_400_not_500(self) -> None:
        from sms_gateway.http import handler

        errors = iter([RecursionError("deep"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x"),
                       UnicodeError("undefined encoding")])

        def tripped(*_: object, **__: object) -> None:
            raise next(errors)

        self.patch(handler, "PARSERS", {**handler.PARSERS, ("jasmin", "receipt"): tripped})
        store = MemoryCallbackStore()
        srv = Listener(self, store)
        for _ in range(3):
            code, _, body = await srv.client.fetch(
                "POST", srv.url("jasmin1", "receipt"), b"id=1&message_status=ESME_ROK&level=1",
                {"Authorization": BASIC, **FORM})
            self.assertEqual(code, 400)
            self.assertIn(b"unparseable input", body)
        self.assertEqual([r.kind for r in store.rows], ["malformed"] * 3)
        self.assertEqual(srv.metric("mepl_http_callbacks_total", gateway="jasmin1",
                                    endpoint="receipt", outcome="malformed"), 3)

    @async_test
    async def test_the_stored_error_text_never_carries_a_nul_or_a_surrogate(self) -> None:
        from sms_gateway.http import handler

        def broken(*_: object, **__: object) -> None:
            raise ValueError("bad\x00value\ud800" + "x" * 2000)

        self.patch(handler, "PARSERS", {**handler.PARSERS, ("jasmin", "receipt"): broken})
        store = MemoryCallbackStore()
        srv = Listener(self, store)
        await srv.client.fetch("POST", srv.url("jasmin1", "receipt"), b"id=1",
                               {"Authorization": BASIC, **FORM})
        error = store.rows[0].error or ""
        self.assertNotIn("\x00", error)
        error.encode("utf-8")  # no unpaired surrogate
        self.assertLessEqual(len(error), 500)
        self.assertTrue(error.startswith("parser failed: ValueError: bad\\x00value\\ud800x"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
