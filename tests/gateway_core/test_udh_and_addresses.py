from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.addresses import mask_msisdn, to_e164
from sms_gateway.errors import AddressError, UdhError
from sms_gateway.udh import Concat, Udh, encode_udh, split_user_data


@pytest.mark.parametrize(
    ("raw", "region"),
    [("+44 7700 900123", None), ("07700900123", "GB"), ("447700900123", None),
     ("447700900123", "GB"), ("0044 7700 900123", "US")],
)
def test_written_forms_normalise_to_one_e164(raw: str, region: str | None) -> None:
    assert to_e164(raw, region) == "+447700900123"


@pytest.mark.parametrize("raw", ["", "hello", "+44", "12", "84433", "123456"])
def test_unparseable_numbers_raise_address_error(raw: str) -> None:
    with pytest.raises(AddressError):
        to_e164(raw, "GB")


def test_mask_keeps_prefix_and_last_two_digits_only() -> None:
    masked = mask_msisdn("+447700900123")
    assert masked.startswith("+44") and masked.endswith("23") and "900" not in masked


def test_ports_and_8bit_concat_encode_to_the_standard_octets() -> None:
    udh = Udh(dest_port=0x3F01, src_port=0x3F02, concat=Concat(0x2A, 3, 1))
    assert encode_udh(udh).hex() == "0b" + "00032a0301" + "05043f013f02"


def test_unknown_elements_are_kept_verbatim() -> None:
    ud = bytes.fromhex("05" + "0a03010203") + b"payload"
    udh, payload = split_user_data(ud)
    assert udh.other == ((0x0A, b"\x01\x02\x03"),) and payload == b"payload"


@pytest.mark.parametrize("ud", ["", "05", "0300", "0400030100", "050003000200"])
def test_malformed_headers_raise_udh_error(ud: str) -> None:
    with pytest.raises(UdhError):
        split_user_data(bytes.fromhex(ud))


@given(
    ref=st.integers(0, 0xFFFF), total=st.integers(1, 255), data=st.data(),
    ports=st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))),
    payload=st.binary(max_size=100),
)
def test_encode_then_split_round_trips(ref: int, total: int, data: st.DataObject,
                                       ports: tuple[int, int] | None, payload: bytes) -> None:
    seq = data.draw(st.integers(1, total))
    bits = 16 if ref > 0xFF else 8
    dest, src = ports if ports else (None, None)
    udh = Udh(dest, src, Concat(ref, total, seq, bits))
    parsed, rest = split_user_data(encode_udh(udh) + payload)
    assert parsed == udh and rest == payload
