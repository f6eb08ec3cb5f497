"""Delivery receipts: parsing (TLVs first, then the text), id normalisation, roll-up.

Pure.  :func:`receipt_from_sm` turns a receipt deliver_sm into a
:class:`DeliveryReceipt`; :class:`ReceiptHold` keeps receipts that arrive
before their submit_sm_resp; :class:`MultipartTracker` rolls the receipts of
every part of a long message up to one final status.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Generic, TypeVar

from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus
from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.inbound import normalise_address

STATES: Mapping[int, DeliveryStatus] = MappingProxyType({
    1: DeliveryStatus.ENROUTE, 2: DeliveryStatus.DELIVERED, 3: DeliveryStatus.EXPIRED,
    4: DeliveryStatus.DELETED, 5: DeliveryStatus.UNDELIVERABLE, 6: DeliveryStatus.ACCEPTED,
    7: DeliveryStatus.UNKNOWN, 8: DeliveryStatus.REJECTED,
})
STAT_WORDS: Mapping[str, DeliveryStatus] = MappingProxyType({
    "DELIVRD": DeliveryStatus.DELIVERED, "DELIVERED": DeliveryStatus.DELIVERED,
    "EXPIRED": DeliveryStatus.EXPIRED, "DELETED": DeliveryStatus.DELETED,
    "UNDELIV": DeliveryStatus.UNDELIVERABLE, "UNDELIVERABLE": DeliveryStatus.UNDELIVERABLE,
    "ACCEPTD": DeliveryStatus.ACCEPTED, "ACCEPTED": DeliveryStatus.ACCEPTED,
    "UNKNOWN": DeliveryStatus.UNKNOWN, "REJECTD": DeliveryStatus.REJECTED,
    "REJECTED": DeliveryStatus.REJECTED, "ENROUTE": DeliveryStatus.ENROUTE,
})
STATE_CODES: Mapping[DeliveryStatus, int] = MappingProxyType({v: k for k, v in STATES.items()})
STAT_OF: Mapping[DeliveryStatus, str] = MappingProxyType({
    DeliveryStatus.DELIVERED: "DELIVRD", DeliveryStatus.EXPIRED: "EXPIRED",
    DeliveryStatus.DELETED: "DELETED", DeliveryStatus.UNDELIVERABLE: "UNDELIV",
    DeliveryStatus.ACCEPTED: "ACCEPTD", DeliveryStatus.UNKNOWN: "UNKNOWN",
    DeliveryStatus.REJECTED: "REJECTD", DeliveryStatus.ENROUTE: "ENROUTE",
})

_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err|text):", re.IGNORECASE)
_KNOWN_TAGS = frozenset((codec.TAG_RECEIPTED_MESSAGE_ID, codec.TAG_MESSAGE_STATE,
                         codec.TAG_NETWORK_ERROR_CODE))


def normalise_id(raw: str, mode: str, out_mode: str | None = None) -> str:
    """Canonical form of a message id read as ``mode``, written as ``out_mode``.

    ``hex``: ``"00AB1f"`` becomes ``"ab1f"``; ``decimal``: ``"000123"`` becomes
    ``"123"``; ``as-is``: only surrounding blanks go.  Converting between hex
    and decimal (``out_mode``) serves SMSCs whose receipts quote the id in the
    other base.  An id that does not parse in ``mode`` is kept as-is.
    """
    text = raw.strip()
    target = out_mode or mode
    if mode == "as-is" or target == "as-is":
        return text
    try:
        value = int(text, 16 if mode == "hex" else 10)
    except ValueError:
        return text
    return format(value, "x") if target == "hex" else str(value)


def parse_receipt_text(text: str) -> dict[str, str]:
    """Split ``id:.. sub:.. dlvrd:.. submit date:.. done date:.. stat:.. err:.. text:..``."""
    fields: dict[str, str] = {}
    matches = list(_FIELD.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        key = match.group(1).lower()
        value = text[match.end() : end]
        fields.setdefault(key, value if key == "text" else value.strip())
    return fields


def parse_receipt_date(value: str | None) -> datetime | None:
    """``YYMMDDhhmm`` or ``YYMMDDhhmmss`` (taken as UTC), else None."""
    if not value or not value.isdigit() or len(value) not in (10, 12):
        return None
    try:
        fmt = "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M"
        return datetime.strptime(value, fmt).replace(tzinfo=UTC)
    except ValueError:
        return None


def is_receipt(sm: ShortMessage) -> bool:
    """True when a deliver_sm is a delivery receipt rather than an MO message."""
    return bool((sm.esm_class & codec.ESM_TYPE_MASK) in (0x04, 0x08, 0x10, 0x20)
                or sm.tlv(codec.TAG_RECEIPTED_MESSAGE_ID) is not None)


def receipt_from_sm(sm: ShortMessage, *, link: str, received_at: datetime,
                    id_mode: str = "hex", text_id_mode: str | None = None) -> DeliveryReceipt:
    """Build a receipt: TLVs first, then the text; ids normalised per ``id_mode``.

    Raises ValueError for a message id with a NUL inside (it can match no submit, and
    no text column can store it).
    """
    raw_text = sm.user_data().decode("latin-1")
    fields = parse_receipt_text(raw_text)
    tlv_id = sm.tlv(codec.TAG_RECEIPTED_MESSAGE_ID)
    if tlv_id is not None:
        message_id = normalise_id(tlv_id.rstrip(b"\0").decode("latin-1"), id_mode)
    else:
        message_id = normalise_id(fields.get("id", ""), text_id_mode or id_mode, id_mode)
    if "\0" in message_id:
        raise ValueError("receipt message id contains a NUL character")
    state = sm.tlv_int(codec.TAG_MESSAGE_STATE)
    if state is not None:
        status = STATES.get(state, DeliveryStatus.UNKNOWN)
    else:
        status = STAT_WORDS.get(fields.get("stat", "").upper(), DeliveryStatus.UNKNOWN)
    net_err = sm.tlv(codec.TAG_NETWORK_ERROR_CODE)
    error_code = net_err.hex() if net_err else fields.get("err")
    extra = {f"tlv_0x{tag:04x}": value.hex() for tag, value in sm.tlvs if tag not in _KNOWN_TAGS}
    return DeliveryReceipt(
        channel=Channel.SMPP, link=link, message_id=message_id, status=status,
        received_at=received_at, error_code=error_code,
        submitted_at=parse_receipt_date(fields.get("submit date")),
        done_at=parse_receipt_date(fields.get("done date")),
        sender=normalise_address(sm.source_addr, sm.source_addr_ton) or None,
        receiver=normalise_address(sm.destination_addr, sm.dest_addr_ton) or None,
        raw_text=raw_text or None, extra=MappingProxyType(extra))


def format_receipt_text(message_id: str, status: DeliveryStatus, submitted: datetime,
                        done: datetime, err: str = "000", text: str = "") -> str:
    """The de-facto receipt text (SMPP 3.4 appendix B)."""
    delivered = "001" if status is DeliveryStatus.DELIVERED else "000"
    return (f"id:{message_id} sub:001 dlvrd:{delivered} submit date:"
            f"{submitted:%y%m%d%H%M} done date:{done:%y%m%d%H%M} stat:{STAT_OF[status]} "
            f"err:{err} text:{text[:20]}")


T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Held(Generic[T]):
    """A receipt waiting for its id, with what is needed to answer it later."""

    message_id: str
    item: T
    since: float


class ReceiptHold(Generic[T]):
    """Receipts that arrived before their submit_sm_resp, held until the id is known.

    ``note_submitted(id)`` marks ids learnt from submit_sm_resp (a bounded
    recent set).  :meth:`should_hold` says whether a receipt must wait: its id
    is not known yet while submits are in flight.  Holds are bounded in number
    (``max_held``, oldest released first) and time (``max_age``).
    """

    def __init__(self, *, max_held: int = 10_000, max_age: float = 30.0,
                 max_known: int = 200_000) -> None:
        self.max_held = max_held
        self.max_age = max_age
        self.max_known = max_known
        self._known: OrderedDict[str, None] = OrderedDict()
        self._held: OrderedDict[int, Held[T]] = OrderedDict()
        self._counter = 0

    def note_submitted(self, message_id: str) -> list[Held[T]]:
        """Record a submitted id; returns the receipts held for it, now released."""
        self._known[message_id] = None
        if len(self._known) > self.max_known:
            self._known.popitem(last=False)
        if not self._held:
            return []
        released = [h for h in self._held.values() if h.message_id == message_id]
        if released:
            self._held = OrderedDict((k, h) for k, h in self._held.items()
                                     if h.message_id != message_id)
        return released

    def should_hold(self, message_id: str, submits_in_flight: bool) -> bool:
        """True when the receipt for ``message_id`` must wait for its submit_sm_resp."""
        return submits_in_flight and message_id not in self._known

    def hold(self, message_id: str, item: T, now: float) -> list[Held[T]]:
        """Hold ``item``; returns items pushed out because the hold is full."""
        self._counter += 1
        self._held[self._counter] = Held(message_id, item, now)
        out: list[Held[T]] = []
        while len(self._held) > self.max_held:
            out.append(self._held.popitem(last=False)[1])
        return out

    def expire(self, now: float) -> list[Held[T]]:
        """Release receipts held longer than ``max_age``."""
        out: list[Held[T]] = []
        while self._held:
            key, held = next(iter(self._held.items()))
            if now - held.since < self.max_age:
                break
            del self._held[key]
            out.append(held)
        return out

    def release_all(self) -> list[Held[T]]:
        """Release everything (shutdown)."""
        out = list(self._held.values())
        self._held.clear()
        return out

    def __len__(self) -> int:
        return len(self._held)


class MultipartTracker(Generic[K]):
    """Roll the receipts of a message's parts up to one final status.

    ``register(key, part_ids)`` after the submit; ``update(part_id, status)``
    per receipt returns ``(key, status)`` once every part is final: DELIVERED
    only if every part was delivered, else the first non-delivered final
    status in part order.
    """

    def __init__(self) -> None:
        self._by_part: dict[str, K] = {}
        self._parts: dict[K, dict[str, DeliveryStatus | None]] = {}

    def register(self, key: K, part_ids: Iterable[str]) -> None:
        """Start tracking message ``key`` made of ``part_ids`` (in part order)."""
        parts: dict[str, DeliveryStatus | None] = dict.fromkeys(part_ids)
        self._parts[key] = parts
        for part_id in parts:
            self._by_part[part_id] = key

    def update(self, part_id: str, status: DeliveryStatus) -> tuple[K, DeliveryStatus] | None:
        """Record ``status`` for a part; returns the message's final status when known."""
        key = self._by_part.get(part_id)
        if key is None:
            return None
        parts = self._parts[key]
        if parts[part_id] is not None and parts[part_id].is_final:  # type: ignore[union-attr]
            return None
        parts[part_id] = status
        if not all(s is not None and s.is_final for s in parts.values()):
            return None
        del self._parts[key]
        for pid in parts:
            self._by_part.pop(pid, None)
        for s in parts.values():
            if s is not DeliveryStatus.DELIVERED:
                assert s is not None
                return key, s
        return key, DeliveryStatus.DELIVERED

    def pending(self) -> int:
        """Messages still waiting for final receipts."""
        return len(self._parts)
