"""Device identifiers, normalised at the edge: IMEI, IMSI and phone numbers (E.164).

Pure functions, no I/O.  Every parser returns the one canonical form the store
keeps (``imei``: 15 digits with a valid Luhn check digit; ``imsi``: 6-15
digits; ``msisdn``: E.164 such as ``+447700900123``) or raises
:class:`IdentityError` with a message that says what is wrong.

:func:`lookup_candidates` reads a string an operator typed (or a peer sent)
and says what it could be, most likely first: a 15-digit string with a valid
Luhn digit is an IMEI first, then an IMSI, then a phone number.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import re
from dataclasses import dataclass

import phonenumbers

_SEPARATORS = str.maketrans("", "", " -./()\t")

# MCCs whose networks use 3-digit MNCs (ITU-T E.212 practice): North America,
# the Caribbean, India (405), parts of Latin America.  Everywhere else: 2.
_THREE_DIGIT_MNC_MCCS = frozenset(
    {"302", "334", "338", "365", "376", "405", "708", "722", "732"}
    | {str(mcc) for mcc in range(310, 317)}
    | {str(mcc) for mcc in range(342, 357)}
)


class IdentityError(ValueError):
    """A device identifier (IMEI, IMSI, phone number) is malformed; the message says how."""


class IdentifierKind(enum.Enum):
    """What a lookup string is taken to be."""

    IMEI = "imei"
    IMSI = "imsi"
    MSISDN = "msisdn"


@dataclass(frozen=True)
class Identifier:
    """One reading of a lookup string: its kind and canonical value."""

    kind: IdentifierKind
    value: str


@dataclass(frozen=True)
class Imsi:
    """An IMSI split into MCC (country), MNC (network) and MSIN (subscriber)."""

    mcc: str
    mnc: str
    msin: str

    @property
    def value(self) -> str:
        """The IMSI as one digit string."""
        return self.mcc + self.mnc + self.msin


_DOUBLED = {str(d): (2 * d - 9 if d > 4 else 2 * d) for d in range(10)}


def luhn_check_digit(body: str) -> str:
    """Return the Luhn check digit for the 14-digit IMEI body ``body``."""
    total = sum(map(int, body[0::2])) + sum(_DOUBLED[c] for c in body[1::2])
    return str((10 - total % 10) % 10)


def _digits(raw: str, what: str) -> str:
    text = raw.strip().translate(_SEPARATORS)
    if not text:
        raise IdentityError(f"empty {what}")
    if not text.isascii() or not text.isdigit():
        raise IdentityError(f"{what} {raw.strip()!r} must contain only digits")
    return text


def is_valid_imei(text: str) -> bool:
    """True when ``text`` is exactly 15 ASCII digits with a correct Luhn check digit."""
    return (
        len(text) == 15
        and text.isascii()
        and text.isdigit()
        and luhn_check_digit(text[:14]) == text[14]
    )


def parse_imei(raw: str) -> str:
    """Return the canonical 15-digit IMEI for ``raw``.

    Separators (spaces, dashes, slashes, dots) are ignored.  An IMEISV (16
    digits: 14-digit IMEI body + 2-digit software version) maps to its IMEI
    by computing the check digit.  A wrong check digit is refused with a
    message that names the expected one.
    """
    text = _digits(raw, "IMEI")
    if len(text) == 16:
        return text[:14] + luhn_check_digit(text[:14])
    if len(text) == 14:
        raise IdentityError(
            f"IMEI {text} has 14 digits: the check digit is missing "
            f"(with it: {text}{luhn_check_digit(text)})"
        )
    if len(text) != 15:
        raise IdentityError(
            f"IMEI {text} has {len(text)} digits; expected 15 (or 16 for an IMEISV)"
        )
    expected = luhn_check_digit(text[:14])
    if text[14] != expected:
        raise IdentityError(
            f"IMEI {text} has a wrong check digit {text[14]}: expected {expected}"
        )
    return text


def mnc_length(mcc: str) -> int:
    """Number of MNC digits used in country ``mcc`` (3 in North America and a few others)."""
    return 3 if mcc in _THREE_DIGIT_MNC_MCCS else 2


def split_imsi(imsi: str) -> Imsi:
    """Split a canonical IMSI into MCC, MNC and MSIN."""
    mcc = imsi[:3]
    width = mnc_length(mcc)
    return Imsi(mcc=mcc, mnc=imsi[3 : 3 + width], msin=imsi[3 + width :])


def parse_imsi(raw: str) -> str:
    """Return the canonical IMSI (6 to 15 digits, MCC not 000) for ``raw``."""
    text = _digits(raw, "IMSI")
    if not 6 <= len(text) <= 15:
        raise IdentityError(f"IMSI {text} has {len(text)} digits; expected 6 to 15")
    if not _plausible_mcc(text[:3]):
        raise IdentityError(f"IMSI {text} starts with MCC {text[:3]}, which is not a country code")
    return text


def _plausible_mcc(mcc: str) -> bool:
    # Country MCCs start with 2-9; 001 is the ITU test network.
    return mcc == "001" or mcc[0] in "23456789"


def _national(digits: str, region: str) -> str | None:
    """``digits`` read in ``region`` (its trunk or international prefix included), if valid."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_msisdn(raw: str, default_region: str | None = None) -> str:
    """Return ``raw`` as an E.164 phone number (``+447700900123``).

    Accepted: international form with ``+`` or ``00``, national form
    (``07700900123``, ``(202) 555-0123``) when ``default_region`` (ISO 3166,
    e.g. ``GB``) is given, and international form without ``+``
    (``447700900123``, as SMSCs send it).  With a region, bare digits are read
    as a national number of that region first (or after its international
    prefix, ``011`` in the US), and as international only when that reading
    is not a valid number: ``(202) 555-0123`` in the US is +1 202..., never
    Egypt's +20 2....
    """
    text = raw.strip()
    if not text:
        raise IdentityError("empty phone number")
    compact = text.translate(_SEPARATORS)
    candidates: list[str] = []
    if compact.isascii() and compact.isdigit():
        if compact.startswith("00"):
            candidates.append("+" + compact[2:])
        elif compact.startswith("0"):
            if default_region is None:
                raise IdentityError(
                    f"phone number {text!r} is in national form: give it with its "
                    "country code or set a default region"
                )
            candidates.append(compact)
        elif default_region is not None:
            national = _national(compact, default_region)
            if national is not None:
                return national
            candidates.append("+" + compact)
        else:
            candidates.append("+" + compact)
    else:
        candidates.append(text)
    for candidate in candidates:
        fast = _fast_e164(candidate)
        if fast is not None:
            return fast
        try:
            number = phonenumbers.parse(candidate, default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise IdentityError(f"phone number {text!r} is not a valid number")


def _fast_e164(candidate: str) -> str | None:
    # International digits: skip phonenumbers.parse (about 45 us) when the
    # country code and length settle it; anything unusual takes the full parse.
    digits = candidate[1:]
    if not candidate.startswith("+") or not (digits.isascii() and digits.isdigit()):
        return None  # isdigit() alone takes Arabic-Indic and full-width digits
    if digits.startswith("0"):  # no country code starts with 0 (int() would drop it)
        return None
    for width in (1, 2, 3):
        code = int(digits[:width]) if len(digits) > width else 0
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[width:]
            if national.startswith("0"):
                return None
            prefix = _national_prefix_pattern(code)
            if prefix is not None and prefix.match(national):
                return None  # the full parser may strip or rewrite a prefix here
            return "+" + digits if _possible_length(code, len(national)) else None
    return None


@functools.lru_cache(maxsize=512)
def _national_prefix_pattern(code: int) -> re.Pattern[str] | None:
    region = phonenumbers.region_code_for_country_code(code)
    if region == "001":
        metadata = phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code)
    else:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return re.compile("")  # unknown: always take the full parse
    pattern = metadata.national_prefix_for_parsing
    if pattern is None and metadata.national_prefix_transform_rule is None:
        return None
    return re.compile(pattern or "")


