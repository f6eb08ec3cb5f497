"""Mobile-originated deliver_sm to :class:`InboundMessage` (pure).

The UDH (when esm_class has UDHI) or the SAR/port TLVs become
:attr:`InboundMessage.udh`; unknown TLVs are kept in ``extra`` as hex.
``data_coding`` 0 is decoded as unpacked GSM 7-bit septets (one per octet).
"""

from __future__ import annotations

import functools
from datetime import datetime
from types import MappingProxyType

from sms_gateway.addresses import to_e164
from sms_gateway.coding import TextCodingError, decode_text
from sms_gateway.errors import AddressError
from sms_gateway.events import Channel, InboundMessage
from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.udh import Concat, Udh, split_user_data

_KNOWN_TAGS = frozenset((codec.TAG_SAR_MSG_REF_NUM, codec.TAG_SAR_TOTAL_SEGMENTS,
                         codec.TAG_SAR_SEGMENT_SEQNUM, codec.TAG_SOURCE_PORT,
                         codec.TAG_DESTINATION_PORT, codec.TAG_MESSAGE_PAYLOAD))


def text_of(payload: bytes, data_coding: int) -> str | None:
    """The decoded text for a text coding; None for binary, or text that does not decode
    (the payload bytes are kept either way)."""
    try:
        return decode_text(payload, data_coding)
    except TextCodingError:
        return None


@functools.lru_cache(maxsize=16384)
def normalise_address(raw: str, ton: int) -> str:
    """E.164 for numeric international/unknown-TON addresses, else as given.

    Cached (bounded): the same few numbers come back all the time (the
    server's own number on every MO, a fleet's handsets), and parsing one
    with phonenumbers costs about 100 µs, 5 % of the inbound path's CPU.
    """
    if raw.isdigit() and ton in (0, 1):
        try:
            return to_e164(raw)
        except AddressError:
            return raw
    return raw


def _sar_udh(sm: ShortMessage) -> Udh | None:
    ref = sm.tlv_int(codec.TAG_SAR_MSG_REF_NUM)
    total = sm.tlv_int(codec.TAG_SAR_TOTAL_SEGMENTS)
    seq = sm.tlv_int(codec.TAG_SAR_SEGMENT_SEQNUM)
    dest = sm.tlv_int(codec.TAG_DESTINATION_PORT)
    src = sm.tlv_int(codec.TAG_SOURCE_PORT)
    if (dest is not None and dest > 0xFFFF) or (src is not None and src > 0xFFFF):
        raise ValueError("SAR port TLV above 65535")
    concat = None
    if ref is not None and total is not None and seq is not None:
        concat = Concat(ref & 0xFFFF, total, seq, 16)
    if concat is None and dest is None:
        return None
    return Udh(dest_port=dest, src_port=src, concat=concat)


def inbound_from_sm(sm: ShortMessage, *, link: str, received_at: datetime,
                    message_id: str | None = None) -> InboundMessage:
    """Build an :class:`InboundMessage` from a decoded MO deliver_sm.

    Raises :class:`sms_gateway.errors.UdhError` (or ValueError for SAR values
    out of range) when the header is malformed.
    """
    user_data = sm.user_data()
    udh: Udh | None
    if sm.esm_class & codec.ESM_UDHI:
        udh, payload = split_user_data(user_data)
    else:
        udh, payload = _sar_udh(sm), user_data
    extra = {f"tlv_0x{tag:04x}": value.hex() for tag, value in sm.tlvs
             if tag not in _KNOWN_TAGS}
    return InboundMessage(
        channel=Channel.SMPP, link=link,
        sender=normalise_address(sm.source_addr, sm.source_addr_ton),
        receiver=normalise_address(sm.destination_addr, sm.dest_addr_ton),
        payload=payload, data_coding=sm.data_coding, received_at=received_at, udh=udh,
        text=text_of(payload, sm.data_coding), smsc_message_id=message_id,
        extra=MappingProxyType(extra))
