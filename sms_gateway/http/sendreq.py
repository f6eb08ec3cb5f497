"""Pure pieces of the HTTP send channel: segmenting, request shapes, response parsing.

Kannel (``/cgi-bin/sendsms``): one request per SMS part, our own UDH
(16-bit ports, 8-bit concatenation) in ``udh``, binary data with
``coding=1``, and a per-part ``dlr-url`` carrying our reference so each
receipt maps back to its part.  Kannel answers ``202 0: Accepted for
delivery`` (or ``3: Queued for later delivery``) without an id, so our
reference *is* the part id.

Jasmin (``/send``): one request with ``hex-content``; Jasmin splits long
content itself and answers ``Success "<uuid>"``, which is the id its
receipts carry.  Its HTTP API cannot set a UDH, so port-addressed messages
are refused (permanently) on a Jasmin channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from sms_gateway.channel import OutboundMessage
from sms_gateway.errors import MessageTooLongError, SubmitError
from sms_gateway.http.callback import MalformedCallbackError
from sms_gateway.http.coding import DC_BINARY, DC_DEFAULT, DC_UCS2, decode_gsm7
from sms_gateway.http.config import HttpGatewayConfig
from sms_gateway.udh import Concat, Udh, encode_udh

SMS_OCTETS = 140
KANNEL_DLR_MASK_ALL = 31  # 1 delivered | 2 failed | 4 buffered | 8 smsc ack | 16 smsc nack
JASMIN_DLR_LEVEL_ALL = 3  # 1 SMSC level, 2 terminal level, 3 both
_JASMIN_SUCCESS = re.compile(rb'^\s*Success\s+"([^"]+)"')
_KANNEL_ACCEPTED = re.compile(rb"^\s*[03]:")


@dataclass(frozen=True)
class HttpPart:
    """One SMS part as sent: its UDH (with UDHL, may be empty) and user data."""

    udh: bytes
    payload: bytes


def _capacity(data_coding: int, udh_len: int) -> int:
    room = SMS_OCTETS - udh_len
    if data_coding == DC_DEFAULT:
        return room * 8 // 7
    if data_coding == DC_UCS2:
        return room - room % 2
    return room


def segment(message: OutboundMessage, *, max_parts: int, reference: int) -> list[HttpPart]:
    """Split ``message`` into SMS parts with ports/concatenation UDH as needed."""
    if message.data_coding not in (DC_DEFAULT, DC_BINARY, DC_UCS2):
        raise SubmitError(f"data_coding {message.data_coding:#x} is not supported over HTTP",
                          temporary=False)
    dest, src = message.dest_port, message.src_port
    single_udh = encode_udh(Udh(dest_port=dest, src_port=src))
    payload = message.payload
    if len(payload) <= _capacity(message.data_coding, len(single_udh)):
        return [HttpPart(single_udh, payload)]
    multi_len = len(encode_udh(Udh(dest_port=dest, src_port=src, concat=Concat(0, 2, 1))))
    capacity = _capacity(message.data_coding, multi_len)
    chunks = _split(payload, capacity, message.data_coding)
    if len(chunks) > max_parts:
        raise MessageTooLongError(f"message needs {len(chunks)} parts, limit is {max_parts}")
    total = len(chunks)
    return [HttpPart(encode_udh(Udh(dest_port=dest, src_port=src,
                                    concat=Concat(reference % 256, total, i + 1))), chunk)
            for i, chunk in enumerate(chunks)]


def _split(payload: bytes, capacity: int, data_coding: int) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(payload):
        end = min(start + capacity, len(payload))
        if end < len(payload):
            if data_coding == DC_DEFAULT and payload[end - 1] == 0x1B:
                end -= 1  # never split a GSM escape sequence
            elif data_coding == DC_UCS2 and 0xD8 <= payload[end - 2] <= 0xDB:
                end -= 2  # never split a surrogate pair
        chunks.append(payload[start:end])
        start = end
    return chunks


def kannel_receipt_url(config: HttpGatewayConfig, ref: str) -> str:
    """Our receipt endpoint as a Kannel ``dlr-url`` (Kannel fills the %-codes)."""
    url = (f"{_base(config)}/gateways/{config.name}/receipt?ref={quote(ref, safe='')}"
           "&type=%d&smsc_id=%F&answer=%A&smsc=%i&ts=%T")
    if config.auth == "token":
        url += "&token=" + quote(config.secret, safe="")
    return url


def jasmin_receipt_url(config: HttpGatewayConfig) -> str:
    """Our receipt endpoint as a Jasmin ``dlr-url`` (fields arrive in the POST body)."""
    url = f"{_base(config)}/gateways/{config.name}/receipt"
    if config.auth == "token":
        url += "?token=" + quote(config.secret, safe="")
    return url


def _base(config: HttpGatewayConfig) -> str:
    assert config.dlr_url_base is not None
    return config.dlr_url_base.rstrip("/")


def kannel_sendsms_url(config: HttpGatewayConfig, message: OutboundMessage, part: HttpPart,
                       ref: str) -> str:
    """The full sendsms GET URL for one part."""
    params: list[tuple[str, str | bytes]] = [
        ("username", config.send_username), ("password", config.send_password),
        ("to", message.destination)]
    if message.source:
        params.append(("from", message.source))
    if message.data_coding == DC_DEFAULT:
        try:
            text = decode_gsm7(part.payload)
        except MalformedCallbackError:
            raise SubmitError("data_coding 0 payload is not GSM 7-bit septets",
                              temporary=False) from None
        params += [("coding", "0"), ("charset", "UTF-8"), ("text", text.encode("utf-8"))]
    elif message.data_coding == DC_UCS2:
        params += [("coding", "2"), ("charset", "UTF-16BE"), ("text", part.payload)]
    else:
        params += [("coding", "1"), ("text", part.payload)]
    if part.udh:
        params.append(("udh", part.udh))
    if message.request_receipt:
        params += [("dlr-mask", str(KANNEL_DLR_MASK_ALL)),
                   ("dlr-url", kannel_receipt_url(config, ref))]
    if message.validity is not None:
        params.append(("validity", str(max(1, int(message.validity.total_seconds() // 60)))))
    assert config.send_url is not None
    separator = "&" if "?" in config.send_url else "?"
    return config.send_url + separator + urlencode(params)


def jasmin_send_form(config: HttpGatewayConfig, message: OutboundMessage) -> bytes:
    """The urlencoded POST body for Jasmin's ``/send`` (the whole message, hex)."""
    if message.dest_port is not None:
        raise SubmitError("Jasmin's HTTP API cannot send a UDH (application ports)",
                          temporary=False)
    params: list[tuple[str, str]] = [
        ("username", config.send_username), ("password", config.send_password),
        ("to", message.destination), ("coding", str(message.data_coding)),
        ("hex-content", message.payload.hex())]
    if message.source:
        params.append(("from", message.source))
    if message.request_receipt:
        params += [("dlr", "yes"), ("dlr-url", jasmin_receipt_url(config)),
                   ("dlr-level", str(JASMIN_DLR_LEVEL_ALL)), ("dlr-method", "POST")]
    if message.validity is not None:
        params.append(("validity-period",
                       str(max(1, int(message.validity.total_seconds() // 60)))))
    return urlencode(params).encode("ascii")


def check_status(code: int, body: bytes, gateway: str) -> None:
    """Raise SubmitError for a non-2xx answer: 5xx temporary, anything else permanent."""
    if 200 <= code < 300:
        return
    detail = body[:200].decode("utf-8", "replace").strip()
    raise SubmitError(f"{gateway} answered HTTP {code}: {detail}", temporary=code >= 500,
                      code=code, link=gateway)


def parse_kannel_response(code: int, body: bytes, gateway: str) -> None:
    """Accept ``0: Accepted for delivery`` / ``3: Queued for later delivery``."""
    check_status(code, body, gateway)
    if not _KANNEL_ACCEPTED.match(body):
        raise SubmitError(f"{gateway}: unexpected sendsms answer {body[:80]!r}",
                          temporary=False, code=code, link=gateway)


def parse_jasmin_response(code: int, body: bytes, gateway: str) -> str:
    """The message id from ``Success "<id>"``."""
    check_status(code, body, gateway)
    match = _JASMIN_SUCCESS.match(body)
    if match is None:
        raise SubmitError(f"{gateway}: unexpected send answer {body[:80]!r}",
                          temporary=False, code=code, link=gateway)
    return match.group(1).decode("ascii", "replace")