_MAX_NATIONAL_DIGITS = 17  # the longest national number phonenumbers knows (E.164: 15 in all)


@functools.lru_cache(maxsize=4096)
def _possible_length(code: int, length: int) -> bool:
    # phonenumbers' "possible" test depends only on the country code and the
    # national number's length, so it can be cached on exactly those.
    if not 1 <= length <= _MAX_NATIONAL_DIGITS:
        return False
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int("1" * length))
    return bool(phonenumbers.is_possible_number(number))


def lookup_candidates(raw: str, default_region: str | None = None) -> tuple[Identifier, ...]:
    """Every reading of ``raw`` as a device identifier, most likely first.

    Order: IMEI (15 digits with a valid Luhn digit, or a 16-digit IMEISV),
    then IMSI, then phone number.  Text with a ``+`` or a national ``0``
    prefix is only a phone number (the ITU test network's ``001`` IMSIs
    excepted).  Raises :class:`IdentityError` when ``raw``
    is none of the three.
    """
    text = raw.strip()
    compact = text.translate(_SEPARATORS)
    found: list[Identifier] = []
    all_digits = compact.isascii() and compact.isdigit()
    if all_digits:
        if len(compact) == 16 or is_valid_imei(compact):
            found.append(Identifier(IdentifierKind.IMEI, parse_imei(compact)))
        if 6 <= len(compact) <= 15 and _plausible_mcc(compact[:3]):
            found.append(Identifier(IdentifierKind.IMSI, compact))
    with contextlib.suppress(IdentityError):
        found.append(Identifier(IdentifierKind.MSISDN, parse_msisdn(text, default_region)))
    if not found:
        raise IdentityError(
            f"{text!r} is not an IMEI (15 digits, valid check digit), an IMSI "
            "(6-15 digits) or a phone number"
        )
    return tuple(found)


def classify(raw: str, default_region: str | None = None) -> Identifier:
    """The most likely reading of ``raw`` (see :func:`lookup_candidates`)."""
    return lookup_candidates(raw, default_region)[0]


def mask_msisdn(number: str | None) -> str:
    """Mask a phone number or IMSI for logs: keep the first three and last two characters."""
    if not number:
        return "-"
    if len(number) <= 5:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]
