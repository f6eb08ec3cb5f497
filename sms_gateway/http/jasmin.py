"""Jasmin callbacks: the HTTP connector's MO throw and the DLR thrower.

Jasmin posts (or gets) urlencoded fields.  MO: ``id``, ``from``, ``to``,
``origin-connector``, ``coding``, ``content`` (raw octets), ``binary`` (the
same octets in hex), ``priority``, ``validity``, ``tlv_params``.  DLR level 1:
``id``, ``message_status`` (an ``ESME_*`` command status), ``level``; level 2
or 3 adds ``id_smsc``, ``sub``, ``dlvrd``, ``subdate``, ``donedate``
(``YYMMDDhhmm``), ``err`` and ``text``, and ``message_status`` is then the
receipt's ``stat`` (``DELIVRD``, ``UNDELIV``...).  The success reply must be
exactly ``ACK/Jasmin``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.http.callback import CallbackRequest, MalformedCallbackError, ParsedCallback
from sms_gateway.http.coding import decode_text
from sms_gateway.http.fields import Fields, normalise_address

ACK_BODY = b"ACK/Jasmin"

STAT_TO_STATUS = {
    "DELIVRD": DeliveryStatus.DELIVERED,
    "EXPIRED": DeliveryStatus.EXPIRED,
    "DELETED": DeliveryStatus.DELETED,
    "UNDELIV": DeliveryStatus.UNDELIVERABLE,
    "ACCEPTD": DeliveryStatus.ACCEPTED,
    "UNKNOWN": DeliveryStatus.UNKNOWN,
    "REJECTD": DeliveryStatus.REJECTED,
    "ENROUTE": DeliveryStatus.ENROUTE,
}
_MO_EXTRA = ("origin-connector", "priority", "validity", "tlv_params")
_DLR_EXTRA = ("id_smsc", "sub", "dlvrd", "text")


def status_for(message_status: str) -> DeliveryStatus:
    """Map Jasmin's ``message_status`` (ESME_* or a receipt stat) to our vocabulary."""
    value = message_status.strip().upper()
    if value == "ESME_ROK":
        return DeliveryStatus.ACCEPTED
    if value.startswith("ESME_"):
        return DeliveryStatus.REJECTED
    return STAT_TO_STATUS.get(value, DeliveryStatus.UNKNOWN)


def parse_inbound(request: CallbackRequest, *, link: str, region: str | None,
                  now: datetime) -> ParsedCallback:
    """Parse a Jasmin MO callback (GET query or POST form)."""
    fields = Fields.from_request(request, form_body=True)
    gateway_id = fields.required_text("id")
    sender = normalise_address(fields.text("from"), region, "from")
    receiver = normalise_address(fields.text("to"), region, "to")
    coding = fields.integer("coding", 0)
    assert coding is not None
    if not 0 <= coding <= 0xFF:
        raise MalformedCallbackError(f"field 'coding': {coding} is not an SMPP data_coding")
    payload = fields.hex_bytes("binary")
    if payload is None:
        payload = fields.raw("content")
        if payload is None:
            raise MalformedCallbackError("missing field 'content'")
    extra = {name: value for name in _MO_EXTRA if (value := fields.text(name))}
    message = InboundMessage(
        channel=Channel.HTTP, link=link, sender=sender, receiver=receiver, payload=payload,
        data_coding=coding, received_at=now, text=decode_text(payload, coding),
        gateway_message_id=gateway_id, extra=extra)
    return ParsedCallback(message, gateway_id)


def parse_receipt(request: CallbackRequest, *, link: str, region: str | None,
                  now: datetime) -> ParsedCallback:
    """Parse a Jasmin DLR callback, level 1 (SMSC) or level 2/3 (terminal)."""
    del region
    fields = Fields.from_request(request, form_body=True)
    gateway_id = fields.required_text("id")
    message_status = fields.required_text("message_status")
    level = fields.integer("level")
    if level not in (1, 2, 3):
        raise MalformedCallbackError(f"field 'level': expected 1, 2 or 3, got {level}")
    extra = {name: value for name in _DLR_EXTRA if (value := fields.text(name))}
    extra["level"] = str(level)
    extra["message_status"] = message_status
    if "id_smsc" in extra:
        extra["smsc_message_id"] = extra["id_smsc"]
    err = fields.text("err")
    receipt = DeliveryReceipt(
        channel=Channel.HTTP, link=link, message_id=gateway_id,
        status=status_for(message_status), received_at=now,
        error_code=err.strip() if err and err.strip() else None,
        submitted_at=_jasmin_date(fields.text("subdate"), "subdate"),
        done_at=_jasmin_date(fields.text("donedate"), "donedate"),
        gateway_message_id=gateway_id, raw_text=fields.text("text"), extra=extra)
    return ParsedCallback(receipt, f"{gateway_id}:{message_status.strip().upper()}")


def _jasmin_date(value: str | None, name: str) -> datetime | None:
    """``YYMMDDhhmm`` (or with seconds), taken as UTC."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}.get(len(text))
    if fmt is not None and text.isdigit():
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise MalformedCallbackError(f"field {name!r}: expected YYMMDDhhmm, got {text[:20]!r}")
