"""SMS text codings by SMPP ``data_coding``, shared by the SMPP and HTTP sides.

GSM 03.38 text travels unpacked in SMPP and in gateway callbacks (one septet
per octet).  :func:`decode_text` returns None for binary codings (8-bit data,
unknown schemes): those payloads are kept as bytes only.
"""

from __future__ import annotations

from sms_gateway.errors import RemoteError

DC_DEFAULT = 0x00
DC_IA5 = 0x01
DC_LATIN1 = 0x03
DC_BINARY = 0x04
DC_UCS2 = 0x08

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
                  0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}
_GSM7_REVERSE = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != 0x1B}
_GSM7_EXT_REVERSE = {ch: code for code, ch in GSM7_EXTENSION.items()}


class TextCodingError(RemoteError):
    """The payload is not valid text in its declared data_coding."""


def decode_gsm7_unpacked(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets, escapes included; an octet above 0x7F is an error."""
    out: list[str] = []
    escape = False
    for octet in data:
        if octet > 0x7F:
            raise TextCodingError("GSM 7-bit text has an octet above 0x7F")
        if escape:
            out.append(GSM7_EXTENSION.get(octet, " "))
            escape = False
        elif octet == 0x1B:
            escape = True
        else:
            out.append(GSM7_BASIC[octet])
    return "".join(out)


def encode_gsm7_unpacked(text: str) -> bytes | None:
    """Encode ``text`` as unpacked GSM 03.38 septets, or None if a character has no mapping."""
    out = bytearray()
    for ch in text:
        code = _GSM7_REVERSE.get(ch)
        if code is not None:
            out.append(code)
        elif ch in _GSM7_EXT_REVERSE:
            out += bytes((0x1B, _GSM7_EXT_REVERSE[ch]))
        else:
            return None
    return bytes(out)


def decode_text(payload: bytes, data_coding: int) -> str | None:
    """The text of ``payload`` for a text ``data_coding``; None for binary codings.

    Raises :class:`TextCodingError` when the bytes are not valid in that coding.
    """
    coding = data_coding & 0x0F if data_coding & 0xF0 == 0xF0 else data_coding
    try:
        if coding == DC_DEFAULT:
            return decode_gsm7_unpacked(payload)
        if coding == DC_IA5:
            return payload.decode("ascii")
        if coding == DC_LATIN1:
            return payload.decode("latin-1")
        if coding == DC_UCS2:
            return payload.decode("utf-16-be")
    except UnicodeDecodeError:
        raise TextCodingError(f"payload is not valid text for data_coding {data_coding}") from None
    return None
