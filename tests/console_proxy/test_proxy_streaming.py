"""Server-sent events pass through as they come; upstream down; the body size limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests.console_proxy.harness import Chunks, ProxyHarness

pytestmark = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")


def run(coro: Any) -> defer.Deferred[Any]:
    return defer.Deferred.fromCoroutine(coro)


class StreamingTest(unittest.TestCase):
    timeout = 30

    def test_events_reach_the_client_before_the_upstream_finishes(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            upstream_request = h.api.next_stream()
            response = await h.client("wes", "viewer").request("GET", "/v1/events")
            self.assertEqual(response.code, 200)
            self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                             [b"text/event-stream"])
            chunks = Chunks()
            response.deliverBody(chunks)
            stream = await upstream_request
            await chunks.wait_for(1)                       # ": hello"
            stream.write(b'id: c1\nevent: command\ndata: {"command_id": 1}\n\n')
            await chunks.wait_for(2)                       # while the upstream is still open
            self.assertFalse(stream.finished)
            stream.write(b'id: c2\nevent: command\ndata: {"command_id": 2}\n\n')
            await chunks.wait_for(3)
            stream.finish()
            await chunks.lost
            self.assertEqual(b"".join(chunks.chunks).count(b"event: command"), 2)
        return run(go())

    def test_client_disconnect_cancels_the_upstream_stream(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            upstream_request = h.api.next_stream()
            response = await h.client("xena", "viewer").request("GET", "/v1/events")
            chunks = Chunks()
            response.deliverBody(chunks)
            await upstream_request
            await chunks.wait_for(1)
            chunks.transport.stopProducing()               # the console goes away
            for _ in range(400):
                if h.api.stream_closed:
                    break
                await task.deferLater(reactor, 0.005, lambda: None)
            self.assertEqual(h.api.stream_closed, [h.api.forwarded[0].claims["rid"]])
        return run(go())

    def test_upstream_down_answers_502(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self).start()
            await h.api_port.stopListening()
            await h.service.upstream.close()
            h.socket.unlink(missing_ok=True)
            code, headers, body = await h.client("yan", "viewer").fetch("GET", "/v1/whoami")
            self.assertEqual(code, 502)
            error = json.loads(body)["error"]
            self.assertEqual(error["code"], "upstream_unavailable")
            self.assertTrue(error["hint"])
            self.assertEqual(len(headers.getRawHeaders(b"x-request-id")[0]), 32)
        return run(go())

    def test_a_body_over_the_limit_is_refused_with_413_and_not_forwarded(self) -> Any:
        async def go() -> None:
            h = await ProxyHarness(self, proxy={"max_body_bytes": 1000}).start()
            admin = h.client("zed", "admin")
            code, _, body = await admin.fetch("POST", "/v1/devices", b"{" + b" " * 2000 + b"}")
            self.assertEqual(code, 413)
            self.assertEqual(json.loads(body)["error"]["field"], "body")
            code, _, _ = await admin.fetch("POST", "/v1/devices", b'{"imei": "1"}')
            self.assertEqual(code, 201)
            self.assertEqual([g.body for g in h.api.forwarded], [b'{"imei": "1"}'])
        return run(go())
