"""Kannel callbacks: sms-service ``get-url`` / ``post-url`` and ``dlr-url``.

Pure functions from a :class:`CallbackRequest` to a :class:`ParsedCallback`.
The field names are the ones our documented Kannel configuration puts in the
URLs (docs/http-gateways.md)::

    get-url  = ".../inbound?token=T&id=%I&from=%p&to=%P&text=%b&udh=%u"
               "&coding=%c&charset=%C&smsc=%i&time=%T"
    post-url = ".../inbound?token=T&id=%I"   (text in the body, X-Kannel-* headers;
                                              X-Kannel-UDH url-encoded like %u)
    dlr-url  = ".../receipt?token=T&ref=<ours>&type=%d&smsc_id=%F&answer=%A&smsc=%i&ts=%T"

Kannel's ``coding`` is 0 (7-bit text), 1 (8-bit binary) or 2 (UCS-2).
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import re
from datetime import datetime
from urllib.parse import unquote_to_bytes

from sms_gateway.errors import UdhError
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.http.callback import CallbackRequest, MalformedCallbackError, ParsedCallback
from sms_gateway.http.coding import DC_BINARY, DC_DEFAULT, DC_UCS2
from sms_gateway.http.fields import Fields, from_unix, normalise_address
from sms_gateway.udh import Udh, split_user_data

KANNEL_CODING_TO_DATA_CODING = {0: DC_DEFAULT, 1: DC_BINARY, 2: DC_UCS2}

# Kannel dlr-mask bits, as %d reports them (one bit per callback).
DLR_DELIVERED = 1
DLR_FAILED = 2
DLR_BUFFERED = 4
DLR_SMSC_ACK = 8
DLR_SMSC_NACK = 16
DLR_TYPES: dict[int, DeliveryStatus] = {
    DLR_DELIVERED: DeliveryStatus.DELIVERED,
    DLR_FAILED: DeliveryStatus.UNDELIVERABLE,
    DLR_BUFFERED: DeliveryStatus.ENROUTE,
    DLR_SMSC_ACK: DeliveryStatus.ACCEPTED,
    DLR_SMSC_NACK: DeliveryStatus.REJECTED,
}
# A failed (type 2) report is refined by the SMSC's receipt text (%A) when it has stat:.
_FAILED_STAT = {
    "EXPIRED": DeliveryStatus.EXPIRED,
    "DELETED": DeliveryStatus.DELETED,
    "REJECTD": DeliveryStatus.REJECTED,
    "UNKNOWN": DeliveryStatus.UNKNOWN,
    "UNDELIV": DeliveryStatus.UNDELIVERABLE,
}
_STAT_RE = re.compile(r"\bstat:([A-Za-z]+)")
_ERR_RE = re.compile(r"\berr:([0-9A-Za-z]+)")
_UCS2_NAMES = {"UTF-16BE", "UCS-2", "UCS2", "UTF-16", "ISO-10646-UCS-2"}
# Python codecs that are not character sets: ``undefined`` always fails, ``punycode`` and
# ``idna`` are for host names (and punycode is slow on long input), the escape codecs
# read backslash sequences.  Codecs such as rot13 or hex are refused as not text encodings.
_NOT_CHARSETS = frozenset({"undefined", "punycode", "idna", "unicode-escape",
                           "raw-unicode-escape"})


def parse_inbound(request: CallbackRequest, *, link: str, region: str | None,
                  now: datetime) -> ParsedCallback:
    """Parse a Kannel sms-service callback (``get-url`` GET or ``post-url`` POST)."""
    fields = Fields.from_request(request, form_body=False)
    headers = request.headers
    sender = normalise_address(_pick(fields, "from", headers.get("x-kannel-from")), region,
                               "from")
    receiver = normalise_address(_pick(fields, "to", headers.get("x-kannel-to")), region, "to")
    coding_text = _pick(fields, "coding", headers.get("x-kannel-coding")) or "0"
    try:
        coding = int(coding_text)
    except ValueError:
        coding = -1
    if coding not in KANNEL_CODING_TO_DATA_CODING:
        raise MalformedCallbackError(f"field 'coding': expected 0, 1 or 2, got {coding_text!r}")
    if request.method == "POST":
        raw = request.body
        charset = fields.text("charset") or request.content_type_param("charset")
    else:
        text_field = fields.raw("text")
        if text_field is None:
            raise MalformedCallbackError("missing field 'text'")
        raw = text_field
        charset = fields.text("charset")
    udh = _parse_udh(fields.raw("udh"), headers.get("x-kannel-udh"))
    payload, text = _decode(raw, coding, charset)
    gateway_id = fields.text("id")
    extra = {"kannel_coding": str(coding)}
    for name, value in (("charset", charset), ("smsc", _pick(fields, "smsc",
                                                              headers.get("x-kannel-smsc"))),
                        ("gateway_time", _pick(fields, "time", headers.get("x-kannel-time")))):
        if value:
            extra[name] = value
    message = InboundMessage(
        channel=Channel.HTTP, link=link, sender=sender, receiver=receiver, payload=payload,
        data_coding=KANNEL_CODING_TO_DATA_CODING[coding], received_at=now, udh=udh,
        text=text, gateway_message_id=gateway_id, extra=extra)
    external_id = gateway_id or _content_id(sender, receiver, extra.get("gateway_time"),
                                            udh, raw)
    return ParsedCallback(message, external_id)


def parse_receipt(request: CallbackRequest, *, link: str, region: str | None,
                  now: datetime) -> ParsedCallback:
    """Parse a Kannel ``dlr-url`` callback (our ``ref`` plus %d, %F, %A, %i, %T)."""
    del region
    fields = Fields.from_request(request, form_body=True)
    ref = fields.required_text("ref")
    dlr_type = fields.integer("type")
    if dlr_type is None:
        raise MalformedCallbackError("missing field 'type'")
    if dlr_type not in DLR_TYPES:
        raise MalformedCallbackError(
            f"field 'type': expected one of 1, 2, 4, 8, 16, got {dlr_type}")
    answer = fields.text("answer")
    status = DLR_TYPES[dlr_type]
    error_code = None
    if answer:
        stat = _STAT_RE.search(answer)
        if dlr_type == DLR_FAILED and stat:
            status = _FAILED_STAT.get(stat.group(1).upper(), status)
        err = _ERR_RE.search(answer)
        error_code = err.group(1) if err else None
    extra = {"kannel_type": str(dlr_type)}
    for name in ("smsc_id", "smsc"):
        value = fields.text(name)
        if value:
            extra["smsc_message_id" if name == "smsc_id" else name] = value
    receipt = DeliveryReceipt(
        channel=Channel.HTTP, link=link, message_id=ref, status=status, received_at=now,
        error_code=error_code, done_at=from_unix(fields.text("ts"), "ts"), raw_text=answer,
        extra=extra)
    return ParsedCallback(receipt, f"{ref}:{dlr_type}")


def _pick(fields: Fields, name: str, header: str | None) -> str | None:
    value = fields.text(name)
    if value is not None and value.strip():
        return value
    return header.strip() if header and header.strip() else None


def _parse_udh(query_value: bytes | None, header_value: str | None) -> Udh | None:
    """UDH from the ``udh`` query field or the ``X-Kannel-UDH`` header.

    smsbox url-encodes the UDH octets in both (``octstr_url_encode``: ``%XX``
    for most octets, ``+`` for 0x20, letters, digits and ``-_.!~*'()`` as
    they are).  The query field arrives already decoded; the header is decoded
    here.  Hex (``0605040B8423F0``) is still accepted in either.
    """
    raw = _udh_octets(query_value) if query_value else b""
    if not raw and header_value and header_value.strip():
        encoded = header_value.strip().encode("latin-1", "replace")
        raw = _udh_octets(unquote_to_bytes(encoded.replace(b"+", b" ")))
    if not raw:
        return None
    try:
        udh, rest = split_user_data(raw)
    except UdhError as exc:
        raise MalformedCallbackError(f"field 'udh': {exc}") from None
    if rest:
        raise MalformedCallbackError("field 'udh': its length octet does not match its size")
    return udh


def _udh_octets(value: bytes) -> bytes:
    # A UDH starts with its own length (UDHL), which tells hex text from raw octets.
    stripped = value.strip()
    if stripped and len(stripped) % 2 == 0:
        try:
            decoded = binascii.unhexlify(stripped)
        except (binascii.Error, ValueError):
            decoded = b""
        if decoded and decoded[0] == len(decoded) - 1:
            return decoded
    if value and value[0] == len(value) - 1:
        return value
    raise MalformedCallbackError("field 'udh' is neither hex nor a user data header")


def _decode(raw: bytes, coding: int, charset: str | None) -> tuple[bytes, str | None]:
    if coding == 1:
        return raw, None
    name = (charset or ("UTF-16BE" if coding == 2 else "UTF-8")).upper()
    codec = "utf-16-be" if name in _UCS2_NAMES else _text_codec(name, charset)
    try:
        text = raw.decode(codec)
        text.encode("utf-8")  # no unpaired surrogate (UTF-7 and escape codecs can make one)
    except LookupError:  # rot13, hex, zlib...: codecs, but not text encodings
        raise MalformedCallbackError(f"field 'charset': {charset!r} is not a charset") from None
    except (UnicodeError, ValueError):
        raise MalformedCallbackError(f"text is not valid {name}") from None
    if coding == 2 and name not in _UCS2_NAMES:
        return text.encode("utf-16-be"), text
    return raw, text


def _text_codec(name: str, charset: str | None) -> str:
    """Python's codec for a charset name, refusing codecs that are not charsets."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # unknown, or a name with a NUL in it
        raise MalformedCallbackError(f"field 'charset': unknown charset {charset!r}") from None
    if info.name in _NOT_CHARSETS:
        raise MalformedCallbackError(f"field 'charset': {charset!r} is not a charset")
    return info.name


def _content_id(sender: str, receiver: str, when: str | None, udh: Udh | None,
                raw: bytes) -> str:
    # Without %I, a retry is recognised by its content (sender, receiver, time, data).
    digest = hashlib.sha256()
    for part in (sender, receiver, when or "", repr(udh)):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(raw)
    return "sha256:" + digest.hexdigest()[:40]
