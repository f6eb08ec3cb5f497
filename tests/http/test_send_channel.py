"""The HTTP send channel against fake Kannel and Jasmin servers over real HTTP."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta
from urllib.parse import quote, unquote

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from sms_gateway.channel import DATA_CODING_BINARY, DATA_CODING_UCS2, OutboundMessage
from sms_gateway.errors import MessageTooLongError, SubmitError
from sms_gateway.events import DeliveryStatus
from sms_gateway.http import HttpConfig, HttpSendChannel, MemoryCallbackStore
from sms_gateway.udh import split_user_data
from tests.http.fakes import start_fake
from tests.http.helpers import Listener, async_test, gateways

KANNEL_OK = (202, b"0: Accepted for delivery")


class KannelSendTest(TestCase):
    def setUp(self) -> None:
        self.fake, base = start_fake(self, KANNEL_OK)
        self.srv = Listener(self, MemoryCallbackStore())
        self.config = dataclasses.replace(
            gateways()["kannel1"], send_url=base + "/cgi-bin/sendsms", send_username="mepl",
            send_password="send-secret", dlr_url_base=self.srv.base, send_timeout_seconds=2,
            max_parts=4)
        refs = (f"ref{i}" for i in itertools.count(1))
        self.channel = HttpSendChannel(self.config, reactor=reactor,
                                       new_reference=lambda: next(refs),
                                       concat_reference=lambda: 0x42)
        self.addCleanup(self.channel.close)

    @async_test
    async def test_binary_with_ports_is_one_sendsms_with_udh_coding_and_dlr(self) -> None:
        message = OutboundMessage("+447700900123", b"\x00\x01\xfe", dest_port=2948,
                                  src_port=9200, source="84433",
                                  validity=timedelta(hours=2))
        result = await self.channel.submit(message)
        self.assertEqual((result.link, result.message_ids), ("kannel1", ("ref1",)))
        (req,) = self.fake.requests
        self.assertEqual((req.method, req.path), ("GET", "/cgi-bin/sendsms"))
        q = req.query
        self.assertEqual((q["username"], q["password"], q["to"], q["from"]),
                         (b"mepl", b"send-secret", b"+447700900123", b"84433"))
        self.assertEqual((q["coding"], q["text"], q["udh"]),
                         (b"1", b"\x00\x01\xfe", bytes.fromhex("0605040B8423F0")))
        self.assertEqual((q["dlr-mask"], q["validity"]), (b"31", b"120"))
        dlr_url = q["dlr-url"].decode()
        self.assertTrue(dlr_url.startswith(self.srv.base + "/gateways/kannel1/receipt?ref=ref1&"))
        self.assertIn("type=%d", dlr_url)
        self.assertIn("answer=%A", dlr_url)
        self.assertTrue(self.channel.is_up)

    @async_test
    async def test_long_binary_is_segmented_one_id_and_one_dlr_ref_per_part(self) -> None:
        payload = bytes(range(256)) + bytes(44)
        result = await self.channel.submit(OutboundMessage("+447700900123", payload,
                                                           dest_port=2948, src_port=9200))
        self.assertEqual(result.message_ids, ("ref1", "ref2", "ref3"))
        rebuilt = b""
        for seq, req in enumerate(self.fake.requests, start=1):
            udh, rest = split_user_data(req.query["udh"])
            self.assertEqual(rest, b"")
            assert udh.concat is not None
            self.assertEqual((udh.concat.reference, udh.concat.total, udh.concat.seq),
                             (0x42, 3, seq))
            self.assertEqual(udh.dest_port, 2948)
            self.assertLessEqual(len(req.query["udh"]) + len(req.query["text"]), 140)
            self.assertIn(f"ref=ref{seq}&", req.query["dlr-url"].decode())
            rebuilt += req.query["text"]
        self.assertEqual(rebuilt, payload)

    @async_test
    async def test_ucs2_text_is_sent_with_coding_2_and_charset(self) -> None:
        await self.channel.submit(OutboundMessage("+447700900123", "Grüße".encode("utf-16-be"),
                                                  data_coding=DATA_CODING_UCS2,
                                                  request_receipt=False))
        q = self.fake.requests[0].query
        self.assertEqual((q["coding"], q["charset"], q["text"].decode("utf-16-be")),
                         (b"2", b"UTF-16BE", "Grüße"))
        self.assertNotIn("dlr-url", q)

    @async_test
    async def test_5xx_is_temporary_and_marks_the_channel_down(self) -> None:
        self.fake.answers.append((503, b"Sendsms temporarily unavailable"))
        with self.assertRaises(SubmitError) as caught:
            await self.channel.submit(OutboundMessage("+447700900123", b"x"))
        self.assertEqual((caught.exception.temporary, caught.exception.code), (True, 503))
        self.assertFalse(self.channel.is_up)

    @async_test
    async def test_4xx_is_permanent(self) -> None:
        self.fake.answers.append((403, b"Authorization failed for sendsms"))
        with self.assertRaises(SubmitError) as caught:
            await self.channel.submit(OutboundMessage("+447700900123", b"x"))
        self.assertEqual((caught.exception.temporary, caught.exception.code), (False, 403))
        self.assertTrue(self.channel.is_up)

    @async_test
    async def test_connection_refused_and_timeout_are_temporary(self) -> None:
        port = reactor.listenTCP(0, __import__("twisted.web.server", fromlist=["Site"]).Site(
            __import__("twisted.web.resource", fromlist=["Resource"]).Resource()),
            interface="127.0.0.1")
        closed_url = f"http://127.0.0.1:{port.getHost().port}/cgi-bin/sendsms"
        await port.stopListening()
        for config in (dataclasses.replace(self.config, send_url=closed_url),
                       dataclasses.replace(self.config, send_timeout_seconds=0.2)):
            self.fake.hang = config.send_url != closed_url
            channel = HttpSendChannel(config, reactor=reactor)
            self.addCleanup(channel.close)
            with self.assertRaises(SubmitError) as caught:
                await channel.submit(OutboundMessage("+447700900123", b"x"))
            self.assertTrue(caught.exception.temporary)

    @async_test
    async def test_too_many_parts_sends_nothing(self) -> None:
        with self.assertRaises(MessageTooLongError):
            await self.channel.submit(OutboundMessage("+447700900123", bytes(1000)))
        self.assertEqual(self.fake.requests, [])

    @async_test
    async def test_receipt_from_kannel_maps_back_to_the_submitted_part(self) -> None:
        result = await self.channel.submit(OutboundMessage("+447700900123", b"frame"))
        template = self.fake.requests[0].query["dlr-url"].decode()
        # What Kannel does with the dlr-url: fill in the escape codes, url-encoded.
        expanded = (template.replace("%d", "1").replace("%F", "0A1B2C")
                    .replace("%A", quote("id:0A1B2C stat:DELIVRD err:000"))
                    .replace("%i", "carrier_a").replace("%T", "1795330800"))
        code, _, body = await self.srv.client.fetch("GET", expanded)
        self.assertEqual((code, body), (200, b""))
        receipt, _ = self.srv.seen.receipts[0]
        self.assertEqual((receipt.message_id, receipt.status),
                         (result.message_ids[0], DeliveryStatus.DELIVERED))
        self.assertEqual(unquote(receipt.raw_text or ""), "id:0A1B2C stat:DELIVRD err:000")


class JasminSendTest(TestCase):
    def setUp(self) -> None:
        self.fake, base = start_fake(self, (200, b'Success "07033084-5cfd-4812-90a4-e4d24ffb6e3d"'))
        token = {"auth": "token", "secret": "jasmin-token-0123456789", "username": "",
                 "password": ""}
        self.srv = Listener(self, MemoryCallbackStore(),
                            HttpConfig(port=0, gateways=gateways(jasmin1=token)))
        self.config = dataclasses.replace(
            gateways(jasmin1=token)["jasmin1"], send_url=base + "/send", send_username="mepl",
            send_password="pw", dlr_url_base=self.srv.base, send_timeout_seconds=2)
        self.channel = HttpSendChannel(self.config, reactor=reactor)
        self.addCleanup(self.channel.close)

    @async_test
    async def test_send_posts_hex_content_with_dlr_fields_and_returns_jasmin_id(self) -> None:
        result = await self.channel.submit(OutboundMessage(
            "+447700900123", b"\x01\x02\xff", data_coding=DATA_CODING_BINARY))
        self.assertEqual(result.message_ids, ("07033084-5cfd-4812-90a4-e4d24ffb6e3d",))
        (req,) = self.fake.requests
        self.assertEqual((req.method, req.path, req.headers["content-type"]),
                         ("POST", "/send", "application/x-www-form-urlencoded"))
        f = req.form
        self.assertEqual((f["hex-content"], f["coding"], f["to"], f["username"]),
                         (b"0102ff", b"4", b"+447700900123", b"mepl"))
        self.assertEqual((f["dlr"], f["dlr-level"], f["dlr-method"]), (b"yes", b"3", b"POST"))
        self.assertEqual(f["dlr-url"].decode(), self.srv.base +
                         "/gateways/jasmin1/receipt?token=jasmin-token-0123456789")

    @async_test
    async def test_no_route_412_is_permanent_and_ports_are_refused_before_sending(self) -> None:
        self.fake.answers.append((412, b'Error "No route found"'))
        with self.assertRaises(SubmitError) as caught:
            await self.channel.submit(OutboundMessage("+447700900123", b"x"))
        self.assertFalse(caught.exception.temporary)
        with self.assertRaises(SubmitError) as caught:
            await self.channel.submit(OutboundMessage("+447700900123", b"x", dest_port=2948))
        self.assertFalse(caught.exception.temporary)
        self.assertEqual(len(self.fake.requests), 1)

    @async_test
    async def test_jasmin_dlr_posted_to_our_dlr_url_maps_to_the_returned_id(self) -> None:
        result = await self.channel.submit(OutboundMessage("+447700900123", b"x"))
        dlr_url = self.fake.requests[0].form["dlr-url"].decode()
        form = (f"id={result.message_ids[0]}&id_smsc=2567&message_status=DELIVRD&level=3"
                "&subdate=2611220738&donedate=2611220739&sub=001&dlvrd=001&err=000&text=x")
        code, _, body = await self.srv.client.fetch(
            "POST", dlr_url, form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((code, body), (200, b"ACK/Jasmin"))
        receipt, _ = self.srv.seen.receipts[0]
        self.assertEqual((receipt.message_id, receipt.status),
                         (result.message_ids[0], DeliveryStatus.DELIVERED))
