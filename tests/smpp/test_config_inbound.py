from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import pytest

from mepl.config import ConfigError, build
from sms_gateway.coding import decode_text, encode_gsm7_unpacked
from sms_gateway.errors import UdhError
from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.config import SmppConfig
from sms_gateway.smpp.inbound import inbound_from_sm

TOML = """
[smpp.links.carrier_a]
host = "smsc.example"
port = 2775
system_id = "esme"
password = "hunter2"
window = 50
tps = 100
long_message = "sar"

[smpp.links.carrier_b]
host = "smsc2.example"
port = 2776
system_id = "esme2"

[[smpp.routes]]
prefix = "+44"
links = ["carrier_a", "carrier_b"]

[[smpp.routes]]
links = ["carrier_b"]
"""


def test_smpp_config_builds_from_toml_and_hides_the_password() -> None:
    config = build(SmppConfig, tomllib.loads(TOML)["smpp"], "smpp")
    link = config.links["carrier_a"]
    assert (link.window, link.tps, link.long_message, link.bind_mode) == (50, 100.0, "sar",
                                                                         "transceiver")
    assert config.routes[0].links == ("carrier_a", "carrier_b")
    assert config.routes[0].prefix == "+44" and config.routes[1].prefix is None
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("window", 0, "window"), ("port", 70000, "port"), ("long_message", "zip", "one of"),
    ("max_parts", 300, "max_parts"), ("bind_mode", "both", "one of"),
])
def test_invalid_link_values_name_the_key(key: str, value: object, message: str) -> None:
    raw = tomllib.loads(TOML)["smpp"]
    raw["links"]["carrier_a"][key] = value
    with pytest.raises(ConfigError, match=message) as info:
        build(SmppConfig, raw, "smpp")
    assert "smpp.links.carrier_a" in str(info.value)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_mo_with_udh_becomes_an_inbound_message_with_ports_and_concat() -> None:
    sm = ShortMessage(source_addr="447700900123", source_addr_ton=1, destination_addr="12345",
                      esm_class=0x40, data_coding=4,
                      short_message=bytes.fromhex("0c0504138400000804abcd0201") + b"\x01\x02",
                      tlvs=((0x1600, b"\x01"),))
    msg = inbound_from_sm(sm, link="a", received_at=NOW)
    assert msg.sender == "+447700900123" and msg.payload == b"\x01\x02"
    assert msg.udh is not None and msg.udh.dest_port == 0x1384
    assert msg.udh.concat is not None and msg.udh.concat.reference == 0xABCD
    assert msg.udh.concat.ref_bits == 16 and msg.text is None
    assert msg.extra == {"tlv_0x1600": "01"}


def test_mo_with_sar_tlvs_gets_a_16_bit_concat_header() -> None:
    sm = ShortMessage(source_addr="Operator", source_addr_ton=5, short_message=b"hi",
                      tlvs=((codec.TAG_SAR_MSG_REF_NUM, b"\x00\x07"),
                            (codec.TAG_SAR_TOTAL_SEGMENTS, b"\x02"),
                            (codec.TAG_SAR_SEGMENT_SEQNUM, b"\x01")))
    msg = inbound_from_sm(sm, link="a", received_at=NOW)
    assert msg.sender == "Operator" and msg.text == "hi"
    assert msg.udh is not None and msg.udh.concat is not None
    assert (msg.udh.concat.reference, msg.udh.concat.total, msg.udh.concat.seq) == (7, 2, 1)


def test_mo_with_broken_udh_raises() -> None:
    with pytest.raises(UdhError):
        inbound_from_sm(ShortMessage(esm_class=0x40, short_message=b"\x09\x00"), link="a",
                        received_at=NOW)


def test_text_codings_decode() -> None:
    gsm = encode_gsm7_unpacked("Hi €5 [ok] @home")
    assert gsm is not None and decode_text(gsm, 0) == "Hi €5 [ok] @home"
    assert encode_gsm7_unpacked("日本") is None
    assert decode_text("日本".encode("utf-16-be"), 8) == "日本"
    assert decode_text(b"caf\xe9", 3) == "café"
    assert decode_text(b"\x00", 4) is None
