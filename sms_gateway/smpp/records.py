"""Records of every raw PDU sent or received, for the ``pdu_sink`` hook (stored as BLOBs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet.defer import Deferred

from sms_gateway.smpp import codec
from sms_gateway.smpp.session import SmppSession

Direction = Literal["in", "out"]


@dataclass(frozen=True, slots=True)
class PduRecord:
    """One raw PDU as it crossed the wire (bind passwords blanked out).

    ``message_id`` is the SMSC id when known (submit_sm_resp); ``reference``
    the caller's :attr:`OutboundMessage.reference` for submit_sm and its response.
    """

    direction: Direction
    link: str
    command: str
    status: int
    sequence: int
    raw: bytes
    at: float
    message_id: str | None = None
    reference: str | None = None


PduSink = Callable[[PduRecord], "Deferred[Any] | None"]
"""Takes every record.  A sink that stores asynchronously returns a Deferred that
fires once the record is stored (or given up); the bind counts the record as
buffered until then, and stops reading while too many are (``max_buffered``)."""


def redact(raw: bytes) -> bytes:
    """Blank the password of a bind request; other PDUs are returned unchanged."""
    if len(raw) < 16:
        return raw
    _, cid, _status, _seq = codec.HEADER.unpack_from(raw)
    if cid not in codec.BIND_COMMANDS:
        return raw
    try:
        start = raw.index(b"\0", 16) + 1
        end = raw.index(b"\0", start)
    except ValueError:
        return raw[:16]
    return raw[:start] + b"*" * (end - start) + raw[end:]


def make_record(direction: Direction, link: str, raw: bytes, at: float,
                reference: str | None = None) -> PduRecord:
    """Build a record from a raw frame, reading the header and submit_sm_resp ids."""
    _, cid, status, seq = codec.HEADER.unpack_from(raw)
    message_id = None
    if cid == codec.SUBMIT_SM_RESP and status == codec.ESME_ROK:
        try:
            message_id = codec.decode_message_id_body(raw[16:])
        except codec.CodecError:
            message_id = None
    return PduRecord(direction, link, codec.command_name(cid), status, seq, redact(raw), at,
                     message_id, reference)


def record_trace(session: SmppSession, sink: Callable[[PduRecord], object], link: str,
                 now: float) -> None:
    """Hand every frame the session traced (sent and received) to ``sink``."""
    tx, rx = session.pop_trace()
    for raw, context in tx:
        sink(make_record("out", link, raw, now, _reference(context)))
    for pdu, context in rx:
        sink(make_record("in", link, pdu.raw, now, _reference(context)))


def _reference(context: object) -> str | None:
    job = getattr(context, "job", None)
    message = getattr(job, "message", None)
    reference = getattr(message, "reference", None)
    return reference if isinstance(reference, str) else None
