"""Byte-level building blocks of the signed-SMS wire format, version 1.

Layouts (docs/wire-format.md is the reference; all integers big-endian)::

    command  vt(1)=0x11 key_id(2) counter(6) not_after(4) opcode(1) tlv*  sig(64)
    reply    vt(1)=0x12 imei(8) dev_key_id(2) cmd_key_id(2) cmd_counter(6) status(1) tlv* sig(64)
    alert    vt(1)=0x13 imei(8) dev_key_id(2) counter(6) raised(4) type(1) tlv* sig(64)

The signature is Ed25519 over ``domain tag || server_id(32) || IMEI (15 ASCII
digits) || frame without the signature``; replies insert the SHA-256 of the
exact command frame after the IMEI.  Tags, server id and (for commands) the
IMEI are never sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Final

from signing.errors import EncodingError, FrameRejected, Reason

VERSION: Final = 1
TYPE_COMMAND: Final = 1
TYPE_REPLY: Final = 2
TYPE_ALERT: Final = 3

SIGNATURE_LEN: Final = 64
SERVER_ID_LEN: Final = 32
COMMAND_HEADER_LEN: Final = 14
REPLY_HEADER_LEN: Final = 20
ALERT_HEADER_LEN: Final = 22
MAX_FRAME_LEN: Final = 1024
COUNTER_MAX: Final = (1 << 48) - 1

DOMAIN_COMMAND: Final = b"MEPL-SMS/1 command\x00"
DOMAIN_REPLY: Final = b"MEPL-SMS/1 reply\x00"
DOMAIN_ALERT: Final = b"MEPL-SMS/1 alert\x00"

Tlv = tuple[int, bytes]

Instant = datetime | int | float


def epoch_seconds(when: Instant) -> float:
    """Seconds since the Unix epoch of an aware datetime or a number."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise EncodingError("datetime must be timezone-aware")
        return when.timestamp()
    return float(when)


def to_minutes(when: Instant) -> int:
    """UTC minutes since the epoch, rounded down (a not-after never moves later)."""
    minutes = int(epoch_seconds(when) // 60)
    if not 0 <= minutes <= 0xFFFFFFFF:
        raise EncodingError("time out of the 32-bit minute range")
    return minutes


@lru_cache(maxsize=4096)
def check_imei(imei: str) -> bytes:
    """Validate an IMEI (exactly 15 ASCII digits) and return its signed form."""
    if len(imei) != 15 or not imei.isascii() or not imei.isdigit():
        raise EncodingError("IMEI must be exactly 15 decimal digits")
    return imei.encode("ascii")


def check_server_id(server_id: bytes) -> bytes:
    """Validate a 32-octet server identity."""
    if len(server_id) != SERVER_ID_LEN:
        raise EncodingError("server_id must be 32 octets")
    return bytes(server_id)


def bcd_encode(digits: str) -> bytes:
    """Packed BCD, high nibble first; an odd count ends with the filler nibble 0xF."""
    if not digits.isascii() or not digits.isdigit():
        raise EncodingError("BCD input must be decimal digits")
    padded = digits + "F" if len(digits) % 2 else digits
    return bytes.fromhex(padded)


def bcd_decode(data: bytes) -> str:
    """Inverse of :func:`bcd_encode`; a filler is only allowed as the last nibble."""
    text = data.hex().upper()
    if text.endswith("F"):
        text = text[:-1]
    if not text.isdigit() and text:
        raise ValueError("invalid BCD digits")
    return text


@lru_cache(maxsize=4096)
def imei_bcd(imei: str) -> bytes:
    """The 8-octet BCD form of an IMEI, as sent in replies and alerts."""
    check_imei(imei)
    return bcd_encode(imei)


def encode_tlvs(items: Iterable[Tlv]) -> bytes:
    """Encode ``(tag, value)`` pairs; tags must be strictly ascending (canonical form)."""
    out = bytearray()
    last = -1
    for tag, value in items:
        if not 0 <= tag <= 0xFF or tag <= last:
            raise EncodingError("TLV tags must be 0..255 and strictly ascending")
        if len(value) > 0xFF:
            raise EncodingError(f"TLV 0x{tag:02x} value longer than 255 octets")
        out += bytes((tag, len(value))) + value
        last = tag
    return bytes(out)


def decode_tlvs(data: bytes) -> list[Tlv]:
    """Decode TLVs, refusing overruns and tags that are not strictly ascending."""
    items: list[Tlv] = []
    i = 0
    last = -1
    n = len(data)
    while i < n:
        if i + 2 > n:
            raise FrameRejected(Reason.MALFORMED, "truncated TLV header")
        tag, length = data[i], data[i + 1]
        if tag <= last:
            raise FrameRejected(Reason.MALFORMED, "TLV tags not strictly ascending")
        end = i + 2 + length
        if end > n:
            raise FrameRejected(Reason.MALFORMED, "TLV value overruns the frame")
        items.append((tag, data[i + 2 : end]))
        last = tag
        i = end
    return items


def check_envelope(frame: bytes, frame_type: int, header_len: int) -> None:
    """Length, version and type checks common to every frame (before any crypto)."""
    if len(frame) > MAX_FRAME_LEN:
        raise FrameRejected(Reason.OVERSIZED, f"{len(frame)} octets")
    if len(frame) < 1:
        raise FrameRejected(Reason.TRUNCATED, "empty frame")
    if frame[0] >> 4 != VERSION:
        raise FrameRejected(Reason.UNSUPPORTED_VERSION, f"version {frame[0] >> 4}")
    if frame[0] & 0x0F != frame_type:
        raise FrameRejected(Reason.WRONG_FRAME_TYPE, f"type {frame[0] & 0x0F}")
    if len(frame) < header_len + SIGNATURE_LEN:
        raise FrameRejected(Reason.TRUNCATED, f"{len(frame)} octets")


def command_signed_bytes(server_id: bytes, imei: bytes, body: bytes) -> bytes:
    """The octets a command signature covers (``body`` is the frame minus signature)."""
    return b"".join((DOMAIN_COMMAND, server_id, imei, body))


def reply_signed_bytes(server_id: bytes, imei: bytes, command_frame: bytes, body: bytes) -> bytes:
    """The octets a reply signature covers, including SHA-256 of the command frame."""
    digest = hashlib.sha256(command_frame).digest()
    return b"".join((DOMAIN_REPLY, server_id, imei, digest, body))


def alert_signed_bytes(server_id: bytes, imei: bytes, body: bytes) -> bytes:
    """The octets an alert signature covers."""
    return b"".join((DOMAIN_ALERT, server_id, imei, body))


def counter_bytes(counter: int) -> bytes:
    """A 48-bit counter; counters start at 1."""
    if not 1 <= counter <= COUNTER_MAX:
        raise EncodingError("counter must be in 1..2**48-1")
    return counter.to_bytes(6, "big")


def u16(value: int, what: str) -> bytes:
    """Two octets big-endian, range-checked."""
    if not 0 <= value <= 0xFFFF:
        raise EncodingError(f"{what} must be in 0..65535")
    return value.to_bytes(2, "big")
