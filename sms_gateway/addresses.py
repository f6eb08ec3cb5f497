"""MSISDN normalisation at the edge: every number in or out is E.164 (``+447700900123``)."""

from __future__ import annotations

import phonenumbers

from sms_gateway.errors import AddressError

MIN_FULL_NUMBER_DIGITS = 7
"""Bare digit strings shorter than this are short codes (``84433``), never E.164."""


_SEPARATORS = str.maketrans("", "", " -.()/")


def normalise_region(code: str) -> str:
    """A default region as phonenumbers reads it: ``" gb "`` to ``"GB"``.

    Lower case is accepted and upper-cased; a code that is not an ISO 3166
    alpha-2 region with a numbering plan raises :class:`AddressError`.
    """
    region = code.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        hint = " (the United Kingdom is GB)" if region == "UK" else ""
        raise AddressError(f"unknown region {code!r}{hint}: use an ISO 3166 two-letter "
                           "code such as GB, US, DE or FR")
    return region


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Parse ``raw`` (any common written form) and return it in E.164.

    A number with ``+`` or ``00``, or with the international prefix of
    ``default_region`` (``011`` in the US), is international.  Any other
    digits are a national number of ``default_region`` (ISO 3166 alpha-2, e.g.
    ``"GB"``, any case): ``(202) 555-0123`` in the US, ``07700 900123`` in GB;
    a number that starts with the region's own country code (``447700900123``
    in GB) is read as such.  They are never guessed to be international in
    another country.  Without ``default_region``, bare digits are
    international (``447700900123``, as SMSCs send them).  Letters are refused,
    never read as keypad digits.  A short code (fewer
    than 7 bare digits) raises :class:`AddressError`: callers keep it as given
    rather than invent a country prefix for it.
    """
    region = normalise_region(default_region) if default_region is not None else None
    text = raw.strip()
    if not text:
        raise AddressError("empty phone number")
    compact = text.translate(_SEPARATORS)
    if any(ch.isalpha() for ch in compact):
        raise AddressError("letters in a phone number")  # never keypad digits (vanity)
    if compact.isascii() and compact.isdigit():
        if len(compact) < MIN_FULL_NUMBER_DIGITS:
            raise AddressError("a short code, not a full phone number")
        if compact.startswith("00"):
            text = "+" + compact[2:]
        elif region is None:
            text = "+" + compact
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        where = f" in region {region}" if region is not None and not text.startswith(
            "+") else ""
        raise AddressError(f"not a valid phone number{where}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_msisdn(number: str | None) -> str:
    """Mask a phone number for logs: keep the country prefix and last two digits."""
    if not number:
        return "-"
    if len(number) <= 5:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]
