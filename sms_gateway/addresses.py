"""MSISDN normalisation at the edge: every number in or out is E.164 (``+447700900123``)."""

from __future__ import annotations

import phonenumbers

from sms_gateway.errors import AddressError

MIN_FULL_NUMBER_DIGITS = 7
"""Bare digit strings shorter than this are short codes (``84433``), never E.164."""


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Parse ``raw`` (any common written form) and return it in E.164.

    ``default_region`` (ISO 3166 alpha-2, e.g. ``"GB"``) applies to national
    forms such as ``07700900123``.  A number given in international form
    without ``+`` (``447700900123``, as SMSCs send it) is accepted too.  A
    short code (fewer than 7 bare digits) raises :class:`AddressError`: callers
    keep it as given rather than invent a country prefix for it.
    """
    text = raw.strip()
    if not text:
        raise AddressError("empty phone number")
    candidates = [text]
    digits = text.replace(" ", "")
    if digits.isdigit() and len(digits) < MIN_FULL_NUMBER_DIGITS:
        raise AddressError("a short code, not a full phone number")
    if digits.isdigit():
        if digits.startswith("00"):
            candidates.insert(0, "+" + digits[2:])
        elif default_region is None or not digits.startswith("0"):
            candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise AddressError("not a valid phone number")


def mask_msisdn(number: str | None) -> str:
    """Mask a phone number for logs: keep the country prefix and last two digits."""
    if not number:
        return "-"
    if len(number) <= 5:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]
