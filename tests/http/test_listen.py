"""Several listeners (MEPL processes) can share one callback port with reuse_port."""

from __future__ import annotations

import socket
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from sms_gateway.http.listen import CallbackListener


class Hello(Resource):
    isLeaf = True  # noqa: N815 - Twisted API

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name

    def render_GET(self, request: Any) -> bytes:
        return self.name


class ListenerTests(TestCase):
    @inlineCallbacks
    def test_two_listeners_share_a_port_with_reuse_port_and_both_serve(self) -> Any:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        listeners = [CallbackListener(reactor, Site(Hello(name)), host="127.0.0.1", port=port,
                                      reuse_port=True) for name in (b"one", b"two")]
        for listener in listeners:
            listener.startService()
            self.addCleanup(listener.stopService)
        self.assertEqual({lst.port.getHost().port for lst in listeners}, {port})
        response = yield treq.get(f"http://127.0.0.1:{port}/",
                                  pool=HTTPConnectionPool(reactor, persistent=False))
        self.assertIn((yield treq.content(response)), (b"one", b"two"))

    def test_without_reuse_port_a_second_listener_on_the_port_is_refused(self) -> None:
        first = CallbackListener(reactor, Site(Hello(b"x")), host="127.0.0.1", port=0)
        first.startService()
        self.addCleanup(first.stopService)
        taken = first.port.getHost().port
        second = CallbackListener(reactor, Site(Hello(b"y")), host="127.0.0.1", port=taken)
        self.assertRaises(CannotListenError, second.startService)
