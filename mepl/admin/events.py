"""The live event stream: ``GET /v1/events`` as server-sent events.

Events are read from the tables (``command_events`` and ``security_events``),
so a stream sees what every MEPL process sharing the database did.  Each
event's ``id`` is the compound cursor ``c<last command event>,s<last
security event>``: a client that reconnects with it as ``Last-Event-ID``
gets exactly what it has not seen.  A notification on ``mepl_events``
(migration 0005) wakes every stream at once; each also polls every
``poll_s``.  A comment ``: keep-alive`` goes out every ``keepalive_s``.

Back-pressure: the stream is a streaming producer of its request; while the
transport's buffer is full (``pauseProducing``) no further events are read,
and a client that stays paused longer than ``max_paused_s`` is dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer  # type: ignore[import-untyped]

from blobstore.pool import Clock, DelayedCall, InteractionRunner
from mepl.app.history import LiveEvents, event_cursor_txn, live_events_txn

log = Logger()

BATCH = 500
_CURSOR = re.compile(r"^\s*(?:c(\d+))?\s*,?\s*(?:s(\d+))?\s*$")


def parse_last_event_id(value: str | None) -> tuple[int | None, int | None]:
    """``c123,s45`` (either part may be missing) to (123, 45); (None, None) if unreadable."""
    if not value:
        return None, None
    found = _CURSOR.match(value)
    if found is None:
        return None, None
    c, s = found.groups()
    return (int(c) if c is not None else None, int(s) if s is not None else None)


class EventHub:
    """The streams open in this process, woken together when events are notified."""

    def __init__(self) -> None:
        self.streams: set[EventStream] = set()

    def wake(self) -> None:
        """New events may be in the tables: every stream reads now."""
        for stream in list(self.streams):
            stream.wake()


@implementer(IPushProducer)
class EventStream:
    """One client's stream (see the module docstring)."""

    def __init__(self, request: Any, *, runner: InteractionRunner, clock: Clock,
                 hub: EventHub, device_id: int | None,
                 cursor: tuple[int | None, int | None],
                 keepalive_s: float = 15.0, poll_s: float = 1.0,
                 max_paused_s: float = 60.0, batch: int = BATCH) -> None:
        self._request = request
        self._runner = runner
        self._clock = clock
        self._hub = hub
        self._device_id = device_id
        self._cursor = cursor
        self._keepalive_s = keepalive_s
        self._poll_s = poll_s
        self._max_paused_s = max_paused_s
        self._batch = batch
        self.paused = False
        self.stopped = False
        self.sent = 0
        self._reading = False
        self._again = False
        self._poll: DelayedCall | None = None
        self._keepalive: DelayedCall | None = None
        self._drop: DelayedCall | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Send the headers, register as the request's producer and start reading."""
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(lambda _: self.stop())
        self._hub.streams.add(self)
        self._keepalive = self._clock.callLater(self._keepalive_s, self._keep_alive)
        c, s = self._cursor
        if c is None or s is None:
            d = self._runner.run_interaction("events cursor", event_cursor_txn)
            d.addCallback(self._start_at)
            d.addErrback(self._failed)
        else:
            self._open()

    def _start_at(self, newest: tuple[int, int]) -> None:
        c, s = self._cursor
        self._cursor = (newest[0] if c is None else c, newest[1] if s is None else s)
        self._open()

    def _open(self) -> None:
        # The headers go out with this first write, once the stream's starting
        # point is fixed: a client that sees the stream open (its "connected")
        # receives every event committed after that.
        if not self.stopped:
            self._request.write(b": stream open\n\n")
        self._read()

    def stop(self) -> None:
        """The client left (or was dropped): stop reading and every timer."""
        if self.stopped:
            return
        self.stopped = True
        self._hub.streams.discard(self)
        for call in (self._poll, self._keepalive, self._drop):
            if call is not None and call.active():
                call.cancel()

    # ------------------------------------------------------------ IPushProducer
    def pauseProducing(self) -> None:  # noqa: N802 - Twisted API
        """The transport is full: read nothing more; drop the client if it stays so."""
        if self.paused or self.stopped:
            return
        self.paused = True
        self._drop = self._clock.callLater(self._max_paused_s, self._drop_client)

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted API
        """The transport drained: read again."""
        if not self.paused:
            return
        self.paused = False
        if self._drop is not None and self._drop.active():
            self._drop.cancel()
        self._drop = None
        self.wake()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted API
        """The connection is going away."""
        self.stop()

    # ------------------------------------------------------------ reading
    def wake(self) -> None:
        """Read now (or as soon as the read in progress or the pause ends)."""
        if self.stopped:
            return
        if self._reading or self.paused or None in self._cursor:
            self._again = True
            return
        self._read()

    def _read(self) -> None:
        if self.stopped or self.paused:
            self._again = True
            return
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._reading, self._again = True, False
        c, s = self._cursor
        assert c is not None and s is not None
        d = self._runner.run_interaction("live events", live_events_txn, c, s,
                                         device_id=self._device_id, limit=self._batch)
        d.addCallback(self._got)
        d.addErrback(self._failed)

    def _got(self, events: LiveEvents) -> None:
        self._reading = False
        if self.stopped:
            return
        c, s = self._cursor
        assert c is not None and s is not None
        items: list[tuple[Any, str, int, int, dict[str, Any]]] = []
        for event in events.commands:
            items.append((event.at, "c", event.id, 0, event.to_json()))
        for alert in events.alerts:
            data = alert.to_json()
            items.append((alert.at, "s", alert.id, 1, data))
        items.sort(key=lambda item: (item[0], item[3], item[2]))
        chunks = []
        for _, kind, event_id, _, data in items:
            if kind == "c":
                c = max(c, event_id)
            else:
                s = max(s, event_id)
            name = "command" if kind == "c" else "alert"
            chunks.append(f"id: c{c},s{s}\nevent: {name}\ndata: "
                          f"{json.dumps(data, ensure_ascii=False, separators=(',', ':'))}"
                          "\n\n")
        self._cursor = (c, s)
        if chunks:
            self.sent += len(chunks)
            self._request.write("".join(chunks).encode("utf-8"))
        more = len(events.commands) >= self._batch or len(events.alerts) >= self._batch
        if (more or self._again) and not self.paused:
            self._clock.callLater(0, self._read)
        elif more:
            self._again = True
        else:
            self._poll = self._clock.callLater(self._poll_s, self.wake)

    def _failed(self, failure: Any) -> None:
        self._reading = False
        if self.stopped:
            return
        log.warn("live events: cannot read ({error}); retrying", error=failure.getErrorMessage())
        self._poll = self._clock.callLater(self._poll_s, self.wake)

    def _keep_alive(self) -> None:
        if self.stopped:
            return
        if not self.paused:
            self._request.write(b": keep-alive\n\n")
        self._keepalive = self._clock.callLater(self._keepalive_s, self._keep_alive)

    def _drop_client(self) -> None:
        if self.stopped or not self.paused:
            return
        log.info("live events: client paused over {limit}s, dropped", limit=self._max_paused_s)
        transport = getattr(getattr(self._request, "channel", None), "transport", None)
        self.stop()
        if transport is not None:
            abort = getattr(transport, "abortConnection", None) or transport.loseConnection
            abort()
