from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.records import make_record, redact

_addr = st.text(alphabet="0123456789", max_size=20)


def _smpplib_submit(seq: int, sm: ShortMessage) -> bytes:
    fields = {
        "service_type": sm.service_type, "source_addr_ton": sm.source_addr_ton,
        "source_addr_npi": sm.source_addr_npi, "source_addr": sm.source_addr,
        "dest_addr_ton": sm.dest_addr_ton, "dest_addr_npi": sm.dest_addr_npi,
        "destination_addr": sm.destination_addr, "esm_class": sm.esm_class,
        "protocol_id": sm.protocol_id, "priority_flag": sm.priority_flag,
        "schedule_delivery_time": sm.schedule_delivery_time,
        "validity_period": sm.validity_period, "registered_delivery": sm.registered_delivery,
        "replace_if_present_flag": 0, "data_coding": sm.data_coding, "sm_default_msg_id": 0,
        "short_message": sm.short_message,
    }
    names = {codec.TAG_SAR_MSG_REF_NUM: "sar_msg_ref_num",
             codec.TAG_SAR_TOTAL_SEGMENTS: "sar_total_segments",
             codec.TAG_SAR_SEGMENT_SEQNUM: "sar_segment_seqnum",
             codec.TAG_MESSAGE_PAYLOAD: "message_payload",
             codec.TAG_SOURCE_PORT: "source_port", codec.TAG_DESTINATION_PORT: "destination_port"}
    for tag, value in sm.tlvs:
        fields[names[tag]] = value if tag == codec.TAG_MESSAGE_PAYLOAD else \
            int.from_bytes(value, "big")
    return codec.smpplib_encode("submit_sm", seq, **fields)


@given(seq=st.integers(1, 0x7FFFFFFF), src=_addr, dst=_addr,
       esm=st.sampled_from([0, 0x40]), dc=st.sampled_from([0, 4, 8]),
       reg=st.integers(0, 1), short=st.binary(min_size=1, max_size=254),
       validity=st.sampled_from(["", "000001000000000R"]))
def test_fast_submit_sm_matches_smpplib_byte_for_byte(seq: int, src: str, dst: str, esm: int,
                                                       dc: int, reg: int, short: bytes,
                                                       validity: str) -> None:
    sm = ShortMessage(source_addr_ton=1, source_addr_npi=1, source_addr=src, dest_addr_ton=1,
                      dest_addr_npi=1, destination_addr=dst, esm_class=esm,
                      validity_period=validity, registered_delivery=reg, data_coding=dc,
                      short_message=short)
    fast = codec.encode_frame(codec.SUBMIT_SM, 0, seq, codec.encode_short_message(sm))
    assert fast == _smpplib_submit(seq, sm)


def test_fast_submit_sm_with_sar_and_payload_tlvs_matches_smpplib() -> None:
    sar = ShortMessage(destination_addr="447700900123", short_message=b"abc",
                       tlvs=((codec.TAG_SOURCE_PORT, b"\x00\x01"),
                             (codec.TAG_DESTINATION_PORT, b"\x0b\x84"),
                             (codec.TAG_SAR_MSG_REF_NUM, b"\x12\x34"),
                             (codec.TAG_SAR_TOTAL_SEGMENTS, b"\x03"),
                             (codec.TAG_SAR_SEGMENT_SEQNUM, b"\x02")))
    assert codec.encode_frame(codec.SUBMIT_SM, 0, 7, codec.encode_short_message(sar)) == \
        _smpplib_submit(7, sar)
    payload = ShortMessage(destination_addr="1", tlvs=((codec.TAG_MESSAGE_PAYLOAD, b"x" * 250),))
    assert codec.encode_frame(codec.SUBMIT_SM, 0, 9, codec.encode_short_message(payload)) == \
        _smpplib_submit(9, payload)


def test_deliver_sm_resp_and_submit_sm_resp_match_smpplib() -> None:
    assert codec.encode_frame(codec.DELIVER_SM_RESP, 0, 42, b"\0") == \
        codec.smpplib_encode("deliver_sm_resp", 42)
    assert codec.encode_frame(codec.SUBMIT_SM_RESP, 0, 5, codec.encode_message_id_body("ab12")) \
        == codec.smpplib_encode("submit_sm_resp", 5, message_id="ab12")


def test_decode_short_message_agrees_with_smpplib_parse() -> None:
    raw = codec.smpplib_encode("deliver_sm", 3, source_addr="447700900123",
                               destination_addr="12345", esm_class=0x40, data_coding=4,
                               short_message=b"\x05\x00\x03\x01\x02\x01hi",
                               receipted_message_id="abc", message_state=2)
    ours = codec.decode_short_message(raw[16:])
    theirs = codec.smpplib_decode(raw)
    assert ours.source_addr == theirs.source_addr.decode()
    assert ours.destination_addr == theirs.destination_addr.decode()
    assert ours.short_message == theirs.short_message
    assert ours.esm_class == theirs.esm_class == 0x40
    assert ours.tlv(codec.TAG_RECEIPTED_MESSAGE_ID) == b"abc\0"
    assert ours.tlv_int(codec.TAG_MESSAGE_STATE) == theirs.message_state == 2


def test_unknown_tlvs_are_kept_where_smpplib_drops_them() -> None:
    sm = ShortMessage(source_addr="1", short_message=b"x",
                      tlvs=((0x1401, b"vendor"), (codec.TAG_MESSAGE_STATE, b"\x02")))
    body = codec.encode_short_message(sm)
    assert codec.decode_short_message(body).tlvs == sm.tlvs
    parsed = codec.smpplib_decode(codec.encode_frame(codec.DELIVER_SM, 0, 1, body))
    assert not hasattr(parsed, "vendor")


@pytest.mark.parametrize("body", [b"", b"\0\x01", b"CMT", b"\0" * 10,
                                  codec.encode_short_message(ShortMessage(short_message=b"ab"))[:-1]])
def test_truncated_short_message_body_raises_codec_error(body: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode_short_message(body)


def test_tlv_overrunning_the_pdu_raises_codec_error() -> None:
    with pytest.raises(codec.CodecError):
        codec.decode_tlvs(struct.pack(">HH", 0x0424, 10) + b"abc")


def test_bind_encoding_roundtrips_and_records_redact_the_password() -> None:
    raw = codec.encode_bind(codec.BIND_TRANSCEIVER, 1, "esme", "s3cret")
    bind = codec.decode_bind(raw[16:])
    assert (bind.system_id, bind.password) == ("esme", "s3cret")
    assert "s3cret" not in repr(bind)
    hidden = redact(raw)
    assert b"s3cret" not in hidden and len(hidden) == len(raw)
    assert codec.decode_bind(hidden[16:]).system_id == "esme"
    record = make_record("out", "a", raw, 1.0)
    assert record.command == "bind_transceiver" and b"s3cret" not in record.raw


def test_record_of_submit_sm_resp_carries_the_message_id() -> None:
    raw = codec.encode_frame(codec.SUBMIT_SM_RESP, 0, 9, b"ff01\0")
    record = make_record("in", "a", raw, 2.0, "ref-1")
    assert (record.message_id, record.sequence, record.reference) == ("ff01", 9, "ref-1")


def test_status_is_described_by_code_name_and_meaning() -> None:
    assert codec.describe_status(codec.ESME_RINVPASWD) == \
        "0x0000000E ESME_RINVPASWD (invalid password)"
    assert codec.describe_status(codec.ESME_RINVSYSID) == \
        "0x0000000F ESME_RINVSYSID (invalid system id)"
    assert codec.describe_status(0x400) == "0x00000400 (unknown status)"
