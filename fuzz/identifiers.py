"""Phone numbers, IMEIs and IMSIs as operators type them and peers send them.

Contract: :func:`sms_gateway.addresses.to_e164` and ``normalise_region``
raise only AddressError; :mod:`blobstore.identity` (``parse_imei``,
``parse_imsi``, ``parse_msisdn``, ``lookup_candidates``, ``classify``) raises
only IdentityError; the HTTP callbacks' address normaliser and the SMPP one
never raise; the device CSV import turns any field into a row or a row
error; a valid number accepted once is a fixed point (parsing the
canonical form gives it back).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import phonenumbers

from fuzz._common import Reader, expect, instrumented, run

with instrumented(__name__ == "__main__"):
    from blobstore.identity import (
        IdentityError,
        classify,
        is_valid_imei,
        lookup_candidates,
        parse_imei,
        parse_imsi,
        parse_msisdn,
    )
    from blobstore.importer import ImportRow, RowError, parse_csv
    from sms_gateway.addresses import normalise_region, to_e164
    from sms_gateway.errors import AddressError
    from sms_gateway.http.fields import normalise_address as http_address
    from sms_gateway.smpp.inbound import normalise_address as smpp_address

TARGET = "identifiers"
E164 = re.compile(r"\+[1-9][0-9]*")  # country codes never start with 0
REGIONS = (None, "GB", "US", "DE", "IN", "gb", "UK", "", "001")
ALPHABETS = ("0123456789", "0123456789+ -()./", "0123456789+#*abcXYZ\t\u0660\u0661\uff11",
             "")


def text_from(r: Reader) -> str:
    """A string from one of a few alphabets (mostly digits), or raw bytes as text."""
    alphabet = r.pick(ALPHABETS)
    if r.flag():
        length = r.u16() % 6000 if r.u8() == 0xFF else r.u8() % 24
        pattern = r.chunk(16) or b"\x00"
        raw = (pattern * (length // len(pattern) + 1))[:length]
    else:
        raw = r.chunk(40)
    if not alphabet:
        return raw.decode("utf-8", "replace")
    return "".join(alphabet[b % len(alphabet)] for b in raw)


def valid(e164: str) -> bool:
    """Valid for phonenumbers (a real range of a real numbering plan) and already in its
    canonical form (``+49 0...`` is not: a parse strips one trunk zero)."""
    number = phonenumbers.parse(e164)
    return bool(phonenumbers.is_valid_number(number)) and phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.E164) == e164


def one_input(data: bytes) -> None:
    """Every parser on one string, with one default region."""
    r = Reader(data)
    region = r.pick(REGIONS)
    text = text_from(r)
    if region is not None:
        expect(lambda: normalise_region(region), AddressError)
    e164 = expect(lambda: to_e164(text, region), AddressError)
    if e164 is not None:
        assert E164.fullmatch(e164), (text, e164)
        if valid(e164):  # an invalid one may not be (see docs/fuzzing.md)
            assert to_e164(e164) == e164
    imei = expect(lambda: parse_imei(text), IdentityError)
    if imei is not None:
        assert is_valid_imei(imei) and parse_imei(imei) == imei
    imsi = expect(lambda: parse_imsi(text), IdentityError)
    if imsi is not None:
        assert parse_imsi(imsi) == imsi
    id_region = region.upper() if region and len(region) == 2 else None
    msisdn = expect(lambda: parse_msisdn(text, id_region), IdentityError)
    if msisdn is not None:
        assert E164.fullmatch(msisdn), (text, msisdn)
    if msisdn is not None and valid(msisdn):
        assert parse_msisdn(msisdn) == msisdn, (text, msisdn)
    candidates = expect(lambda: lookup_candidates(text, id_region), IdentityError)
    if candidates is not None:
        assert candidates[0] == classify(text, id_region)
    http_region = id_region if id_region in (None, "GB", "US", "DE", "IN") else None
    if text.strip():
        http_address(text, http_region, "from")
    smpp_address(text, r.u8() % 8)
    rows = list(parse_csv(["imei,imsi,phone,group\n", f"{text},{text},{text},g\n",
                           f"490154203237518,,{text},\n"], id_region))
    assert all(isinstance(row, ImportRow | RowError) for row in rows)


def seeds() -> list[bytes]:
    """Numbers in several written forms, an IMEI, an IMSI, a very long digit string."""
    def digits(s: str) -> bytes:
        return bytes((len(s),)) + bytes(ord(c) - 48 for c in s)
    return [b"\x01\x00\x00" + digits("447700900123"), b"\x02\x00\x00" + digits("2025550123"),
            b"\x00\x00\x00" + digits("490154203237518"), b"\x01\x00\x00" + digits(
                "234150123456789"), b"\x00\x01\x01\xff\x10\x88\x03\x01\x02",
            b"\x00\x03\x00" + b"\x0e+447700900123"]


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
