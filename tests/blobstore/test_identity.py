from __future__ import annotations

import pytest

from blobstore.identity import (
    IdentifierKind,
    IdentityError,
    classify,
    is_valid_imei,
    lookup_candidates,
    luhn_check_digit,
    mask_msisdn,
    parse_imei,
    parse_imsi,
    parse_msisdn,
    split_imsi,
)


def test_luhn_check_digit_matches_published_imeis() -> None:
    assert luhn_check_digit("49015420323751") == "8"
    assert luhn_check_digit("35209900176148") == "1"
    assert is_valid_imei("490154203237518")
    assert not is_valid_imei("490154203237519")


@pytest.mark.parametrize("written", [
    "352099001761481", "35-209900-176148-1", " 35 209900 176148 1 ", "35.209900.176148.1",
])
def test_imei_is_accepted_with_separators(written: str) -> None:
    assert parse_imei(written) == "352099001761481"


def test_wrong_check_digit_is_refused_naming_the_expected_digit() -> None:
    with pytest.raises(IdentityError, match="wrong check digit 2: expected 1"):
        parse_imei("352099001761482")


def test_imeisv_maps_to_its_imei() -> None:
    assert parse_imei("3520990017614823") == "352099001761481"


def test_fourteen_digit_imei_is_refused_with_the_completed_form() -> None:
    with pytest.raises(IdentityError, match=r"check digit is missing .*352099001761481"):
        parse_imei("35209900176148")


@pytest.mark.parametrize("bad, message", [
    ("", "empty IMEI"), ("35209900176148A", "only digits"), ("1234", "has 4 digits"),
])
def test_malformed_imeis_say_what_is_wrong(bad: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        parse_imei(bad)


def test_imsi_splits_with_two_or_three_digit_mnc() -> None:
    uk = split_imsi(parse_imsi("234150123456789"))
    assert (uk.mcc, uk.mnc, uk.msin) == ("234", "15", "0123456789")
    us = split_imsi("310150123456789")
    assert (us.mcc, us.mnc, us.msin) == ("310", "150", "123456789")
    india = split_imsi("405861234567890")
    assert india.mnc == "861"
    assert us.value == "310150123456789"


@pytest.mark.parametrize("bad, message", [
    ("12345", "has 5 digits"), ("1234567890123456", "has 16 digits"),
    ("000011234567890", "MCC 000"), ("23415x", "only digits"),
])
def test_bad_imsis_are_refused(bad: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        parse_imsi(bad)


def test_test_network_imsi_is_accepted() -> None:
    assert parse_imsi("001010123456789") == "001010123456789"


@pytest.mark.parametrize("written, region", [
    ("+44 7700 900123", None), ("+44 (0)7700 900123", "GB"), ("07700900123", "GB"),
    ("447700900123", None), ("447700900123", "GB"), ("0044 7700 900123", "US"),
    ("+44-7700-900-123", None),
])
def test_phone_numbers_normalise_to_e164(written: str, region: str | None) -> None:
    assert parse_msisdn(written, region) == "+447700900123"


def test_national_number_without_region_is_refused() -> None:
    with pytest.raises(IdentityError, match="national form"):
        parse_msisdn("07700900123")


@pytest.mark.parametrize("bad", ["+12", "hello", "+999 1234"])
def test_unparseable_numbers_are_refused(bad: str) -> None:
    with pytest.raises(IdentityError, match="not a valid number"):
        parse_msisdn(bad, "GB")


def test_fifteen_digits_with_valid_luhn_read_as_imei_first_then_imsi() -> None:
    kinds = [c.kind for c in lookup_candidates("352099001761481", "GB")]
    assert kinds[:2] == [IdentifierKind.IMEI, IdentifierKind.IMSI]


def test_fifteen_digits_with_bad_luhn_read_as_imsi_first() -> None:
    first = classify("234150123456789", "GB")
    assert first.kind is IdentifierKind.IMSI


def test_plus_and_national_forms_read_only_as_phone_numbers() -> None:
    assert [c.kind for c in lookup_candidates("+447700900123")] == [IdentifierKind.MSISDN]
    only = lookup_candidates("07700 900123", "GB")
    assert [(c.kind, c.value) for c in only] == [(IdentifierKind.MSISDN, "+447700900123")]


def test_imeisv_lookup_maps_to_imei() -> None:
    first = classify("3520990017614823")
    assert (first.kind, first.value) == (IdentifierKind.IMEI, "352099001761481")


def test_garbage_lookup_is_refused() -> None:
    with pytest.raises(IdentityError, match="is not an IMEI"):
        lookup_candidates("not-a-device")


def test_mask_keeps_prefix_and_last_two() -> None:
    assert mask_msisdn("+447700900123") == "+44********23"
    assert mask_msisdn(None) == "-"


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("(202) 555-0123", "US", "+12025550123"),
    ("202-555-0123", "US", "+12025550123"),
    ("011 44 7700 900123", "US", "+447700900123"),
    ("07700 900123", "GB", "+447700900123"),
    ("447700900123", "GB", "+447700900123"),
    ("030 123456", "DE", "+4930123456"),
    ("01 23 45 67 89", "FR", "+33123456789"),
])
def test_a_national_number_is_read_in_the_configured_region_first(
        raw: str, region: str, expected: str) -> None:
    assert parse_msisdn(raw, region) == expected
