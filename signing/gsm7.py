"""The GSM 7-bit default alphabet (3GPP TS 23.038 6.2.1): septets and packing.

Used for notification text in frames (the ``gsm7`` encoding) and to prove that
the text armouring survives a GSM-7 gateway.  ``encode_septets`` maps text to
septet values (extension characters take two: ESC then the code), ``pack`` and
``unpack`` convert between septets and octets (LSB first, as on the air).
"""

from __future__ import annotations

from signing.errors import EncodingError

BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
             "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
ESC = 0x1B
assert len(BASIC) == 128

_BASIC_INDEX = {ch: i for i, ch in enumerate(BASIC) if i != ESC}
_EXT_REVERSE = {v: k for k, v in EXTENSION.items()}


def is_basic(text: str) -> bool:
    """True when every character of ``text`` is in the basic table (one septet each)."""
    return all(ch in _BASIC_INDEX for ch in text)


def is_gsm7(text: str) -> bool:
    """True when ``text`` can be written in the default alphabet plus its extension."""
    return all(ch in _BASIC_INDEX or ch in EXTENSION for ch in text)


def encode_septets(text: str) -> bytes:
    """Return the septet values (one per byte, 0..127) of ``text``."""
    out = bytearray()
    for ch in text:
        code = _BASIC_INDEX.get(ch)
        if code is not None:
            out.append(code)
        elif ch in EXTENSION:
            out += bytes((ESC, EXTENSION[ch]))
        else:
            raise EncodingError(f"character {ch!r} is not in the GSM 7-bit alphabet")
    return bytes(out)


def decode_septets(septets: bytes) -> str:
    """Inverse of :func:`encode_septets`; unknown escapes raise :class:`EncodingError`."""
    out: list[str] = []
    escape = False
    for value in septets:
        if value > 0x7F:
            raise EncodingError("septet value above 127")
        if escape:
            ch = _EXT_REVERSE.get(value)
            if ch is None:
                raise EncodingError(f"unknown GSM 7-bit escape 0x{value:02x}")
            out.append(ch)
            escape = False
        elif value == ESC:
            escape = True
        else:
            out.append(BASIC[value])
    if escape:
        raise EncodingError("GSM 7-bit text ends with an escape")
    return "".join(out)


def pack(septets: bytes) -> bytes:
    """Pack septets into octets, least significant bits first (TS 23.038 6.1.2.1)."""
    out = bytearray()
    acc = 0
    bits = 0
    for value in septets:
        acc |= (value & 0x7F) << bits
        bits += 7
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack(octets: bytes, count: int) -> bytes:
    """Unpack ``count`` septets from packed ``octets``."""
    if (count * 7 + 7) // 8 != len(octets):
        raise EncodingError("packed length does not match the septet count")
    value = int.from_bytes(octets, "little")
    return bytes((value >> (7 * i)) & 0x7F for i in range(count))
