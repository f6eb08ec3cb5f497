from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.smpp import codec
from sms_gateway.smpp.session import (
    BindFailed,
    BindSucceeded,
    NotBoundError,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Role,
    SmppSession,
    State,
    Unbound,
    WindowFullError,
    frames_summary,
)


def frame(command_id: int, seq: int, body: bytes = b"", status: int = 0) -> bytes:
    return codec.encode_frame(command_id, status, seq, body)


def bound_esme(window: int = 10, **kw: float) -> SmppSession:
    s = SmppSession(Role.ESME, window=window, **kw)
    seq = s.bind(codec.BIND_TRANSCEIVER, "esme", "pw", "", 0.0)
    s.pop_frames()
    events = s.receive_data(frame(codec.BIND_TRANSCEIVER | codec.RESPONSE_BIT, seq, b"sim\0"), 0.0)
    assert isinstance(events[0], BindSucceeded)
    return s


def test_bind_request_goes_out_and_bind_resp_makes_the_session_bound() -> None:
    s = SmppSession(Role.ESME)
    seq = s.bind(codec.BIND_TRANSMITTER, "esme", "pw", "vma", 0.0)
    [raw] = s.pop_frames()
    assert frames_summary([raw]) == [("bind_transmitter", 0, seq)]
    assert codec.decode_bind(raw[16:]).system_type == "vma"
    assert s.state is State.BINDING
    events = s.receive_data(frame(codec.BIND_TRANSMITTER | codec.RESPONSE_BIT, seq, b"x\0"), 1.0)
    assert [type(e) for e in events] == [BindSucceeded]
    assert s.is_bound


def test_refused_bind_reports_status_and_returns_to_open() -> None:
    s = SmppSession(Role.ESME)
    seq = s.bind(codec.BIND_TRANSCEIVER, "esme", "bad", "", 0.0)
    events = s.receive_data(frame(codec.BIND_TRANSCEIVER | codec.RESPONSE_BIT, seq, b"\0",
                                  codec.ESME_RINVPASWD), 0.0)
    assert events == [BindFailed(codec.ESME_RINVPASWD)]
    assert s.state is State.OPEN


def test_submit_before_bind_is_refused_locally() -> None:
    s = SmppSession(Role.ESME)
    with pytest.raises(NotBoundError):
        s.send_request(codec.SUBMIT_SM, b"", 0.0)


def test_deliver_sm_before_bind_is_answered_with_invalid_bind_status() -> None:
    s = SmppSession(Role.ESME)
    events = s.receive_data(frame(codec.DELIVER_SM, 77, b"x"), 0.0)
    assert isinstance(events[0], ProtocolError) and not events[0].fatal
    assert frames_summary(s.pop_frames()) == [("deliver_sm_resp", codec.ESME_RINVBNDSTS, 77)]


def test_pdus_split_across_reads_and_batched_in_one_read_are_framed_on_command_length() -> None:
    s = bound_esme()
    data = frame(codec.DELIVER_SM, 5, b"a" * 30) + frame(codec.DELIVER_SM, 6, b"b" * 3)
    got = []
    for i in range(0, len(data), 7):
        got += s.receive_data(data[i : i + 7], 1.0)
    assert [(e.pdu.sequence, e.pdu.body) for e in got if isinstance(e, RequestReceived)] == \
        [(5, b"a" * 30), (6, b"bbb")]
    both = s.receive_data(data, 2.0)
    assert [e.pdu.sequence for e in both if isinstance(e, RequestReceived)] == [5, 6]


@pytest.mark.parametrize("length", [0, 4, 15, 10_000_000, 0xFFFFFFFF])
def test_absurd_command_length_gets_generic_nack_and_closes(length: int) -> None:
    s = bound_esme()
    events = s.receive_data(struct.pack(">LLLL", length, codec.SUBMIT_SM, 0, 9) + b"junk", 1.0)
    assert isinstance(events[-1], ProtocolError) and events[-1].fatal
    assert frames_summary(s.pop_frames()) == [("generic_nack", codec.ESME_RINVCMDLEN, 9)]
    assert s.should_close and s.state is State.CLOSED
    assert s.receive_data(frame(codec.ENQUIRE_LINK, 1), 2.0) == []


def test_unknown_command_id_gets_generic_nack_and_the_session_goes_on() -> None:
    s = bound_esme()
    events = s.receive_data(frame(0x00000777, 12, b"??") + frame(codec.ENQUIRE_LINK, 13), 1.0)
    assert isinstance(events[0], ProtocolError) and not events[0].fatal
    assert frames_summary(s.pop_frames()) == [("generic_nack", codec.ESME_RINVCMDID, 12),
                                              ("enquire_link_resp", 0, 13)]
    assert s.is_bound and not s.should_close


