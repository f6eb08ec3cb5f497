"""Our own JSON callback format (for hosted gateways and in-house bridges).

Always POST, ``Content-Type: application/json``, signed with the
``X-Mepl-Signature`` header (see :mod:`sms_gateway.http.auth`).  The two
documents are specified in docs/http-gateways.md:

inbound::  {"id", "from", "to", "data_coding"?, "payload_hex" | "text",
            "udh_hex"?, "smsc_message_id"?}
receipt::  {"id", "message_id", "status", "error_code"?, "smsc_message_id"?,
            "submitted_at"?, "done_at"?}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sms_gateway.errors import UdhError
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.http.callback import CallbackRequest, MalformedCallbackError, ParsedCallback
from sms_gateway.http.coding import DC_UCS2, decode_text
from sms_gateway.http.fields import decode_hex, normalise_address
from sms_gateway.udh import split_user_data

JSON_TYPE = "application/json"
_STATUSES = {status.value: status for status in DeliveryStatus}


def load_object(request: CallbackRequest) -> dict[str, Any]:
    """The body as a JSON object; anything else is malformed."""
    if request.content_type != JSON_TYPE:
        raise MalformedCallbackError(f"expected Content-Type {JSON_TYPE}, "
                                     f"got {request.content_type or 'none'!r}")
    try:
        document = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedCallbackError(f"body is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise MalformedCallbackError("body is not valid UTF-8 JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise MalformedCallbackError("body must be a JSON object")
    return document


def parse_inbound(request: CallbackRequest, *, link: str, region: str | None,
                  now: datetime) -> ParsedCallback:
    """Parse an inbound-message document."""
    doc = load_object(request)
    gateway_id = _string(doc, "id", required=True)
    sender = normalise_address(_string(doc, "from", required=True), region, "from")
    receiver = normalise_address(_string(doc, "to", required=True), region, "to")
    payload_hex = _string(doc, "payload_hex")
    text = _string(doc, "text", nul_ok=True)
    if (payload_hex is None) == (text is None):
        raise MalformedCallbackError("exactly one of 'payload_hex' and 'text' is required")
    if text is not None:
        data_coding, payload = DC_UCS2, text.encode("utf-16-be")  # _string refused surrogates
    else:
        assert payload_hex is not None
        payload = decode_hex(payload_hex, "payload_hex")
        data_coding = _integer(doc, "data_coding", 4)
        if not 0 <= data_coding <= 0xFF:
            raise MalformedCallbackError("field 'data_coding' must be 0..255")
        text = decode_text(payload, data_coding)
    udh = None
    udh_hex = _string(doc, "udh_hex")
    if udh_hex:
        try:
            udh, rest = split_user_data(decode_hex(udh_hex, "udh_hex"))
        except UdhError as exc:
            raise MalformedCallbackError(f"field 'udh_hex': {exc}") from None
        if rest:
            raise MalformedCallbackError("field 'udh_hex': its length octet does not match")
    message = InboundMessage(
        channel=Channel.HTTP, link=link, sender=sender, receiver=receiver, payload=payload,
        data_coding=data_coding, received_at=now, udh=udh, text=text,
        smsc_message_id=_string(doc, "smsc_message_id"), gateway_message_id=gateway_id)
    return ParsedCallback(message, gateway_id)


def parse_receipt(request: CallbackRequest, *, link: str, region: str | None,
                  now: datetime) -> ParsedCallback:
    """Parse a delivery-receipt document."""
    del region
    doc = load_object(request)
    event_id = _string(doc, "id", required=True)
    status_text = _string(doc, "status", required=True)
    assert status_text is not None
    status = _STATUSES.get(status_text.lower())
    if status is None:
        raise MalformedCallbackError(
            f"field 'status': expected one of {', '.join(_STATUSES)}, got {status_text!r}")
    extra = {}
    smsc_id = _string(doc, "smsc_message_id")
    if smsc_id:
        extra["smsc_message_id"] = smsc_id
    receipt = DeliveryReceipt(
        channel=Channel.HTTP, link=link, message_id=str(_string(doc, "message_id",
                                                                required=True)),
        status=status, received_at=now, error_code=_string(doc, "error_code"),
        submitted_at=_time(doc, "submitted_at"), done_at=_time(doc, "done_at"),
        gateway_message_id=event_id, extra=extra)
    return ParsedCallback(receipt, event_id)


def _string(doc: dict[str, Any], name: str, *, required: bool = False,
            nul_ok: bool = False) -> str | None:
    """A string (or integer) field.  JSON's ``\\ud800`` escapes can carry unpaired
    surrogates, which have no UTF-8 or UTF-16 form: refused, and so is a NUL
    (PostgreSQL text cannot hold one) unless ``nul_ok`` (message text)."""
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise MalformedCallbackError(f"missing field {name!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedCallbackError(f"field {name!r} must be a string")
    if isinstance(value, int):
        return str(value)
    if "\0" in value and not nul_ok:
        raise MalformedCallbackError(f"field {name!r} contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedCallbackError(
                f"field {name!r} contains an unpaired surrogate") from None
    return value


def _integer(doc: dict[str, Any], name: str, default: int) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedCallbackError(f"field {name!r} must be an integer")
    return value


def _time(doc: dict[str, Any], name: str) -> datetime | None:
    value = _string(doc, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedCallbackError(f"field {name!r}: expected ISO 8601, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
