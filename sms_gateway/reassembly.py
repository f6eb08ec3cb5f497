"""Reassembly of inbound concatenated SMS parts (pure, for SMPP and HTTP gateways alike).

Parts are grouped by :class:`PartKey` ``(link, originator, reference,
ref_bits, total)``: the same reference from two handsets, or an 8-bit and a
16-bit reference with the same value, never mix.  An identical duplicate part
is ignored; a part that repeats a sequence number with different content is
rejected (:class:`ConflictingPartError`) and the set is kept as it was.
Incomplete sets expire after ``timeout`` seconds, with ``now`` passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sms_gateway.errors import RemoteError
from sms_gateway.events import InboundMessage

T = TypeVar("T")


class ConflictingPartError(RemoteError):
    """A part repeats a sequence number of its set with different content."""


@dataclass(frozen=True, slots=True)
class PartKey:
    """What identifies one concatenated message."""

    link: str | None
    originator: str
    reference: int
    ref_bits: int
    total: int


@dataclass(frozen=True)
class Completed(Generic[T]):
    """A whole message: the payload joined in order and every part's item."""

    key: PartKey
    payload: bytes
    items: tuple[T, ...]


@dataclass(frozen=True)
class Expired(Generic[T]):
    """An incomplete set given up on: which parts arrived, and their items."""

    key: PartKey
    seqs: tuple[int, ...]
    items: tuple[T, ...]


@dataclass
class _PartSet(Generic[T]):
    first_seen: float
    parts: dict[int, tuple[bytes, T]] = field(default_factory=dict)


class Reassembler(Generic[T]):
    """Collect parts until every one of a set has arrived.

    ``T`` is whatever the caller wants back with each part (an
    :class:`InboundMessage`, a stored row id...).  At most ``max_sets``
    incomplete sets are kept; beyond that the oldest is expired early.
    """

    def __init__(self, *, timeout: float = 3600.0, max_sets: int = 100_000) -> None:
        self.timeout = timeout
        self.max_sets = max_sets
        self._sets: OrderedDict[PartKey, _PartSet[T]] = OrderedDict()

    def add(self, key: PartKey, seq: int, payload: bytes, item: T,
            now: float) -> Completed[T] | None:
        """Add part ``seq`` (1-based) of ``key``; returns the message once complete.

        Raises ValueError for a ``seq`` outside ``1..total`` and
        :class:`ConflictingPartError` for a conflicting duplicate.
        """
        if not 1 <= seq <= key.total:
            raise ValueError(f"part {seq} outside 1..{key.total}")
        if key.total == 1:
            return Completed(key, payload, (item,))
        part_set = self._sets.get(key)
        if part_set is None:
            part_set = _PartSet(now)
            self._sets[key] = part_set
        existing = part_set.parts.get(seq)
        if existing is not None:
            if existing[0] != payload:
                raise ConflictingPartError(
                    f"part {seq}/{key.total} of reference {key.reference} repeated "
                    "with different content")
            return None
        part_set.parts[seq] = (payload, item)
        if len(part_set.parts) == key.total:
            del self._sets[key]
            ordered = [part_set.parts[i] for i in range(1, key.total + 1)]
            return Completed(key, b"".join(p for p, _ in ordered),
                             tuple(i for _, i in ordered))
        return None

    def expire(self, now: float) -> list[Expired[T]]:
        """Give up on sets older than ``timeout`` (and the oldest beyond ``max_sets``)."""
        out: list[Expired[T]] = []
        while self._sets:
            key, part_set = next(iter(self._sets.items()))
            if now - part_set.first_seen < self.timeout and len(self._sets) <= self.max_sets:
                break
            del self._sets[key]
            seqs = tuple(sorted(part_set.parts))
            out.append(Expired(key, seqs, tuple(part_set.parts[s][1] for s in seqs)))
        return out

    def pending(self) -> int:
        """Incomplete sets held."""
        return len(self._sets)


def part_of(message: InboundMessage) -> tuple[PartKey, int] | None:
    """The key and sequence of an inbound part, or None if it is not concatenated."""
    udh = message.udh
    if udh is None or udh.concat is None:
        return None
    c = udh.concat
    return PartKey(message.link, message.sender, c.reference, c.ref_bits, c.total), c.seq


def add_inbound(reassembler: Reassembler[InboundMessage], message: InboundMessage,
                now: float) -> Completed[InboundMessage] | None:
    """Feed an :class:`InboundMessage`; single-part messages complete at once."""
    found = part_of(message)
    if found is None:
        key = PartKey(message.link, message.sender, 0, 8, 1)
        return Completed(key, message.payload, (message,))
    key, seq = found
    return reassembler.add(key, seq, message.payload, message, now)
