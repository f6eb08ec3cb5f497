"""How inbound items are stored as rows, and read back from their queue rows."""

from __future__ import annotations

from typing import Any

from blobstore.inbound_queue import QueueEntry
from blobstore.messages import NewMessage
from mepl.runtime.inbound_txn import ReceiptFacts
from signing.transport import ARMOUR_PREFIX, dearmour
from sms_gateway.events import DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.udh import encode_udh


def part_row(message: InboundMessage, **meta: Any) -> NewMessage:
    """The stored row of one inbound SMS part: user data (UDH included) as the BLOB."""
    header = encode_udh(message.udh) if message.udh else b""
    user_data = header + message.payload
    concat = message.udh.concat if message.udh else None
    info: dict[str, Any] = {"receiver": message.receiver, "data_coding": message.data_coding,
                            **meta}
    if header:
        info["udh"] = True
    if concat is not None:
        info.update(concat_ref=concat.reference, concat_bits=concat.ref_bits)
    if message.text is not None:
        if concat is not None:
            info["text"] = message.text  # joined with the other parts' text when complete
        elif message.text.lstrip().startswith(ARMOUR_PREFIX):
            info["armoured"] = message.text.strip()
    return NewMessage(
        direction="in", channel=message.channel.value,  # type: ignore[arg-type]
        kind="mo", payload=user_data, link=message.link, peer=message.sender,
        smsc_message_id=message.smsc_message_id,
        part_seq=concat.seq if concat else None,
        part_total=concat.total if concat else None, meta=info)


def receipt_row(receipt: DeliveryReceipt) -> NewMessage:
    """The stored row of a delivery receipt that arrived over SMPP."""
    return NewMessage(direction="in", channel="smpp", kind="dlr",
                      payload=(receipt.raw_text or "").encode("utf-8", "replace"),
                      link=receipt.link, peer=receipt.sender,
                      smsc_message_id=receipt.message_id,
                      meta={"status": receipt.status.value, "error": receipt.error_code})


def receipt_facts(entry: QueueEntry) -> ReceiptFacts:
    """What a stored SMPP receipt's queue row says."""
    status = DeliveryStatus((entry.meta or {}).get("status", "unknown"))
    return ReceiptFacts(entry.message_id, str(entry.link), str(entry.smsc_message_id),
                        status.value, status.is_final, status is DeliveryStatus.DELIVERED)


def frame_of(payload: bytes, armoured: str | None) -> bytes:
    """The frame bytes: binary as is, or de-armoured text from text-only gateways."""
    if armoured is not None:
        return dearmour(armoured)
    if payload[:len(ARMOUR_PREFIX)] == ARMOUR_PREFIX.encode("ascii"):
        return dearmour(payload.decode("ascii", "replace"))
    return payload
