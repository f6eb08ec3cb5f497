from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.channel import OutboundMessage
from sms_gateway.errors import MessageTooLongError
from sms_gateway.smpp import codec
from sms_gateway.smpp.segmentation import ReferenceCounter, segment
from sms_gateway.smpp.throttle import AdaptivePause, TokenBucket
from sms_gateway.udh import split_user_data

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def msg(payload: bytes, dc: int = 4, **kw: object) -> OutboundMessage:
    return OutboundMessage("+447700900123", payload, dc, **kw)  # type: ignore[arg-type]


def test_short_binary_message_is_one_part_without_udh() -> None:
    [part] = segment(msg(b"x" * 140), mode="udh", max_parts=6, references=ReferenceCounter(1))
    assert part.short_message == b"x" * 140 and part.esm_class == 0


def test_ports_alone_make_a_udh_on_a_single_part() -> None:
    [part] = segment(msg(b"abc", dest_port=2948, src_port=9200), mode="udh", max_parts=6,
                     references=ReferenceCounter(1))
    udh, payload = split_user_data(part.short_message)
    assert part.esm_class == codec.ESM_UDHI and payload == b"abc"
    assert (udh.dest_port, udh.src_port, udh.concat) == (2948, 9200, None)


@pytest.mark.parametrize("bits", [8, 16])
def test_long_binary_message_gets_concat_udh_with_8_or_16_bit_references(bits: int) -> None:
    payload = bytes(range(256)) * 2
    parts = segment(msg(payload), mode="udh", max_parts=6, references=ReferenceCounter(300),
                    ref_bits=bits)
    joined = b""
    for seq, part in enumerate(parts, start=1):
        assert len(part.short_message) <= 140 and part.esm_class == codec.ESM_UDHI
        udh, chunk = split_user_data(part.short_message)
        assert udh.concat is not None
        assert (udh.concat.seq, udh.concat.total, udh.concat.ref_bits) == (seq, len(parts), bits)
        assert udh.concat.reference == (300 % 256 if bits == 8 else 300)
        joined += chunk
    assert joined == payload and len(parts) == 4  # 512 / 134


def test_gsm_text_uses_153_septets_per_part_and_never_splits_an_escape() -> None:
    text = b"a" * 152 + b"\x1be" + b"b" * 10
    parts = segment(msg(text, dc=0), mode="udh", max_parts=6, references=ReferenceCounter(0))
    first = split_user_data(parts[0].short_message)[1]
    assert first == b"a" * 152
    assert split_user_data(parts[1].short_message)[1].startswith(b"\x1be")
    assert len(segment(msg(b"a" * 160, dc=0), mode="udh", max_parts=6,
                       references=ReferenceCounter(0))) == 1


def test_ucs2_parts_never_split_a_surrogate_pair() -> None:
    text = ("a" * 66 + "\U0001F600" + "b" * 10).encode("utf-16-be")
    parts = segment(msg(text, dc=8), mode="udh", max_parts=6, references=ReferenceCounter(0))
    decoded = [split_user_data(p.short_message)[1].decode("utf-16-be") for p in parts]
    assert "".join(decoded) == "a" * 66 + "\U0001F600" + "b" * 10


def test_sar_mode_uses_tlvs_with_a_16_bit_reference() -> None:
    parts = segment(msg(b"z" * 300, dest_port=5000), mode="sar", max_parts=6,
                    references=ReferenceCounter(0x1234))
    assert len(parts) == 3
    for seq, part in enumerate(parts, start=1):
        tlvs = dict(part.tlvs)
        assert tlvs[codec.TAG_SAR_MSG_REF_NUM] == b"\x12\x34"
        assert tlvs[codec.TAG_SAR_TOTAL_SEGMENTS] == b"\x03"
        assert tlvs[codec.TAG_SAR_SEGMENT_SEQNUM] == bytes((seq,))
        assert tlvs[codec.TAG_DESTINATION_PORT] == (5000).to_bytes(2, "big")
        assert part.esm_class == 0
    assert b"".join(p.short_message for p in parts) == b"z" * 300


