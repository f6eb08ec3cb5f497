"""The sans-I/O SMPP session: framing, sequences, bind state, window, timers.

Feed it bytes with :meth:`SmppSession.receive_data` and a ``now``; it returns
events and queues bytes to send (:meth:`SmppSession.pop_frames`).  It answers
enquire_link, unbind and garbage by itself, in the h2 buffered style.  The
same core serves the ESME (our binds) and the SMSC (the simulator).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable

from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import Pdu
from sms_gateway.smpp.session_events import (
    BindFailed,
    BindRequested,
    BindSucceeded,
    Event,
    Outstanding,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Unbound,
)

MAX_SEQUENCE = 0x7FFFFFFF
DEFAULT_MAX_COMMAND_LENGTH = 70_000


class Role(enum.Enum):
    """Which end of the link this session is."""

    ESME = "esme"
    SMSC = "smsc"


class State(enum.Enum):
    """Bind state (SMPP 3.4 section 2.2)."""

    OPEN = "open"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class WindowFullError(Exception):
    """No free slot in the window of outstanding requests."""


class NotBoundError(Exception):
    """The session is not bound: requests other than bind are refused."""


_HEAD = struct.Struct(">LLLL")
_AUTO_ANSWERED = frozenset((codec.ENQUIRE_LINK, codec.UNBIND))


class SmppSession:
    """One SMPP session over one connection (sans-I/O)."""

    def __init__(self, role: Role, *, window: int = 10, response_timeout: float = 10.0,
                 enquire_link_interval: float = 30.0,
                 max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH, now: float = 0.0,
                 trace: bool = False) -> None:
        self.role = role
        self.trace = trace
        self.tx_log: list[tuple[bytes, object]] = []
        self.rx_log: list[tuple[Pdu, object]] = []
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.max_command_length = max_command_length
        self.state = State.OPEN
        self.bind_command: int | None = None
        self.outstanding: dict[int, Outstanding] = {}
        self._windowed = 0
        self._seq = 0
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._last_rx = now
        self._enquire_seq: int | None = None
        self.should_close = False

    # ------------------------------------------------------------------ output
    def pop_frames(self) -> list[bytes]:
        """Take every frame queued for sending (one raw PDU each)."""
        out, self._out = self._out, []
        return out

    def _emit(self, raw: bytes, context: object = None) -> None:
        self._out.append(raw)
        if self.trace:
            self.tx_log.append((raw, context))

    def pop_trace(self) -> tuple[list[tuple[bytes, object]], list[tuple[Pdu, object]]]:
        """Take the trace: frames sent and PDUs received, each with its request context.

        Only filled when the session was created with ``trace=True``; call after
        :meth:`pop_frames`.
        """
        tx, rx = self.tx_log, self.rx_log
        self.tx_log, self.rx_log = [], []
        return tx, rx

    def data_to_send(self) -> bytes:
        """Take every queued byte."""
        return b"".join(self.pop_frames())

    @property
    def window_free(self) -> int:
        """How many more windowed requests may be sent now."""
        return self.window - self._windowed

    @property
    def is_bound(self) -> bool:
        """True once the bind succeeded and until unbinding starts."""
        return self.state is State.BOUND

    def next_sequence(self) -> int:
        """Allocate the next sequence number (1..2^31-1, wrapping, skipping in-use ones)."""
        while True:
            self._seq = self._seq + 1 if self._seq < MAX_SEQUENCE else 1
            if self._seq not in self.outstanding:
                return self._seq

    # ---------------------------------------------------------------- requests
    def bind(self, command_id: int, system_id: str, password: str, system_type: str,
             now: float) -> int:
        """ESME: send a bind request of kind ``command_id``."""
        if self.role is not Role.ESME or self.state is not State.OPEN:
            raise NotBoundError(f"cannot bind in state {self.state.value}")
        seq = self.next_sequence()
        self._emit(codec.encode_bind(command_id, seq, system_id, password, system_type))
        self._track(seq, command_id, now, None, windowed=False)
        self.state = State.BINDING
        self.bind_command = command_id
        return seq

    def send_request(self, command_id: int, body: bytes, now: float, context: object = None,
                     *, windowed: bool = True) -> int:
        """Send a request; raises WindowFullError or NotBoundError.  Returns its sequence."""
        if self.state is not State.BOUND:
            raise NotBoundError(f"cannot send {codec.command_name(command_id)} "
                                f"in state {self.state.value}")
        if windowed and self._windowed >= self.window:
            raise WindowFullError("window full")
        seq = self.next_sequence()
        raw = codec.HEADER.pack(16 + len(body), command_id, 0, seq) + body
        self._emit(raw, context)
        self._track(seq, command_id, now, context, windowed=windowed)
        return seq

    def _track(self, seq: int, command_id: int, now: float, context: object,
               *, windowed: bool) -> None:
        self.outstanding[seq] = Outstanding(seq, command_id, now, now + self.response_timeout,
                                            context, windowed)
        if windowed:
            self._windowed += 1

    def send_response(self, command_id: int, sequence: int, status: int = codec.ESME_ROK,
                      body: bytes = b"") -> None:
        """Answer a request the application received."""
        if self.state is State.CLOSED:
            return
        self._emit(codec.HEADER.pack(16 + len(body), command_id, status, sequence) + body)

    def unbind(self, now: float) -> int | None:
        """Start a graceful unbind; returns its sequence (None if not bound)."""
        if self.state is not State.BOUND:
            return None
        seq = self.next_sequence()
        self._emit(codec.encode_frame(codec.UNBIND, 0, seq))
        self._track(seq, codec.UNBIND, now, None, windowed=False)
        self.state = State.UNBINDING
        return seq

    def accept_bind(self, pdu: Pdu, system_id: str) -> None:
        """SMSC: accept the bind request ``pdu``."""
        body = system_id.encode("ascii") + b"\0"
        self.send_response(pdu.command_id | codec.RESPONSE_BIT, pdu.sequence, 0, body)
        self.state = State.BOUND
        self.bind_command = pdu.command_id

    def reject_bind(self, pdu: Pdu, status: int) -> None:
        """SMSC: refuse the bind request ``pdu`` with ``status``."""
        self.send_response(pdu.command_id | codec.RESPONSE_BIT, pdu.sequence, status, b"\0")
        self.state = State.OPEN

    def abandon(self) -> list[Outstanding]:
        """The connection is gone: close and return every unanswered request."""
        self.state = State.CLOSED
        lost = list(self.outstanding.values())
        self.outstanding.clear()
        self._windowed = 0
        return lost

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes, now: float, *, limit: int | None = None) -> list[Event]:
        """Feed received bytes; returns the events they complete.

        With ``limit``, at most that many PDUs are framed; the rest stays
        buffered (see :attr:`has_frame`) until a later call, which may pass no data.
        """
        if self.state is State.CLOSED:
            return []
        self._last_rx = now
        buf = self._buffer
        buf += data
        events: list[Event] = []
        pos = 0
        end = len(buf)
        framed = 0
        while end - pos >= 4 and (limit is None or framed < limit):
            framed += 1
            (length,) = struct.unpack_from(">L", buf, pos)
            if length < 16 or length > self.max_command_length:
                seq = struct.unpack_from(">L", buf, pos + 12)[0] if end - pos >= 16 else 0
                self._emit(codec.encode_frame(codec.GENERIC_NACK, codec.ESME_RINVCMDLEN,
                                                    seq))
                bad = bytes(buf[pos : pos + 16])
                events.append(ProtocolError(f"invalid command_length {length}", True, bad))
                if self.trace and len(bad) == 16:
                    _, bad_cid, bad_status, bad_seq = _HEAD.unpack(bad)
                    self.rx_log.append((Pdu(bad_cid, bad_status, bad_seq, b"", bad), None))
                self._close()
                return events
            if end - pos < length:
                break
            raw = bytes(buf[pos : pos + length])
            pos += length
            _, command_id, status, seq = _HEAD.unpack_from(raw)
            self._dispatch(Pdu(command_id, status, seq, raw[16:], raw), events)
            if self.should_close:
                break
        del buf[:pos]
        return events

    @property
    def has_frame(self) -> bool:
        """True when a whole PDU (or a bad command_length) waits in the receive buffer."""
        buf = self._buffer
        if len(buf) < 4 or self.state is State.CLOSED:
            return False
        length: int = struct.unpack_from(">L", buf)[0]
        return length < 16 or length > self.max_command_length or len(buf) >= length

    def _dispatch(self, pdu: Pdu, events: list[Event]) -> None:
        if self.trace:
            request = self.outstanding.get(pdu.sequence) if pdu.is_response else None
            self.rx_log.append((pdu, request.context if request is not None else None))
        if pdu.command_id & codec.RESPONSE_BIT:
            self._on_response(pdu, events)
            return
        cid = pdu.command_id
        if cid not in codec.COMMAND_NAMES:
            self._emit(codec.encode_frame(codec.GENERIC_NACK, codec.ESME_RINVCMDID,
                                                pdu.sequence))
            events.append(ProtocolError(f"unknown command_id 0x{cid:08x}", False, pdu.raw))
            return
        if cid in _AUTO_ANSWERED:
            self._auto_answer(pdu, events)
            return
        if self.role is Role.SMSC and cid in codec.BIND_COMMANDS:
            if self.state is State.OPEN:
                self.state = State.BINDING
                events.append(BindRequested(pdu))
            else:
                self.send_response(cid | codec.RESPONSE_BIT, pdu.sequence, codec.ESME_RALYBND,
                                   b"\0")
            return
        if self.state is not State.BOUND or not self._may_receive(cid):
            self.send_response(cid | codec.RESPONSE_BIT, pdu.sequence, codec.ESME_RINVBNDSTS)
            events.append(ProtocolError(f"{pdu.name} in state {self.state.value}", False,
                                        pdu.raw))
            return
        events.append(RequestReceived(pdu))

    def _may_receive(self, cid: int) -> bool:
        if self.role is Role.ESME:
            return cid != codec.SUBMIT_SM and self.bind_command != codec.BIND_TRANSMITTER
        if cid == codec.SUBMIT_SM:
            return self.bind_command != codec.BIND_RECEIVER
        return True

    def _auto_answer(self, pdu: Pdu, events: list[Event]) -> None:
        if pdu.command_id == codec.ENQUIRE_LINK:
            self.send_response(codec.ENQUIRE_LINK_RESP, pdu.sequence)
            return
        # unbind
        self.send_response(codec.UNBIND_RESP, pdu.sequence)
        events.append(Unbound(by_peer=True))
        self._close()

    def _on_response(self, pdu: Pdu, events: list[Event]) -> None:
        request = self.outstanding.pop(pdu.sequence, None)
        if request is None:
            events.append(ProtocolError(f"{pdu.name} for unknown sequence {pdu.sequence}",
                                        False, pdu.raw))
            return
        if request.windowed:
            self._windowed -= 1
        if request.command_id == codec.ENQUIRE_LINK:
            self._enquire_seq = None
            return
        if request.command_id in codec.BIND_COMMANDS and self.state is State.BINDING:
            if pdu.status == codec.ESME_ROK and pdu.command_id != codec.GENERIC_NACK:
                self.state = State.BOUND
                events.append(BindSucceeded(pdu))
            else:
                self.state = State.OPEN
                events.append(BindFailed(pdu.status or codec.ESME_RBINDFAIL))
            return
        if request.command_id == codec.UNBIND:
            events.append(Unbound(by_peer=False))
            self._close()
            return
        events.append(ResponseReceived(pdu, request))

    def _close(self) -> None:
        self.state = State.CLOSED
        self.should_close = True
        self._buffer.clear()

    # ------------------------------------------------------------------ timers
    def tick(self, now: float) -> list[Event]:
        """Expire overdue requests and send enquire_link when the link was idle."""
        events: list[Event] = []
        expired: list[Outstanding] = []
        for request in self.outstanding.values():
            if request.deadline > now:
                break
            expired.append(request)
        for request in expired:
            del self.outstanding[request.sequence]
            if request.windowed:
                self._windowed -= 1
            if request.command_id in (codec.ENQUIRE_LINK, codec.UNBIND) or \
                    request.command_id in codec.BIND_COMMANDS:
                reason = f"no {codec.command_name(request.command_id)}_resp in time"
                events.append(ProtocolError(reason, True))
                self._close()
            else:
                events.append(ResponseTimedOut(request))
        if (self.state is State.BOUND and self._enquire_seq is None
                and now - self._last_rx >= self.enquire_link_interval):
            self._enquire_seq = self.send_request(codec.ENQUIRE_LINK, b"", now, windowed=False)
        return events

    def shift_deadlines(self, by: float) -> None:
        """Push every response deadline and the keepalive ``by`` seconds later.

        For time spent not reading: an answer may have been waiting unread.
        """
        if by <= 0:
            return
        for request in self.outstanding.values():
            request.deadline += by
        self._last_rx += by

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing scheduled)."""
        times: list[float] = []
        for request in self.outstanding.values():
            times.append(request.deadline)
            break
        if self.state is State.BOUND and self._enquire_seq is None:
            times.append(self._last_rx + self.enquire_link_interval)
        return min(times) if times else None


def frames_summary(frames: Iterable[bytes]) -> list[tuple[str, int, int]]:
    """``(command name, status, sequence)`` of raw frames, for logs and tests."""
    out = []
    for raw in frames:
        _, cid, status, seq = _HEAD.unpack_from(raw)
        out.append((codec.command_name(cid), status, seq))
    return out


__all__ = [
    "BindFailed", "BindRequested", "BindSucceeded", "Event", "NotBoundError", "Outstanding",
    "ProtocolError", "RequestReceived", "ResponseReceived", "ResponseTimedOut", "Role",
    "SmppSession", "State", "Unbound", "WindowFullError", "frames_summary",
]
