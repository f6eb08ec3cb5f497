"""The Twisted adapter: moves bytes between a transport and an :class:`SmppSession`.

It owns no policy: events go to a :class:`SessionHandler` (the bind, or the
simulator's connection handler) in one batch per ``dataReceived``, then the
queued frames are written in one ``writeSequence``.  Timers come from the
injected clock (``Clock``).  An optional ``gate`` says how many PDUs may be
read now; when it says none, the adapter stops reading from the transport
(``pauseProducing``) until :meth:`SmppProtocol.resume_reading`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import ITCPTransport
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


def no_delay(transport: object) -> bool:
    """Turn Nagle's algorithm off on the TCP connection under ``transport`` (TLS or not).

    Writes are already coalesced per reactor turn (:meth:`SmppProtocol.flush`);
    with Nagle on, a small answer written while the previous segment is still
    unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux), so a
    lone deliver_sm_resp could stall a window.  Returns True if it was set.
    """
    for _ in range(3):  # TCP, or TLS over TCP, perhaps wrapped once more
        if ITCPTransport.providedBy(transport):
            cast(Any, transport).setTcpNoDelay(True)
            return True
        transport = getattr(transport, "transport", None)
        if transport is None:
            break
    return False


class SmppProtocol(Protocol):
    """One SMPP connection driven by a sans-I/O session."""

    def __init__(self, session: SmppSession, handler: SessionHandler, clock: Clock,
                 on_flush: Callable[[SmppSession], None] | None = None,
                 gate: Callable[[], int] | None = None) -> None:
        self.session = session
        self.handler = handler
        self.clock = clock
        self.on_flush = on_flush
        self.gate = gate
        self.connected_now = False
        self.reading_paused = False
        self._paused_at = 0.0
        self._reading = False
        self._timer: DelayedCall | None = None
        self._timer_at = 0.0

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        """Tell the handler, then send whatever it queued (the bind)."""
        self.connected_now = True
        no_delay(self.transport)
        self.handler.session_started(self)
        self.flush()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        """Feed the session; hand the events over; write the answers."""
        if self.gate is None:
            events = self.session.receive_data(data, self.clock.seconds())
            if events:
                self.handler.session_events(self, events)
            self.flush()
            return
        self._read_gated(data)

    def _read_gated(self, data: bytes) -> None:
        """Frame as many PDUs as the gate allows, in rounds; stop reading when it allows none.

        Each round's records are traced before its events are handled, so the
        gate and the handler count them at once.
        """
        session = self.session
        if self._reading:  # re-entered from our own handling: buffer, the outer loop reads it
            session.receive_data(data, self.clock.seconds(), limit=0)
            return
        assert self.gate is not None
        self._reading = True
        try:
            while True:
                limit = self.gate()
                events = session.receive_data(data, self.clock.seconds(), limit=limit)
                data = b""
                if self.on_flush is not None and session.trace:
                    self.on_flush(session)
                if events:
                    self.handler.session_events(self, events)
                self.flush()
                if limit == 0 or not session.has_frame or not self.connected_now:
                    break
        finally:
            self._reading = False
        if self.connected_now and self.gate() == 0:
            self._pause_reading()

    def _pause_reading(self) -> None:
        if self.reading_paused or self.transport is None:
            return
        self.reading_paused = True
        self._paused_at = self.clock.seconds()
        cast(Any, self.transport).pauseProducing()

    def resume_reading(self) -> None:
        """Read again: first the PDUs already buffered, then from the transport.

        Time spent not reading does not count against the peer: response
        deadlines and the keepalive move later by that much.
        """
        if not self.reading_paused or not self.connected_now:
            return
        self.reading_paused = False
        self.session.shift_deadlines(self.clock.seconds() - self._paused_at)
        self._read_gated(b"")  # may stop reading again at once
        if not self.reading_paused and self.transport is not None:
            cast(Any, self.transport).resumeProducing()

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
        if self.reading_paused:
            return  # answers may be waiting unread; resume_reading re-arms the timer
        events = self.session.tick(self.clock.seconds())
        if events:
            self.handler.session_events(self, events)
        self.flush()

    def abort(self) -> None:
        """Drop the connection at once (no unbind)."""
        if self.transport is not None:
            cast(Any, self.transport).abortConnection()
