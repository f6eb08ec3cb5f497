"""The inbound event types shared by every channel (SMPP deliver_sm, HTTP callbacks).

Whatever the carrier or gateway, an inbound SMS becomes an
:class:`InboundMessage` and a delivery report a :class:`DeliveryReceipt` with
one status vocabulary (:class:`DeliveryStatus`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from sms_gateway.udh import Udh

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Channel(enum.Enum):
    """How a message reached us or left us."""

    SMPP = "smpp"
    HTTP = "http"


class DeliveryStatus(enum.Enum):
    """One status vocabulary for SMPP receipts and every HTTP gateway's reports."""

    ACCEPTED = "accepted"  # taken by the SMSC/gateway, not yet final
    ENROUTE = "enroute"  # buffered / on its way, not final
    DELIVERED = "delivered"
    EXPIRED = "expired"
    DELETED = "deleted"
    UNDELIVERABLE = "undeliverable"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """True when no later receipt will change this status."""
        return self not in (DeliveryStatus.ACCEPTED, DeliveryStatus.ENROUTE)


@dataclass(frozen=True)
class InboundMessage:
    """A mobile-originated SMS (or one part of one), as received.

    ``sender``/``receiver`` are E.164 when numeric (``+447700900123``) and kept
    as given otherwise (alphanumeric senders).  ``payload`` is the user data
    after the UDH; ``text`` is its decoding when ``data_coding`` is a text
    coding, else None.  ``udh`` carries ports and concatenation when present.
    """

    channel: Channel
    link: str
    sender: str
    receiver: str
    payload: bytes
    data_coding: int
    received_at: datetime
    udh: Udh | None = None
    text: str | None = None
    smsc_message_id: str | None = None
    gateway_message_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class DeliveryReceipt:
    """A delivery report for a message we submitted, normalised.

    ``message_id`` is the SMSC (or gateway) id as returned on submit,
    normalised per link so the two compare equal.
    """

    channel: Channel
    link: str
    message_id: str
    status: DeliveryStatus
    received_at: datetime
    error_code: str | None = None
    submitted_at: datetime | None = None
    done_at: datetime | None = None
    sender: str | None = None
    receiver: str | None = None
    gateway_message_id: str | None = None
    raw_text: str | None = None
    extra: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
