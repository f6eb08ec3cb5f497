"""Text decoding for the HTTP adapters: the shared codings, with errors as bad callbacks."""

from __future__ import annotations

from sms_gateway import coding
from sms_gateway.coding import DC_BINARY, DC_DEFAULT, DC_IA5, DC_LATIN1, DC_UCS2
from sms_gateway.http.callback import MalformedCallbackError

__all__ = ["DC_BINARY", "DC_DEFAULT", "DC_IA5", "DC_LATIN1", "DC_UCS2", "decode_gsm7",
           "decode_text"]


def decode_gsm7(septets: bytes) -> str:
    """Decode unpacked GSM 03.38 septets; invalid octets make the callback malformed."""
    try:
        return coding.decode_gsm7_unpacked(septets)
    except coding.TextCodingError as exc:
        raise MalformedCallbackError(str(exc)) from None


def decode_text(payload: bytes, data_coding: int) -> str | None:
    """The text of ``payload`` for a text ``data_coding``; None for binary codings."""
    try:
        return coding.decode_text(payload, data_coding)
    except coding.TextCodingError as exc:
        raise MalformedCallbackError(str(exc)) from None
