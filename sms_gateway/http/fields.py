"""Field access for form-style callbacks (query string and urlencoded bodies).

Every accessor names the field in its error, so a malformed callback is stored
with a clear reason (``field 'type': expected an integer, got 'x'``).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache

from sms_gateway.addresses import to_e164
from sms_gateway.errors import AddressError
from sms_gateway.http.callback import (
    CallbackRequest,
    MalformedCallbackError,
    parse_query_bytes,
)

FORM_TYPE = "application/x-www-form-urlencoded"
MIN_E164_DIGITS = 7
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class Fields:
    """The first value of each named field, as bytes, with typed accessors."""

    def __init__(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, bytes] = {}
        for key, value in pairs:
            self._values.setdefault(key.decode("latin-1"), value)

    @classmethod
    def from_request(cls, request: CallbackRequest, *, form_body: bool) -> Fields:
        """Query parameters, plus the urlencoded body of a POST when ``form_body``."""
        pairs = list(request.query)
        if form_body and request.method == "POST" and request.body:
            if request.content_type not in (FORM_TYPE, ""):
                raise MalformedCallbackError(
                    f"expected a {FORM_TYPE} body, got {request.content_type!r}")
            pairs = list(parse_query_bytes(request.body)) + pairs
        return cls(pairs)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def names(self) -> list[str]:
        """The field names present."""
        return list(self._values)

    def raw(self, name: str) -> bytes | None:
        """The field's bytes, or None when absent."""
        return self._values.get(name)

    def text(self, name: str) -> str | None:
        """The field as UTF-8 text, or None when absent or empty; a NUL is an error."""
        value = self._values.get(name)
        if not value:
            return None
        if b"\0" in value:  # gateways send C strings; PostgreSQL text cannot hold a NUL
            raise MalformedCallbackError(f"field {name!r} contains a NUL character")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedCallbackError(f"field {name!r} is not valid UTF-8") from None

    def required_text(self, name: str) -> str:
        """The field as UTF-8 text; missing or empty is an error."""
        value = self.text(name)
        if value is None or not value.strip():
            raise MalformedCallbackError(f"missing field {name!r}")
        return value.strip()

    def integer(self, name: str, default: int | None = None) -> int | None:
        """The field as a decimal integer, ``default`` when absent or empty."""
        value = self.text(name)
        if value is None or not value.strip():
            return default
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise MalformedCallbackError(
                f"field {name!r}: expected an integer, got {value[:20]!r}") from None

    def hex_bytes(self, name: str) -> bytes | None:
        """The field as hex-encoded bytes, None when absent or empty."""
        value = self.text(name)
        if value is None or not value.strip():
            return None
        return decode_hex(value.strip(), name)


def decode_hex(value: str, name: str) -> bytes:
    """Decode hex digits, naming ``name`` on error."""
    try:
        return binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise MalformedCallbackError(f"field {name!r} is not valid hex") from None


def normalise_address(raw: str | None, region: str | None, name: str) -> str:
    """E.164 for phone numbers; short codes and alphanumeric senders as given.

    A number of fewer than :data:`MIN_E164_DIGITS` digits is a short code
    (``84433``), never a national number.  Results are cached: our own
    receiving numbers and active devices repeat, and parsing is costly.
    """
    if raw is None or not raw.strip():
        raise MalformedCallbackError(f"missing field {name!r}")
    return _normalise(raw.strip(), region)


@lru_cache(maxsize=16384)
def _normalise(raw: str, region: str | None) -> str:
    digits = raw.lstrip("+")
    if digits.isdigit() and len(digits) < MIN_E164_DIGITS:
        return raw
    if _E164.match(raw):
        return raw  # already canonical E.164 (Kannel adds "+" for international numbers)
    try:
        return to_e164(raw, region)
    except AddressError:
        return raw


def from_unix(value: str | None, name: str) -> datetime | None:
    """A UNIX timestamp field as an aware UTC datetime (None when absent)."""
    if value is None or not value.strip():
        return None
    try:
        return datetime.fromtimestamp(int(value.strip()), UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedCallbackError(
            f"field {name!r}: expected a UNIX time, got {value[:20]!r}") from None