def test_enquire_link_is_answered_automatically_without_an_event() -> None:
    s = bound_esme()
    assert s.receive_data(frame(codec.ENQUIRE_LINK, 99), 1.0) == []
    assert frames_summary(s.pop_frames()) == [("enquire_link_resp", 0, 99)]


def test_receive_data_frames_at_most_limit_pdus_and_keeps_the_rest_buffered() -> None:
    s = bound_esme()
    stream = b"".join(frame(codec.ENQUIRE_LINK, seq) for seq in range(1, 6))
    s.receive_data(stream, 1.0, limit=2)
    assert frames_summary(s.pop_frames()) == [("enquire_link_resp", 0, 1),
                                              ("enquire_link_resp", 0, 2)]
    assert s.has_frame
    s.receive_data(frame(codec.ENQUIRE_LINK, 6)[:7], 1.0, limit=0)  # buffered, not framed
    assert s.pop_frames() == [] and s.has_frame
    s.receive_data(frame(codec.ENQUIRE_LINK, 6)[7:], 1.0)
    assert [seq for _, _, seq in frames_summary(s.pop_frames())] == [3, 4, 5, 6]
    assert not s.has_frame


def test_a_partial_frame_is_not_a_frame_but_a_bad_length_is() -> None:
    s = bound_esme()
    s.receive_data(frame(codec.ENQUIRE_LINK, 1)[:15], 1.0, limit=0)
    assert not s.has_frame
    s.receive_data(frame(codec.ENQUIRE_LINK, 1)[15:], 1.0, limit=0)
    assert s.has_frame
    s2 = bound_esme()
    s2.receive_data(b"\x00\x00\x00\x02garbage", 1.0, limit=0)
    assert s2.has_frame  # framing it answers generic_nack and closes


def test_peer_unbind_is_answered_and_ends_the_session() -> None:
    s = bound_esme()
    assert s.receive_data(frame(codec.UNBIND, 4), 1.0) == [Unbound(by_peer=True)]
    assert frames_summary(s.pop_frames()) == [("unbind_resp", 0, 4)]
    assert s.should_close


def test_our_unbind_completes_on_unbind_resp() -> None:
    s = bound_esme()
    seq = s.unbind(1.0)
    assert seq is not None and s.state is State.UNBINDING
    assert s.receive_data(frame(codec.UNBIND_RESP, seq), 1.5) == [Unbound(by_peer=False)]


def test_window_limits_outstanding_requests_and_responses_free_slots() -> None:
    s = bound_esme(window=2)
    a = s.send_request(codec.SUBMIT_SM, b"", 0.0, "a")
    s.send_request(codec.SUBMIT_SM, b"", 0.0, "b")
    assert s.window_free == 0
    with pytest.raises(WindowFullError):
        s.send_request(codec.SUBMIT_SM, b"", 0.0)
    [event] = s.receive_data(frame(codec.SUBMIT_SM_RESP, a, b"id1\0"), 0.1)
    assert isinstance(event, ResponseReceived) and event.request.context == "a"
    assert s.window_free == 1


def test_response_timeout_is_decided_with_now_passed_in() -> None:
    s = bound_esme(response_timeout=5.0, enquire_link_interval=100.0)
    seq = s.send_request(codec.SUBMIT_SM, b"", 10.0, "ctx")
    assert s.next_deadline() == 15.0
    assert s.tick(14.9) == []
    [event] = s.tick(15.0)
    assert isinstance(event, ResponseTimedOut) and event.request.sequence == seq
    assert s.window_free == s.window
    late = s.receive_data(frame(codec.SUBMIT_SM_RESP, seq, b"x\0"), 16.0)
    assert isinstance(late[0], ProtocolError) and not late[0].fatal


def test_idle_link_sends_enquire_link_and_a_missing_answer_closes_it() -> None:
    s = bound_esme(response_timeout=3.0, enquire_link_interval=30.0)
    assert s.tick(29.0) == [] and s.pop_frames() == []
    s.tick(30.0)
    [(name, _, _)] = frames_summary(s.pop_frames())
    assert name == "enquire_link"
    assert s.next_deadline() == 33.0  # the enquire_link's own deadline, no busy loop
    [event] = s.tick(33.0)
    assert isinstance(event, ProtocolError) and event.fatal and s.should_close


