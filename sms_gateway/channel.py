"""The outbound contract every channel (SMPP bind, HTTP send API) fulfils.

Routing picks a channel by destination and calls :meth:`OutboundChannel.submit`.
The Deferred fires with a :class:`SubmitResult` or fails with
:class:`sms_gateway.errors.SubmitError` (``temporary`` says whether to retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from twisted.internet.defer import Deferred

DATA_CODING_DEFAULT = 0x00  # GSM 7-bit default alphabet (SMSC default)
DATA_CODING_BINARY = 0x04  # 8-bit data
DATA_CODING_UCS2 = 0x08


@dataclass(frozen=True)
class OutboundMessage:
    """One message to send; the channel segments it if it is too long for one SMS.

    ``payload`` is raw octets for binary data coding, or the encoded text.
    ``dest_port``/``src_port`` add a 16-bit application port UDH (binary SMS).
    ``reference`` is an opaque caller tag echoed in logs and PDU records.
    """

    destination: str
    payload: bytes
    data_coding: int = DATA_CODING_BINARY
    source: str | None = None
    dest_port: int | None = None
    src_port: int | None = None
    request_receipt: bool = True
    validity: timedelta | None = None
    reference: str | None = None


@dataclass(frozen=True)
class SubmitResult:
    """What the peer answered: one message id per submitted part, in part order."""

    link: str
    message_ids: tuple[str, ...]


class OutboundChannel(Protocol):
    """A link that can send SMS: an SMPP bind or an HTTP gateway's send API."""

    @property
    def name(self) -> str:
        """The configured link name."""

    @property
    def is_up(self) -> bool:
        """True when the link can take a submit now."""

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        """Send ``message``; fires with the part ids or fails with SubmitError."""
