"""LISTEN/NOTIFY wake-ups: the database says when commands or inbound items are queued.

:class:`NotificationListener` holds one dedicated connection (outside the
pool) in autocommit mode, LISTENs on the channels it was given, and lets the
reactor watch the socket: when PostgreSQL sends a notification (at the commit
of whatever queued something, in any process) the channel's callback runs on
the reactor thread.  The callbacks are cheap wake-ups; the work itself is
still claimed from the tables, so a lost notification only costs latency:
polling stays as the fallback.  If the connection drops, the listener
reconnects with backoff.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

log = Logger()


@implementer(IReadDescriptor)
class NotificationListener:
    """Calls ``callbacks[channel]()`` on the reactor when ``channel`` is notified."""

    def __init__(self, engine: Engine, reactor: Any,
                 callbacks: Mapping[str, Callable[[], None]], *,
                 max_backoff_s: float = 30.0) -> None:
        self._engine = engine
        self._reactor = reactor
        self._callbacks = dict(callbacks)
        self._max_backoff_s = max_backoff_s
        self._backoff_s = 0.5
        self._conn: Any = None
        self._fd = -1
        self._stopped = True
        self._retry: Any = None
        self.received = 0

    # --------------------------------------------------------- lifecycle
    def start(self) -> Deferred[None]:
        """Connect and LISTEN (off the reactor thread); fires once listening."""
        self._stopped = False
        return self._connect()

    def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._drop()

    def _connect(self) -> Deferred[None]:
        # Connecting may block (a database far away or down): a short-lived daemon
        # thread does it, never the reactor thread, and never holds up exit.
        d: Deferred[Any] = Deferred()

        def work() -> None:
            try:
                conn = self._open()
            except Exception as exc:  # reported on the reactor thread
                self._reactor.callFromThread(d.errback, Failure(exc))
            else:
                self._reactor.callFromThread(d.callback, conn)

        threading.Thread(target=work, name="mepl-listen-connect", daemon=True).start()
        d.addCallbacks(self._listening, self._failed)
        return d

    def _open(self) -> Any:
        fairy = self._engine.raw_connection()
        fairy.detach()  # ours for good: never handed back to the pool
        conn: Any = fairy.dbapi_connection
        conn.autocommit = True
        cursor = conn.cursor()
        try:
            for channel in self._callbacks:
                cursor.execute(f'LISTEN "{channel}"')
        finally:
            cursor.close()
        return conn

    def _listening(self, conn: Any) -> None:
        if self._stopped:
            conn.close()
            return
        self._conn = conn
        # The reactor watches a duplicate of the socket: libpq closes its own when the
        # connection breaks, and the reactor must still be able to unregister ours.
        self._fd = os.dup(int(conn.fileno()))
        self._backoff_s = 0.5
        self._reactor.addReader(self)
        log.info("listening for {channels}", channels=", ".join(self._callbacks))
        # Anything queued while we were not listening: wake everyone once.
        self._fire(self._callbacks)

    def _failed(self, failure: Any) -> None:
        log.warn("cannot listen for notifications ({error}); polling meanwhile, retry in "
                 "{delay:.1f}s", error=failure.getErrorMessage(), delay=self._backoff_s)
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._stopped:
            return
        delay, self._backoff_s = self._backoff_s, min(self._backoff_s * 2, self._max_backoff_s)
        self._retry = self._reactor.callLater(delay, self._connect)

    def _drop(self) -> None:
        if self._conn is not None:
            self._reactor.removeReader(self)
            self._close()

    # --------------------------------------------------------- IReadDescriptor
    def fileno(self) -> int:
        """The connection's socket (-1 once closed)."""
        return self._fd

    def doRead(self) -> ConnectionLost | None:  # noqa: N802 - Twisted API
        """Read what PostgreSQL sent; run the callback of each channel notified."""
        try:
            self._conn.poll()
        except Exception as exc:  # broken: the reactor drops us, connectionLost reconnects
            log.warn("notification connection lost: {error}", error=str(exc))
            return ConnectionLost(str(exc))
        channels = {n.channel for n in self._conn.notifies}
        self._conn.notifies.clear()
        self.received += len(channels)
        self._fire({c: self._callbacks[c] for c in channels if c in self._callbacks})
        return None

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted API
        """The reactor dropped the descriptor: close the connection, and reconnect."""
        self._close()
        self._schedule_retry()

    def _close(self) -> None:
        conn, fd, self._conn, self._fd = self._conn, self._fd, None, -1
        if fd >= 0:
            os.close(fd)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                log.debug("notification connection already closed")

    def logPrefix(self) -> str:  # noqa: N802 - Twisted API
        """Name in Twisted's logs."""
        return "NotificationListener"

    @staticmethod
    def _fire(callbacks: Mapping[str, Callable[[], None]]) -> None:
        for callback in callbacks.values():
            callback()
