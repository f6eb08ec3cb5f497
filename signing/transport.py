"""How frames travel: binary SMS budgets and segmentation, reassembly, text armouring.

Binary transport (the default): data_coding 4 (8-bit), a UDH with 16-bit
application ports (commands to :data:`DEVICE_PORT` from :data:`SERVER_PORT`,
replies and alerts the other way) and, for frames over one SMS, 8-bit-reference
concatenation.  The UDH octets are written by the SMS layer; this module only
decides how a frame is cut.  Text transport (gateways that pass only text):
:data:`ARMOUR_PREFIX` followed by unpadded base64, every character in the
GSM 7-bit basic table.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from typing import Final

from signing.errors import EncodingError, FrameRejected, Reason

DATA_CODING_8BIT: Final = 4
DEVICE_PORT: Final = 16410
SERVER_PORT: Final = 16411
SMS_USER_DATA: Final = 140
SINGLE_PART: Final = 133
CONCAT_PART: Final = 128
MAX_PARTS: Final = 8

ARMOUR_PREFIX: Final = "M1:"
TEXT_SMS_CHARS: Final = 160
TEXT_CONCAT_CHARS: Final = 153
ARMOUR_SINGLE_FRAME: Final = (TEXT_SMS_CHARS - len(ARMOUR_PREFIX)) * 6 // 8


def split_frame(frame: bytes) -> list[bytes]:
    """Cut a frame into SMS payloads: one of up to 133 octets, or parts of 128."""
    if len(frame) <= SINGLE_PART:
        return [frame]
    parts = [frame[i : i + CONCAT_PART] for i in range(0, len(frame), CONCAT_PART)]
    if len(parts) > MAX_PARTS:
        raise EncodingError(f"frame needs {len(parts)} parts, at most {MAX_PARTS} allowed")
    return parts


def parts_needed(frame_len: int) -> int:
    """How many binary SMS a frame of ``frame_len`` octets takes."""
    return 1 if frame_len <= SINGLE_PART else -(-frame_len // CONCAT_PART)


def armour(frame: bytes) -> str:
    """Text form: ``M1:`` plus unpadded standard base64 (GSM 7-bit safe)."""
    return ARMOUR_PREFIX + base64.b64encode(frame).decode("ascii").rstrip("=")


def dearmour(text: str) -> bytes:
    """Inverse of :func:`armour`; padding and surrounding whitespace are tolerated."""
    body = text.strip()
    if not body.startswith(ARMOUR_PREFIX):
        raise FrameRejected(Reason.MALFORMED, "not an armoured frame")
    body = body[len(ARMOUR_PREFIX) :].rstrip("=")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FrameRejected(Reason.MALFORMED, "bad base64") from None


def armoured_parts(frame_len: int) -> int:
    """How many text SMS an armoured frame of ``frame_len`` octets takes."""
    chars = len(ARMOUR_PREFIX) + -(-frame_len * 8 // 6)
    return 1 if chars <= TEXT_SMS_CHARS else -(-chars // TEXT_CONCAT_CHARS)


@dataclass
class _PartialSet:
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Reassembler:
    """Joins concatenated parts, keyed by (originator, reference, total).

    A second copy of a part with different bytes aborts the set (both are
    dropped); sets incomplete after ``timeout`` seconds are dropped.
    """

    timeout: float = 600.0
    sets: dict[tuple[str, int, int], _PartialSet] = field(default_factory=dict)

    def add(self, originator: str, reference: int, total: int, seq: int, payload: bytes,
            now: float) -> bytes | None:
        """Add one part; returns the whole frame once every part is in."""
        self.expire(now)
        if not 1 <= seq <= total <= MAX_PARTS:
            raise FrameRejected(Reason.MALFORMED, "part number out of range")
        key = (originator, reference, total)
        partial = self.sets.setdefault(key, _PartialSet(now))
        known = partial.parts.get(seq)
        if known is not None and not hmac.compare_digest(known, payload):
            del self.sets[key]
            raise FrameRejected(Reason.MALFORMED, "conflicting duplicate part")
        partial.parts[seq] = payload
        if len(partial.parts) < total:
            return None
        del self.sets[key]
        return b"".join(partial.parts[i] for i in range(1, total + 1))

    def expire(self, now: float) -> int:
        """Drop sets older than the timeout; returns how many were dropped."""
        old = [k for k, v in self.sets.items() if now - v.started > self.timeout]
        for key in old:
            del self.sets[key]
        return len(old)