def test_payload_mode_sends_one_pdu_with_message_payload() -> None:
    [part] = segment(msg(b"q" * 1000), mode="payload", max_parts=1,
                     references=ReferenceCounter(0))
    assert part.short_message == b"" and dict(part.tlvs)[codec.TAG_MESSAGE_PAYLOAD] == b"q" * 1000


@pytest.mark.parametrize("mode", ["udh", "sar"])
def test_message_over_the_part_limit_is_refused_not_truncated(mode: str) -> None:
    with pytest.raises(MessageTooLongError, match="over the limit of 2"):
        segment(msg(b"x" * 500), mode=mode, max_parts=2, references=ReferenceCounter(0))


def test_references_are_consecutive_from_a_random_start_so_they_collide_late() -> None:
    counter = ReferenceCounter(254)
    assert [counter.next(8) for _ in range(4)] == [254, 255, 0, 1]
    c = ReferenceCounter(7)
    assert len({c.next(16) for _ in range(1000)}) == 1000
    starts = {ReferenceCounter().next(16) for _ in range(20)}
    assert len(starts) > 1  # seeded randomly, not from zero each time


def test_token_bucket_limits_rate_and_reports_the_wait() -> None:
    bucket = TokenBucket(10.0, burst=2.0, now=0.0)
    assert bucket.try_take(0.0) and bucket.try_take(0.0)
    assert not bucket.try_take(0.0)
    assert bucket.delay(0.0) == pytest.approx(0.1)
    assert bucket.try_take(0.1)
    assert TokenBucket(0.0).try_take(0.0) and TokenBucket(0.0).delay(5.0) == 0.0


def test_adaptive_pause_doubles_on_throttle_ignores_in_flight_echoes_and_recovers() -> None:
    pause = AdaptivePause(0.1, 1.0)
    assert pause.throttled(0.0) == pytest.approx(0.1)
    assert pause.throttled(0.05) == pytest.approx(0.1)  # same burst: not lengthened
    assert pause.throttled(0.2) == pytest.approx(0.4)
    assert pause.remaining(0.3) == pytest.approx(0.1)
    for _ in range(5):
        pause.throttled(10.0 + _)
    assert pause.current == 1.0
    pause.succeeded()
    assert pause.current == 0.5


def test_reconnect_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    import random

    from sms_gateway.smpp.throttle import backoff

    policy = backoff(1.0, 8.0, random.Random(0))
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (500, 8.0)]:
        delays = {policy(attempt) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered, so many binds do not reconnect in lockstep


@given(payload=st.binary(min_size=0, max_size=700), mode=st.sampled_from(["udh", "sar"]),
       bits=st.sampled_from([8, 16]), dc=st.sampled_from([0, 4, 8]),
       port=st.none() | st.integers(0, 65535))
def test_segments_reassemble_to_the_original_payload(payload: bytes, mode: str, bits: int,
                                                     dc: int, port: int | None) -> None:
    from sms_gateway.reassembly import PartKey, Reassembler
    from sms_gateway.smpp.codec import ShortMessage
    from sms_gateway.smpp.inbound import inbound_from_sm

    if dc == 8:
        payload = payload[: len(payload) - len(payload) % 2]
    message = OutboundMessage("+447700900123", payload, dc, dest_port=port)
    parts = segment(message, mode=mode, max_parts=6, references=ReferenceCounter(9),
                    ref_bits=bits)
    reassembler: Reassembler[int] = Reassembler()
    done = None
    for part in reversed(parts):
        sm = ShortMessage(source_addr="447700900123", source_addr_ton=1, data_coding=dc,
                          esm_class=part.esm_class, short_message=part.short_message,
                          tlvs=part.tlvs)
        assert len(part.short_message) <= 140
        msg = inbound_from_sm(sm, link="a", received_at=NOW)
        if port is not None:
            assert msg.udh is not None and msg.udh.dest_port == port
        if msg.udh is None or msg.udh.concat is None:
            assert len(parts) == 1
            done_payload = msg.payload
            break
        c = msg.udh.concat
        done = reassembler.add(PartKey("a", msg.sender, c.reference, c.ref_bits, c.total),
                               c.seq, msg.payload, 0, 0.0)
    else:
        assert done is not None
        done_payload = done.payload
    assert done_payload == payload
