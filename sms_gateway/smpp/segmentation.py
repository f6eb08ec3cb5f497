"""Splitting an outbound message into submit_sm parts: UDH, SAR TLVs or message_payload.

Pure.  Text with ``data_coding`` 0 is taken as unpacked GSM 7-bit septets,
one octet per character (what SMPP carries; the SMSC packs them), so a part
holds 160 of them, 153 after a concatenation header.  UCS-2 parts never split
a surrogate pair and GSM parts never split an escape sequence.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from sms_gateway.channel import DATA_CODING_DEFAULT, DATA_CODING_UCS2, OutboundMessage
from sms_gateway.errors import MessageTooLongError
from sms_gateway.smpp import codec
from sms_gateway.udh import Concat, Udh, encode_udh

MAX_USER_DATA = 140
MAX_PAYLOAD = 65_000
GSM_ESCAPE = 0x1B


@dataclass(frozen=True, slots=True)
class PartSpec:
    """What differs between the submit_sm PDUs of one message."""

    short_message: bytes
    esm_class: int = 0
    tlvs: tuple[tuple[int, bytes], ...] = ()


class ReferenceCounter:
    """Concatenation references for one link: a counter from a random start.

    Consecutive long messages get consecutive references, so two long
    messages to one handset collide only after 256 (8-bit) or 65,536 (16-bit)
    others, and restarts do not reuse the same sequence.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._next = seed if seed is not None else random.SystemRandom().randrange(1 << 16)

    def next(self, bits: int) -> int:
        """The next reference, in range for ``bits`` (8 or 16)."""
        value = self._next % (1 << bits)
        self._next = (self._next + 1) % (1 << 16)
        return value


def _capacity(data_coding: int, header_octets: int) -> int:
    if data_coding == DATA_CODING_DEFAULT:
        return (MAX_USER_DATA * 8 - header_octets * 8) // 7
    return MAX_USER_DATA - header_octets


def _chunks(payload: bytes, size: int, data_coding: int) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    if data_coding == DATA_CODING_UCS2:
        size -= size % 2
    while pos < len(payload):
        end = min(pos + size, len(payload))
        if end < len(payload):
            if data_coding == DATA_CODING_DEFAULT and payload[end - 1] == GSM_ESCAPE:
                end -= 1
            elif data_coding == DATA_CODING_UCS2 and 0xD8 <= payload[end - 2] <= 0xDB:
                end -= 2
        out.append(payload[pos:end])
        pos = end
    return out or [b""]


def _port_tlvs(message: OutboundMessage) -> tuple[tuple[int, bytes], ...]:
    if message.dest_port is None:
        return ()
    src = message.src_port if message.src_port is not None else 0
    return ((codec.TAG_SOURCE_PORT, struct.pack(">H", src)),
            (codec.TAG_DESTINATION_PORT, struct.pack(">H", message.dest_port)))


def segment(message: OutboundMessage, *, mode: str, max_parts: int,
            references: ReferenceCounter, ref_bits: int = 8) -> list[PartSpec]:
    """Split ``message`` into parts; raises MessageTooLongError over ``max_parts``."""
    payload = message.payload
    if mode == "payload":
        if len(payload) > MAX_PAYLOAD:
            raise MessageTooLongError(f"payload of {len(payload)} octets exceeds {MAX_PAYLOAD}")
        return [PartSpec(b"", 0, (*_port_tlvs(message), (codec.TAG_MESSAGE_PAYLOAD, payload)))]
    if mode == "sar":
        return _segment_sar(message, max_parts, references)
    return _segment_udh(message, max_parts, references, ref_bits)


def _too_long(count: int, max_parts: int, size: int) -> MessageTooLongError:
    return MessageTooLongError(
        f"message of {size} octets needs {count} parts, over the limit of {max_parts}")


def _segment_udh(message: OutboundMessage, max_parts: int, references: ReferenceCounter,
                 ref_bits: int) -> list[PartSpec]:
    dc = message.data_coding
    ports = Udh(dest_port=message.dest_port, src_port=message.src_port)
    single_header = encode_udh(ports) if message.dest_port is not None else b""
    if len(message.payload) <= _capacity(dc, len(single_header)):
        esm = codec.ESM_UDHI if single_header else 0
        return [PartSpec(single_header + message.payload, esm)]
    probe = Udh(dest_port=message.dest_port, src_port=message.src_port,
                concat=Concat(0, 1, 1, ref_bits))
    chunks = _chunks(message.payload, _capacity(dc, len(encode_udh(probe))), dc)
    if len(chunks) > max_parts:
        raise _too_long(len(chunks), max_parts, len(message.payload))
    ref = references.next(ref_bits)
    parts = []
    for seq, chunk in enumerate(chunks, start=1):
        udh = Udh(dest_port=message.dest_port, src_port=message.src_port,
                  concat=Concat(ref, len(chunks), seq, ref_bits))
        parts.append(PartSpec(encode_udh(udh) + chunk, codec.ESM_UDHI))
    return parts


def _segment_sar(message: OutboundMessage, max_parts: int,
                 references: ReferenceCounter) -> list[PartSpec]:
    dc = message.data_coding
    ports = _port_tlvs(message)
    if len(message.payload) <= _capacity(dc, 0):
        return [PartSpec(message.payload, 0, ports)]
    chunks = _chunks(message.payload, _capacity(dc, 0), dc)
    if len(chunks) > max_parts:
        raise _too_long(len(chunks), max_parts, len(message.payload))
    ref = struct.pack(">H", references.next(16))
    total = bytes((len(chunks),))
    return [PartSpec(chunk, 0, (*ports, (codec.TAG_SAR_MSG_REF_NUM, ref),
                                (codec.TAG_SAR_TOTAL_SEGMENTS, total),
                                (codec.TAG_SAR_SEGMENT_SEQNUM, bytes((seq,)))))
            for seq, chunk in enumerate(chunks, start=1)]
