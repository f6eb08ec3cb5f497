"""National numbers are read in the configured region first; regions are checked."""

from __future__ import annotations

import pytest

from sms_gateway.addresses import normalise_region, to_e164
from sms_gateway.errors import AddressError


@pytest.mark.parametrize(("region", "written", "e164"), [
    ("US", "(202) 555-0123", "+12025550123"),
    ("US", "202-555-0123", "+12025550123"),
    ("US", "202.555.0123", "+12025550123"),
    ("US", "2025550123", "+12025550123"),
    ("US", "1 202 555 0123", "+12025550123"),
    ("US", "+1 (202) 555-0123", "+12025550123"),
    ("US", "011 44 7700 900123", "+447700900123"),  # the US international prefix
    ("US", "0044 7700 900123", "+447700900123"),
    ("GB", "07700 900123", "+447700900123"),
    ("GB", "(0)7700-900-123", "+447700900123"),
    ("GB", "+44 (0)7700 900123", "+447700900123"),
    ("GB", "00 44 7700 900123", "+447700900123"),
    ("GB", "2025550123", "+442025550123"),  # a London number in GB, never Egypt
    ("DE", "030 1234567", "+49301234567"),
    ("DE", "0151 23456789", "+4915123456789"),
    ("DE", "00 33 6 12 34 56 78", "+33612345678"),
    ("FR", "06 12 34 56 78", "+33612345678"),
    ("FR", "01.23.45.67.89", "+33123456789"),
    ("FR", "+33 6 12 34 56 78", "+33612345678"),
    ("FR", "00 49 30 1234567", "+49301234567"),
])
def test_written_forms_are_read_in_the_configured_region(region: str, written: str,
                                                         e164: str) -> None:
    assert to_e164(written, region) == e164


def test_all_digit_national_input_is_not_read_as_international_first() -> None:
    # 20 is Egypt's country code: the national US reading must win.
    assert to_e164("2025550123", "US") != "+2025550123"
    assert to_e164("2025550123", "US") == "+12025550123"


def test_without_a_region_bare_digits_are_international_as_smscs_send_them() -> None:
    assert to_e164("2025550123") == "+2025550123"
    assert to_e164("447700900123") == "+447700900123"


def test_with_a_region_a_foreign_number_needs_plus_or_an_international_prefix() -> None:
    with pytest.raises(AddressError, match="not a valid phone number in region GB"):
        to_e164("4915123456789", "GB")
    assert to_e164("+49 151 23456789", "GB") == "+4915123456789"
    assert to_e164("0049 151 23456789", "GB") == "+4915123456789"


def test_a_lowercase_region_is_read_as_upper_case() -> None:
    assert to_e164("(202) 555-0123", "us") == "+12025550123"
    assert normalise_region(" gb ") == "GB"


@pytest.mark.parametrize("code", ["XX", "UK", "G", "GBR", "", "1"])
def test_unknown_regions_are_refused_clearly(code: str) -> None:
    with pytest.raises(AddressError, match="unknown region"):
        normalise_region(code)
    with pytest.raises(AddressError, match="unknown region"):
        to_e164("07700900123", code)


def test_uk_is_refused_with_a_hint_at_gb() -> None:
    with pytest.raises(AddressError, match="GB"):
        normalise_region("uk")


@pytest.mark.parametrize("written", ["+44 7700 banana", "0800 FLOWERS", "+1-800-FLOWERS"])
def test_letters_are_refused_not_read_as_keypad_digits(written: str) -> None:
    with pytest.raises(AddressError):
        to_e164(written, "US")
