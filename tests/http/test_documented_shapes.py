"""The exact request shapes Kannel and Jasmin send, through real HTTP, GET and POST.

Kannel: sms-service ``get-url`` (escape codes expanded and url-encoded by
smsbox), ``post-url`` (text in the body, X-Kannel-* headers) and ``dlr-url``
(%d type, %F SMSC id, %A SMSC answer).  Jasmin: the HTTP connector's MO
fields and the DLR thrower's level 1 and level 2 fields, by GET and POST.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import urlencode

from twisted.trial.unittest import TestCase

from sms_gateway.events import DeliveryStatus
from sms_gateway.http import MemoryCallbackStore
from tests.http.helpers import JASMIN_PASSWORD, JASMIN_USER, TOKEN, Listener, async_test

BASIC = {"Authorization": "Basic " + base64.b64encode(
    f"{JASMIN_USER}:{JASMIN_PASSWORD}".encode()).decode()}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
KANNEL_ID = "a3c1e4f0-5b6d-4e8f-9a0b-1c2d3e4f5a6b"
JASMIN_ID = "16fd2706-8baf-433b-82eb-8c7fada847da"
# get-url = ".../inbound?token=T&id=%I&from=%p&to=%P&text=%b&udh=%u&coding=%c&charset=%C
#            &smsc=%i&time=%T", as smsbox expands it for a binary SMS to port 2948:
KANNEL_GET_BINARY = (f"token={TOKEN}&id={KANNEL_ID}&from=%2B447700900123&to=447700900001"
                     "&text=%A1%00%FFsig&udh=%06%05%04%0B%84%23%F0&coding=1&charset="
                     "&smsc=carrier_a&time=1795330800")
JASMIN_MO = {"id": JASMIN_ID, "from": "+447700900123", "to": "447700900001",
             "origin-connector": "smppcc_a", "priority": "1", "coding": "0",
             "validity": "2026-11-23 00:00:00", "content": "Hello world !",
             "binary": b"Hello world !".hex()}
JASMIN_DLR_1 = {"id": JASMIN_ID, "message_status": "ESME_ROK", "level": "1"}
JASMIN_DLR_2 = {"id": JASMIN_ID, "id_smsc": "2567", "message_status": "DELIVRD", "level": "2",
                "subdate": "2611220738", "donedate": "2611220739", "sub": "001",
                "dlvrd": "001", "err": "000", "text": "Hello foo bar"}


class KannelShapesTest(TestCase):
    def setUp(self) -> None:
        self.store = MemoryCallbackStore()
        self.srv = Listener(self, self.store)

    @async_test
    async def test_get_url_with_escape_codes_binary_and_udh(self) -> None:
        code, _, body = await self.srv.client.fetch(
            "GET", self.srv.url("kannel1", "inbound", KANNEL_GET_BINARY))
        self.assertEqual((code, body), (200, b""))
        message, _ = self.srv.seen.inbound[0]
        self.assertEqual((message.sender, message.receiver), ("+447700900123", "+447700900001"))
        self.assertEqual((message.payload, message.data_coding, message.text),
                         (b"\xa1\x00\xffsig", 4, None))
        assert message.udh is not None
        self.assertEqual(message.udh.dest_port, 2948)
        self.assertEqual((message.gateway_message_id, message.extra["smsc"]),
                         (KANNEL_ID, "carrier_a"))

    @async_test
    async def test_get_url_text_and_ucs2_with_charset(self) -> None:
        text_query = (f"token={TOKEN}&id=t1&from=07700900123&to=84433&text=Hello+world%21"
                      "&udh=&coding=0&charset=UTF-8&smsc=carrier_a&time=1795330800")
        ucs2_query = (f"token={TOKEN}&id=t2&from=%2B447700900123&to=84433&text=%00H%20%AC"
                      "&udh=&coding=2&charset=UTF-16BE&smsc=carrier_a&time=1795330800")
        for query in (text_query, ucs2_query):
            code, _, _ = await self.srv.client.fetch(
                "GET", self.srv.url("kannel1", "inbound", query))
            self.assertEqual(code, 200)
        (text_msg, _), (ucs2_msg, _) = self.srv.seen.inbound
        self.assertEqual((text_msg.text, text_msg.sender, text_msg.receiver),
                         ("Hello world!", "+447700900123", "84433"))
        self.assertEqual((ucs2_msg.text, ucs2_msg.data_coding, ucs2_msg.payload),
                         ("H€", 8, "H€".encode("utf-16-be")))

    @async_test
    async def test_post_url_body_and_x_kannel_headers(self) -> None:
        # As smsbox sends a binary MO (a signed reply to port 2948): the body is the raw
        # octets, and X-Kannel-UDH is the UDH url-encoded (octstr_url_encode), not hex.
        headers = {"Content-Type": "application/octet-stream",
                   "X-Kannel-From": "+447700900123", "X-Kannel-To": "447700900001",
                   "X-Kannel-Time": "2026-11-22 07:40:00", "X-Kannel-UDH": "%06%05%04%0B%84%23%F0",
                   "X-Kannel-SMSC": "carrier_a", "X-Kannel-Coding": "1",
                   "X-Kannel-Service": "mepl-mo"}
        code, _, body = await self.srv.client.fetch(
            "POST", self.srv.url("kannel1", "inbound", f"token={TOKEN}&id={KANNEL_ID}"),
            b"\x00\x01signed-frame", headers)
        self.assertEqual((code, body), (200, b""))
        message, _ = self.srv.seen.inbound[0]
        self.assertEqual((message.payload, message.sender, message.extra["gateway_time"]),
                         (b"\x00\x01signed-frame", "+447700900123", "2026-11-22 07:40:00"))
        assert message.udh is not None
        self.assertEqual(message.udh.src_port, 9200)
        self.assertIn(("x-kannel-service", "mepl-mo"), self.store.rows[0].headers)

    @async_test
    async def test_post_url_text_with_charset(self) -> None:
        code, _, _ = await self.srv.client.fetch(
            "POST", self.srv.url("kannel1", "inbound", f"token={TOKEN}&id=p2"),
            "Grüße €".encode(), {"Content-Type": "text/plain; charset=UTF-8",
                                 "X-Kannel-From": "447700900123", "X-Kannel-To": "84433",
                                 "X-Kannel-Coding": "0"})
        self.assertEqual(code, 200)
        self.assertEqual(self.srv.seen.inbound[0][0].text, "Grüße €")

    @async_test
    async def test_dlr_url_each_kannel_type_maps_to_one_status(self) -> None:
        expected = {1: DeliveryStatus.DELIVERED, 2: DeliveryStatus.UNDELIVERABLE,
                    4: DeliveryStatus.ENROUTE, 8: DeliveryStatus.ACCEPTED,
                    16: DeliveryStatus.REJECTED}
        for dlr_type in expected:
            answer = ("id:0A1B2C sub:001 dlvrd:001 submit date:2611220738 "
                      "done date:2611220739 stat:DELIVRD err:000 text:" if dlr_type == 1
                      else "ACK/")
            query = urlencode({"token": TOKEN, "ref": "ref-1", "type": dlr_type,
                               "smsc_id": "0A1B2C", "answer": answer, "smsc": "carrier_a",
                               "ts": 1795330800})
            code, _, body = await self.srv.client.fetch(
                "GET", self.srv.url("kannel1", "receipt", query))
            self.assertEqual((code, body), (200, b""))
        statuses = [r.status for r, _ in self.srv.seen.receipts]
        self.assertEqual(statuses, list(expected.values()))
        first = self.srv.seen.receipts[0][0]
        self.assertEqual((first.message_id, first.extra["smsc_message_id"], first.error_code),
                         ("ref-1", "0A1B2C", "000"))
        self.assertEqual(first.done_at, datetime.fromtimestamp(1795330800, UTC))


class JasminShapesTest(TestCase):
    def setUp(self) -> None:
        self.store = MemoryCallbackStore()
        self.srv = Listener(self, self.store)

    @async_test
    async def test_mo_by_post_and_by_get(self) -> None:
        form = urlencode(JASMIN_MO).encode()
        code, _, body = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "inbound"), form, {**BASIC, **FORM})
        self.assertEqual((code, body), (200, b"ACK/Jasmin"))
        other = dict(JASMIN_MO, id="26fd2706-8baf-433b-82eb-8c7fada847db")
        code, _, body = await self.srv.client.fetch(
            "GET", self.srv.url("jasmin1", "inbound", urlencode(other)), headers=BASIC)
        self.assertEqual((code, body), (200, b"ACK/Jasmin"))
        for message, _ in self.srv.seen.inbound:
            self.assertEqual((message.text, message.payload, message.sender, message.receiver),
                             ("Hello world !", b"Hello world !", "+447700900123",
                              "+447700900001"))
            self.assertEqual(message.extra["origin-connector"], "smppcc_a")
        self.assertEqual([r.method for r in self.store.rows], ["POST", "GET"])

    @async_test
    async def test_dlr_levels_1_and_2_by_post_and_get(self) -> None:
        code, _, body = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "receipt"), urlencode(JASMIN_DLR_1).encode(),
            {**BASIC, **FORM})
        self.assertEqual((code, body), (200, b"ACK/Jasmin"))
        code, _, body = await self.srv.client.fetch(
            "GET", self.srv.url("jasmin1", "receipt", urlencode(JASMIN_DLR_2)), headers=BASIC)
        self.assertEqual((code, body), (200, b"ACK/Jasmin"))
        (level1, _), (level2, _) = self.srv.seen.receipts
        self.assertEqual((level1.message_id, level1.status), (JASMIN_ID, DeliveryStatus.ACCEPTED))
        self.assertEqual((level2.message_id, level2.status, level2.error_code),
                         (JASMIN_ID, DeliveryStatus.DELIVERED, "000"))
        self.assertEqual(level2.extra["smsc_message_id"], "2567")
        self.assertEqual(level2.done_at, datetime(2026, 11, 22, 7, 39, tzinfo=UTC))
        self.assertEqual(len(self.store.rows), 2)  # two reports for one id: both kept

    @async_test
    async def test_rejected_submit_level_1_maps_to_rejected(self) -> None:
        form = urlencode(dict(JASMIN_DLR_1, message_status="ESME_RINVNUMDESTS")).encode()
        code, _, _ = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "receipt"), form, {**BASIC, **FORM})
        self.assertEqual(code, 200)
        self.assertEqual(self.srv.seen.receipts[0][0].status, DeliveryStatus.REJECTED)
