"""The Twisted adapter: moves bytes between a transport and an :class:`SmppSession`.

It owns no policy: events go to a :class:`SessionHandler` (the bind, or the
simulator's connection handler) in one batch per ``dataReceived``, then the
queued frames are written in one ``writeSequence``.  Timers come from the
injected clock (``Clock``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from sms_gateway.smpp.clock import Clock, DelayedCall
from sms_gateway.smpp.session import Event, Outstanding, SmppSession


class SessionHandler(TypingProtocol):
    """What the adapter reports to."""

    def session_started(self, proto: SmppProtocol) -> None:
        """The connection is up (an ESME handler starts its bind here)."""

    def session_events(self, proto: SmppProtocol, events: list[Event]) -> None:
        """Events from one batch of received bytes or one timer tick."""

    def session_ended(self, proto: SmppProtocol, lost: list[Outstanding],
                      reason: Failure) -> None:
        """The connection is gone; ``lost`` are requests that never got a response."""


class SmppProtocol(Protocol):
    """One SMPP connection driven by a sans-I/O session."""

    def __init__(self, session: SmppSession, handler: SessionHandler, clock: Clock,
                 on_flush: Callable[[SmppSession], None] | None = None) -> None:
        self.session = session
        self.handler = handler
        self.clock = clock
        self.on_flush = on_flush
        self.connected_now = False
        self._timer: DelayedCall | None = None
        self._timer_at = 0.0

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        """Tell the handler, then send whatever it queued (the bind)."""
        self.connected_now = True
        self.handler.session_started(self)
        self.flush()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        """Feed the session; hand the events over; write the answers."""
        events = self.session.receive_data(data, self.clock.seconds())
        if events:
            self.handler.session_events(self, events)
        self.flush()

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        """Cancel timers and report the requests that will never be answered."""
        self.connected_now = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        lost = self.session.abandon()
        if reason is None:
            reason = Failure(ConnectionError("connection lost"))  # type: ignore[no-untyped-call]
        self.handler.session_ended(self, lost, reason)

    def flush(self) -> None:
        """Write queued frames, close if the session says so, and re-arm the timer."""
        frames = self.session.pop_frames()
        if self.on_flush is not None and self.session.trace:
            self.on_flush(self.session)
        if self.transport is None or not self.connected_now:
            return
        transport = cast(Any, self.transport)
        if frames:
            transport.writeSequence(frames)
        if self.session.should_close:
            transport.loseConnection()
            return
        self._arm()

    def _arm(self) -> None:
        deadline = self.session.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer.active():
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        delay = max(0.0, deadline - self.clock.seconds())
        self._timer_at = deadline
        self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        events = self.session.tick(self.clock.seconds())
        if events:
            self.handler.session_events(self, events)
        self.flush()

    def abort(self) -> None:
        """Drop the connection at once (no unbind)."""
        if self.transport is not None:
            cast(Any, self.transport).abortConnection()