def test_answered_enquire_link_keeps_the_link() -> None:
    s = bound_esme(response_timeout=3.0, enquire_link_interval=30.0)
    s.tick(30.0)
    [raw] = s.pop_frames()
    seq = struct.unpack(">L", raw[12:16])[0]
    assert s.receive_data(frame(codec.ENQUIRE_LINK_RESP, seq), 31.0) == []
    assert s.tick(40.0) == [] and s.is_bound


def test_sequence_numbers_wrap_and_skip_those_in_use() -> None:
    s = bound_esme(window=5)
    s._seq = 0x7FFFFFFE
    assert s.send_request(codec.SUBMIT_SM, b"", 0.0) == 0x7FFFFFFF
    assert s.send_request(codec.SUBMIT_SM, b"", 0.0) == 1
    assert s.send_request(codec.SUBMIT_SM, b"", 0.0) != 1


def test_abandon_returns_every_unanswered_request() -> None:
    s = bound_esme()
    s.send_request(codec.SUBMIT_SM, b"", 0.0, 1)
    s.send_request(codec.SUBMIT_SM, b"", 0.0, 2)
    lost = s.abandon()
    assert sorted(int(str(r.context)) for r in lost) == [1, 2] and s.window_free == s.window


def test_smsc_role_reports_bind_requests_and_refuses_a_second_bind() -> None:
    s = SmppSession(Role.SMSC)
    bind = codec.encode_bind(codec.BIND_TRANSCEIVER, 1, "esme", "pw")
    [event] = s.receive_data(bind, 0.0)
    assert event.__class__.__name__ == "BindRequested"
    s.accept_bind(event.pdu, "sim")  # type: ignore[union-attr]
    s.receive_data(codec.encode_bind(codec.BIND_TRANSCEIVER, 2, "esme", "pw"), 0.0)
    assert frames_summary(s.pop_frames()) == [("bind_transceiver_resp", 0, 1),
                                              ("bind_transceiver_resp", codec.ESME_RALYBND, 2)]


def test_trace_keeps_every_frame_with_its_context() -> None:
    s = SmppSession(Role.ESME, trace=True)
    s.bind(codec.BIND_TRANSCEIVER, "esme", "pw", "", 0.0)
    s.receive_data(frame(codec.BIND_TRANSCEIVER | codec.RESPONSE_BIT, 1, b"\0"), 0.0)
    s.send_request(codec.SUBMIT_SM, b"", 0.0, "ctx")
    s.receive_data(frame(codec.ENQUIRE_LINK, 5), 0.0)
    s.pop_frames()
    tx, rx = s.pop_trace()
    assert [c for _, c in tx] == [None, "ctx", None]
    assert [p.name for p, _ in rx] == ["bind_transceiver_resp", "enquire_link"]


_pdus = st.lists(st.tuples(st.sampled_from([codec.DELIVER_SM, codec.ENQUIRE_LINK]),
                           st.integers(1, 1000), st.binary(max_size=300)), max_size=8)


@given(pdus=_pdus, cuts=st.lists(st.integers(1, 50), max_size=40))
def test_any_chunking_of_a_stream_gives_the_same_requests(
        pdus: list[tuple[int, int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(frame(cid, seq, body) for cid, seq, body in pdus)
    s = bound_esme()
    got = []
    pos = 0
    for size in [*cuts, len(stream)]:
        got += s.receive_data(stream[pos : pos + size], 1.0)
        pos += size
    expected = [(seq, body) for cid, seq, body in pdus if cid == codec.DELIVER_SM]
    assert [(e.pdu.sequence, e.pdu.body) for e in got if isinstance(e, RequestReceived)] == \
        expected


@given(st.binary(max_size=400))
def test_garbage_never_raises_and_is_always_answered_or_buffered(data: bytes) -> None:
    s = bound_esme()
    events = s.receive_data(data, 1.0)
    frames = frames_summary(s.pop_frames())
    for event in events:
        assert isinstance(event, RequestReceived | ProtocolError)
    if any(isinstance(e, ProtocolError) and e.fatal for e in events):
        assert frames[-1][0] == "generic_nack" and s.should_close


def test_shifted_deadlines_expire_requests_and_keepalive_later() -> None:
    s = bound_esme(response_timeout=2.0, enquire_link_interval=5.0)
    s.send_request(codec.SUBMIT_SM, b"", 0.0, "a")
    s.shift_deadlines(10.0)
    assert s.tick(11.9) == [] and s.next_deadline() == 12.0
    s.pop_frames()
    [expired] = s.tick(12.0)
    assert isinstance(expired, ResponseTimedOut) and s.pop_frames() == []  # idle until 15
    s.tick(15.0)
    assert frames_summary(s.pop_frames())[0][0] == "enquire_link"
