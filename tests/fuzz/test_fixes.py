"""Defects the fuzzers found, one test each, named for the behaviour that was wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from blobstore.identity import IdentityError, lookup_candidates, parse_msisdn
from blobstore.importer import ImportFormatError, RowError, parse_csv
from mepl.config import ConfigError, load_toml
from mepl.runtime.inbound_rows import part_row
from mepl.settings import load_settings
from sms_gateway.errors import UdhError
from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.inbound import inbound_from_sm
from sms_gateway.smpp.receipts import receipt_from_sm
from sms_gateway.udh import IEI_PORTS_8, split_user_data

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("tag", [codec.TAG_DESTINATION_PORT, codec.TAG_SOURCE_PORT])
def test_an_mo_whose_port_tlv_exceeds_16_bits_is_refused_as_undecodable(tag: int) -> None:
    # It used to be accepted, then storing it raised OverflowError: the bind answered
    # ESME_RX_T_APPN (temporary) and the SMSC redelivered the message for ever.
    sm = ShortMessage(source_addr="447700900123", destination_addr="84433",
                      short_message=b"x", tlvs=((tag, b"\x00\x01\x00\x00"),))
    with pytest.raises(ValueError, match="port"):
        inbound_from_sm(sm, link="a", received_at=NOW)


def test_an_mo_with_16_bit_port_tlvs_is_stored_and_read_back() -> None:
    sm = ShortMessage(source_addr="447700900123", destination_addr="84433",
                      short_message=b"frame", tlvs=((codec.TAG_DESTINATION_PORT, b"\x40\x1b"),
                                                    (codec.TAG_SOURCE_PORT, b"\xff\xff")))
    message = inbound_from_sm(sm, link="a", received_at=NOW)
    row = part_row(message)
    udh, payload = split_user_data(row.payload)
    assert (udh.dest_port, udh.src_port, payload) == (0x401B, 0xFFFF, b"frame")


def _udh_with_8_bit_ports(filler: int) -> bytes:
    """A UDH of 8-bit ports plus one filler element of ``filler`` octets, with its UDHL."""
    header = bytes((IEI_PORTS_8, 2, 5, 6, 0x70, filler)) + b"a" * filler
    return bytes((len(header),)) + header


def test_a_user_data_header_too_long_to_store_again_is_refused_as_malformed() -> None:
    # 8-bit ports are stored as 16-bit ones: a 254-octet header with them became 256 octets,
    # more than its length octet holds, and storing the MO raised ValueError (SMPP: a
    # temporary refusal, redelivered for ever; HTTP: a callback retried until parked).
    with pytest.raises(UdhError, match="too long"):
        split_user_data(_udh_with_8_bit_ports(248) + b"payload")
    sm = ShortMessage(source_addr="447700900123", destination_addr="84433",
                      esm_class=codec.ESM_UDHI, data_coding=4,
                      tlvs=((codec.TAG_MESSAGE_PAYLOAD, _udh_with_8_bit_ports(248) + b"x"),))
    with pytest.raises(UdhError):
        inbound_from_sm(sm, link="a", received_at=NOW)


def test_the_longest_user_data_header_with_8_bit_ports_that_fits_is_stored() -> None:
    sm = ShortMessage(source_addr="447700900123", destination_addr="84433",
                      esm_class=codec.ESM_UDHI, data_coding=4,
                      tlvs=((codec.TAG_MESSAGE_PAYLOAD, _udh_with_8_bit_ports(247) + b"x"),))
    message = inbound_from_sm(sm, link="a", received_at=NOW)
    udh, payload = split_user_data(part_row(message).payload)
    assert (udh.dest_port, udh.src_port, payload) == (5, 6, b"x")


@pytest.mark.parametrize("digits", [4400, 5000, 20_000])
def test_a_phone_number_of_thousands_of_digits_is_refused_as_not_a_number(digits: int) -> None:
    # It raised ValueError ("Exceeds the limit (4300 digits) for integer string conversion")
    # instead of IdentityError, which lookup_candidates does not catch: a device look-up
    # by such a string failed with an internal error instead of "not found".
    text = "+44" + "7" * digits
    with pytest.raises(IdentityError):
        parse_msisdn(text)
    with pytest.raises(IdentityError):
        lookup_candidates(text)


def test_a_path_for_an_unknown_users_home_is_a_config_error_naming_the_key() -> None:
    # Path("~nosuchuser/keys").expanduser() raises RuntimeError: `mepl run` died with a
    # traceback instead of "signing.keys_dir: ...".
    with pytest.raises(ConfigError) as info:
        load_settings({"dispatch": {"server_number": "+447700900000"},
                       "signing": {"keys_dir": "~no-such-user-mepl/keys"}})
    assert info.value.key == "signing.keys_dir"


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # A file saved as UTF-16 (or any non-UTF-8 bytes) raised UnicodeDecodeError: a traceback.
    path = tmp_path / "mepl.toml"
    path.write_bytes('[dispatch]\nserver_number = "+447700900000"\n'.encode("utf-16"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_toml(path)


def test_a_config_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_toml(tmp_path)


def test_a_csv_field_over_the_csv_modules_limit_is_a_row_error_not_a_crash() -> None:
    # csv.Error ("field larger than field limit") escaped parse_csv: `mepl devices import`
    # died with a traceback instead of reporting the line.
    lines = ["imei,phone\n", "490154203237518,+447700900123\n",
             '356938035643809,"' + "7" * 200_000 + '"\n', "353456789012348,\n"]
    items = list(parse_csv(lines, None))
    assert [type(i).__name__ for i in items] == ["ImportRow", "RowError"]
    assert isinstance(items[1], RowError) and items[1].line == 3
    assert "not readable as CSV" in items[1].message


def test_a_csv_header_over_the_csv_modules_limit_is_an_import_format_error() -> None:
    with pytest.raises(ImportFormatError, match="not readable as CSV"):
        list(parse_csv(['"' + "i" * 200_000 + '"\n'], None))


@pytest.mark.parametrize("tlvs, text", [
    (((codec.TAG_RECEIPTED_MESSAGE_ID, b"ab\x00cd\x00"),), b"stat:DELIVRD"),
    ((), b"id:ab\x00cd sub:001 dlvrd:001 stat:DELIVRD err:000"),
])
def test_a_receipt_whose_message_id_holds_a_nul_is_refused_as_undecodable(
        tlvs: tuple[tuple[int, bytes], ...], text: bytes) -> None:
    # The id went to a text column: psycopg2 refused the NUL with ValueError, which failed
    # the whole batch of receipts it was written with (each answered ESME_RX_T_APPN, so
    # redelivered, and failing again with the next batch).
    sm = ShortMessage(source_addr="447700900123", destination_addr="84433", esm_class=0x04,
                      short_message=text, tlvs=tlvs)
    with pytest.raises(ValueError, match="NUL"):
        receipt_from_sm(sm, link="a", received_at=NOW)


def test_a_receipt_id_with_trailing_nuls_in_its_tlv_is_still_read() -> None:
    sm = ShortMessage(esm_class=0x04, tlvs=((codec.TAG_RECEIPTED_MESSAGE_ID, b"00AB1f\x00\x00"),
                                            (codec.TAG_MESSAGE_STATE, b"\x02")))
    assert receipt_from_sm(sm, link="a", received_at=NOW).message_id == "ab1f"


@pytest.mark.parametrize("written, region", [("+0447700900123", None),
                                             ("000447700900123", "GB"),
                                             ("+01202555012", None)])
def test_a_number_whose_country_code_starts_with_zero_is_refused(
        written: str, region: str | None) -> None:
    # The fast path read "044" as country code 44 and returned "+0447700900123": a value
    # that is not E.164 (no country code starts with 0) stored as a device's number.
    with pytest.raises(IdentityError):
        parse_msisdn(written, region)


@pytest.mark.parametrize("written", ["+4919\u06610", "+44\u0667\u0667\u0660\u0660900123",
                                     "+44\uff17700900123"])
def test_a_number_with_non_ascii_digits_is_never_stored_as_written(written: str) -> None:
    # str.isdigit() is true for Arabic-Indic and full-width digits: the fast path returned
    # "+4919\u06610" unchanged, a non-ASCII "E.164" number in the registry.
    try:
        parsed = parse_msisdn(written)
    except IdentityError:
        return
    assert parsed.isascii() and parsed[1:].isdigit(), parsed
