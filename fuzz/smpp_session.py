"""SMPP framing: arbitrary byte streams, split at arbitrary points, into the sans-I/O session.

Contract (:class:`sms_gateway.smpp.session.SmppSession`): ``receive_data``
never raises, whatever the bytes; it returns only session events; every frame
it queues is a whole PDU; the receive buffer never holds more than one
unfinished PDU (below ``max_command_length``) once a call without ``limit``
returns; and feeding the stream in pieces (with any ``limit``) gives the same
events and answers as feeding it at once.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._common import Reader, instrumented, run

with instrumented(__name__ == "__main__"):
    from sms_gateway.smpp import codec
    from sms_gateway.smpp.records import make_record, record_trace
    from sms_gateway.smpp.session import Role, SmppSession, State
    from sms_gateway.smpp.session_events import (
        BindFailed,
        BindRequested,
        BindSucceeded,
        ProtocolError,
        RequestReceived,
        ResponseReceived,
        ResponseTimedOut,
        Unbound,
    )

TARGET = "smpp_session"
EVENTS = (BindFailed, BindRequested, BindSucceeded, ProtocolError, RequestReceived,
          ResponseReceived, ResponseTimedOut, Unbound)
BIND_MODES = (codec.BIND_TRANSCEIVER, codec.BIND_TRANSMITTER, codec.BIND_RECEIVER)
MAX_LENGTHS = (codec.HEADER_LEN, 64, 300, 70_000)


def make_session(role: Role, bound: bool, mode: int, max_length: int, *,
                 requests: int) -> SmppSession:
    """A session in the state the header bytes asked for, with ``requests`` outstanding."""
    session = SmppSession(role, window=4, trace=True)
    if bound and role is Role.ESME:
        seq = session.bind(mode, "esme", "pw", "", 0.0)
        resp = codec.encode_frame(mode | codec.RESPONSE_BIT, 0, seq, b"smsc\0")
        events = session.receive_data(resp, 0.0)
        assert isinstance(events[0], BindSucceeded), events
    elif bound:
        raw = codec.encode_bind(mode, 1, "esme", "pw")
        (event,) = session.receive_data(raw, 0.0)
        assert isinstance(event, BindRequested), event
        session.accept_bind(event.pdu, "smsc")
    if session.is_bound:
        command = codec.DELIVER_SM if role is Role.SMSC else codec.SUBMIT_SM
        for _ in range(requests):
            if session.window_free:
                session.send_request(command, b"\0" * 17, 0.0)
    session.pop_frames()
    session.pop_trace()
    session.max_command_length = max_length
    return session


def summary(events: list[object]) -> list[tuple[object, ...]]:
    """Events as comparable tuples (a fatal bad length is compared by reason only: how
    much of its header had arrived depends on where the stream was cut)."""
    out: list[tuple[object, ...]] = []
    for event in events:
        assert isinstance(event, EVENTS), event
        if isinstance(event, ProtocolError):
            out.append(("error", event.reason, event.fatal,
                        b"" if event.reason.startswith("invalid command_length") else event.raw))
        elif isinstance(event, (RequestReceived, BindSucceeded, BindRequested)):
            out.append((type(event).__name__, event.pdu.raw))
        elif isinstance(event, ResponseReceived):
            out.append(("response", event.pdu.raw, event.request.sequence))
        else:
            out.append((repr(event),))
    return out


def frames(session: SmppSession) -> list[bytes]:
    """The queued frames, each checked to be one whole PDU."""
    out = session.pop_frames()
    for raw in out:
        assert len(raw) >= codec.HEADER_LEN, raw
        (length,) = struct.unpack_from(">L", raw)
        assert length == len(raw), (length, raw)
    # A generic_nack for a bad command_length carries the sequence only when it had arrived.
    return [raw[:12] if raw[4:12] == struct.pack(">LL", codec.GENERIC_NACK,
                                                 codec.ESME_RINVCMDLEN) else raw
            for raw in out]


def check_state(session: SmppSession, *, drained: bool) -> None:
    """Bounded buffer and window bookkeeping."""
    assert 0 <= session._windowed <= session.window
    if session.state is State.CLOSED:
        assert not session._buffer
    elif drained:
        assert len(session._buffer) < max(session.max_command_length, 4)


def one_input(data: bytes) -> None:
    """Feed one stream twice (at once, and in pieces) and compare."""
    r = Reader(data)
    head = r.u8()
    role = Role.SMSC if head & 1 else Role.ESME
    bound = bool(head & 2)
    mode = BIND_MODES[(head >> 2) % 3]
    max_length = MAX_LENGTHS[(head >> 4) % 4]
    requests = r.u8() % 5
    cuts = sorted(r.u16() for _ in range(r.u8() % 8))
    limit = (None, 1, 2, 3)[r.u8() % 4]
    stream = r.rest()

    whole = make_session(role, bound, mode, max_length, requests=requests)
    whole_events = whole.receive_data(stream, 1.0)
    check_state(whole, drained=True)
    whole_frames = frames(whole)

    pieces = make_session(role, bound, mode, max_length, requests=requests)
    piece_events: list[object] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        cut = min(max(cut, start), len(stream))
        piece_events += pieces.receive_data(stream[start:cut], 1.0, limit=limit)
        start = cut
        while pieces.has_frame:
            piece_events += pieces.receive_data(b"", 1.0, limit=limit)
        check_state(pieces, drained=True)
    assert summary(piece_events) == summary(list(whole_events))
    assert frames(pieces) == whole_frames

    records: list[object] = []
    record_trace(pieces, records.append, "fuzz", 1.0)
    for event in (*pieces.tick(1e9), *whole.tick(1e9)):
        assert isinstance(event, EVENTS), event
    if len(stream) >= codec.HEADER_LEN:
        make_record("in", "fuzz", stream, 1.0)


def seeds() -> list[bytes]:
    """Near-valid streams: real PDUs, for each role and bind state."""
    deliver = codec.encode_frame(codec.DELIVER_SM, 0, 7, codec.encode_short_message(
        codec.ShortMessage(source_addr="447700900123", destination_addr="84433",
                           short_message=b"hello")))
    submit_resp = codec.encode_frame(codec.SUBMIT_SM_RESP, 0, 2, b"abc123\0")
    enquire = codec.encode_frame(codec.ENQUIRE_LINK, 0, 9)
    unbind = codec.encode_frame(codec.UNBIND, 0, 10)
    bind = codec.encode_bind(codec.BIND_TRANSCEIVER, 1, "esme", "pw")
    out = []
    for head in (0x02, 0x03, 0x00, 0x01, 0x32):
        out.append(bytes((head, 2, 2, 0, 5, 0, 40, 0)) + deliver + submit_resp + enquire)
        out.append(bytes((head, 1, 0, 0)) + bind + deliver + unbind)
        out.append(bytes((head, 0, 1, 0, 3, 1)) + b"\x00\x00\x00\x05" + deliver)
    return out


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
