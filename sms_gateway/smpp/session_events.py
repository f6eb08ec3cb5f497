"""Events and request records of the sans-I/O SMPP session (:mod:`sms_gateway.smpp.session`)."""

from __future__ import annotations

from dataclasses import dataclass

from sms_gateway.smpp.codec import Pdu


@dataclass(slots=True)
class Outstanding:
    """A request we sent that awaits its response."""

    sequence: int
    command_id: int
    sent_at: float
    deadline: float
    context: object = None
    windowed: bool = True


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The peer sent a request the application must answer (deliver_sm, submit_sm...)."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The response (or generic_nack) to one of our requests."""

    pdu: Pdu
    request: Outstanding


@dataclass(frozen=True, slots=True)
class ResponseTimedOut:
    """No response to ``request`` within the response timeout."""

    request: Outstanding


@dataclass(frozen=True, slots=True)
class BindSucceeded:
    """ESME: our bind was accepted."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class BindFailed:
    """ESME: our bind was refused with ``status``."""

    status: int


@dataclass(frozen=True, slots=True)
class BindRequested:
    """SMSC: the peer asks to bind; answer with accept_bind or reject_bind."""

    pdu: Pdu


@dataclass(frozen=True, slots=True)
class Unbound:
    """The session is over (unbind exchanged); the transport should close."""

    by_peer: bool


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Bad input from the peer; ``fatal`` means the transport must close."""

    reason: str
    fatal: bool
    raw: bytes = b""


Event = (RequestReceived | ResponseReceived | ResponseTimedOut | BindSucceeded | BindFailed
         | BindRequested | Unbound | ProtocolError)

__all__ = ["BindFailed", "BindRequested", "BindSucceeded", "Event", "Outstanding",
           "ProtocolError", "RequestReceived", "ResponseReceived", "ResponseTimedOut", "Unbound"]
