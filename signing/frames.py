"""Seal and open the three frame types (sans-I/O; ``now`` is passed in).

Server side: :func:`seal_command`, :func:`open_reply`, :func:`open_alert` and
the unauthenticated :func:`peek_reply` / :func:`peek_alert` used only to look
up which device and command a frame claims to be about, and :func:`peek_frame`
used only to show stored frames to people.  Device side: :func:`open_command`
(used by :class:`signing.handset.Handset`), :func:`seal_reply`, :func:`seal_alert`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from signing.alerts import Alert, AlertType, decode_alert
from signing.commands import Command, ReplyStatus, decode_command
from signing.counters import CounterWindow
from signing.errors import EncodingError, FrameRejected, Reason
from signing.keys import SigningKey, VerifyKey
from signing.wire import (
    ALERT_HEADER_LEN,
    COMMAND_HEADER_LEN,
    COUNTER_MAX,
    REPLY_HEADER_LEN,
    SIGNATURE_LEN,
    TYPE_ALERT,
    TYPE_COMMAND,
    TYPE_REPLY,
    VERSION,
    Instant,
    Tlv,
    alert_signed_bytes,
    bcd_decode,
    check_envelope,
    check_imei,
    check_server_id,
    command_signed_bytes,
    counter_bytes,
    decode_tlvs,
    encode_tlvs,
    epoch_seconds,
    imei_bcd,
    reply_signed_bytes,
    to_minutes,
    u16,
)

_COMMAND_VT = (VERSION << 4) | TYPE_COMMAND
_COMMAND_HEADER = struct.Struct(">BHHIIB")
_REPLY_VT = bytes(((VERSION << 4) | TYPE_REPLY,))
_ALERT_VT = bytes(((VERSION << 4) | TYPE_ALERT,))


@dataclass(frozen=True)
class CommandFrame:
    """A verified command: header fields and decoded command."""

    key_id: int
    counter: int
    not_after_minutes: int
    command: Command

    @property
    def not_after(self) -> int:
        """Not-after as epoch seconds (the frame is accepted while ``now <= not_after``)."""
        return self.not_after_minutes * 60


@dataclass(frozen=True)
class ReplyHeader:
    """The unauthenticated routing fields of a reply (for look-up only)."""

    imei: str
    device_key_id: int
    command_key_id: int
    command_counter: int


@dataclass(frozen=True)
class Reply:
    """A verified reply to a command."""

    header: ReplyHeader
    status: ReplyStatus
    items: tuple[Tlv, ...]


@dataclass(frozen=True)
class AlertHeader:
    """The unauthenticated routing fields of an alert (for look-up only)."""

    imei: str
    device_key_id: int
    counter: int
    raised_minutes: int


@dataclass(frozen=True)
class OpenedAlert:
    """A verified alert."""

    header: AlertHeader
    alert: Alert


def seal_command(
    command: Command,
    *,
    key: SigningKey,
    server_id: bytes,
    imei: str,
    counter: int,
    not_after: Instant,
) -> bytes:
    """Encode and sign ``command`` for the device ``imei``; returns the frame."""
    if not 1 <= counter <= COUNTER_MAX:
        raise EncodingError("counter must be in 1..2**48-1")
    body = _COMMAND_HEADER.pack(_COMMAND_VT, key.key_id, counter >> 32, counter & 0xFFFFFFFF,
                                to_minutes(not_after), command.opcode) + command.encode_args()
    signed = command_signed_bytes(check_server_id(server_id), check_imei(imei), body)
    return body + key.sign(signed)


def _verify(key: VerifyKey, signature: bytes, signed: bytes) -> None:
    if not key.verify(signature, signed):
        raise FrameRejected(Reason.BAD_SIGNATURE)


def open_command(
    frame: bytes,
    *,
    keys: Mapping[int, VerifyKey],
    server_id: bytes,
    imei: str,
    now: Instant | None = None,
) -> CommandFrame:
    """Verify a command frame: envelope, key id, signature, then not-after (when
    ``now`` is given), then argument decoding.  Counters are the caller's job."""
    check_envelope(frame, TYPE_COMMAND, COMMAND_HEADER_LEN)
    key_id = int.from_bytes(frame[1:3], "big")
    key = keys.get(key_id)
    if key is None:
        raise FrameRejected(Reason.UNKNOWN_KEY, f"key id {key_id}")
    body, signature = frame[:-SIGNATURE_LEN], frame[-SIGNATURE_LEN:]
    _verify(key, signature, command_signed_bytes(server_id, check_imei(imei), body))
    not_after = int.from_bytes(frame[9:13], "big")
    if now is not None and epoch_seconds(now) > not_after * 60:
        raise FrameRejected(Reason.EXPIRED, f"not after minute {not_after}")
    return _command_frame(frame)


def _command_frame(frame: bytes) -> CommandFrame:
    """Header fields and decoded arguments of a command frame (envelope already checked)."""
    command = decode_command(frame[13], frame[COMMAND_HEADER_LEN:-SIGNATURE_LEN])
    return CommandFrame(int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:9], "big"),
                        int.from_bytes(frame[9:13], "big"), command)


def seal_reply(
    command_frame: bytes,
    status: ReplyStatus,
    items: Sequence[Tlv] = (),
    *,
    device_key: SigningKey,
    server_id: bytes,
    imei: str,
) -> bytes:
    """Sign a reply bound to the exact ``command_frame`` it answers."""
    body = b"".join((
        _REPLY_VT,
        imei_bcd(imei),
        u16(device_key.key_id, "key id"),
        command_frame[1:9],
        bytes((status,)),
        encode_tlvs(items),
    ))
    signed = reply_signed_bytes(check_server_id(server_id), check_imei(imei), command_frame, body)
    return body + device_key.sign(signed)


def peek_reply(frame: bytes) -> ReplyHeader:
    """Routing fields of a reply, NOT authenticated: use them only to find the keys."""
    check_envelope(frame, TYPE_REPLY, REPLY_HEADER_LEN)
    try:
        imei = bcd_decode(frame[1:9])
    except ValueError:
        raise FrameRejected(Reason.MALFORMED, "IMEI digits") from None
    return ReplyHeader(
        imei,
        int.from_bytes(frame[9:11], "big"),
        int.from_bytes(frame[11:13], "big"),
        int.from_bytes(frame[13:19], "big"),
    )


def open_reply(
    frame: bytes,
    *,
    device_key: VerifyKey,
    server_id: bytes,
    imei: str,
    command_frame: bytes,
) -> Reply:
    """Verify a reply from ``imei`` to ``command_frame`` (the exact bytes sent)."""
    check_envelope(frame, TYPE_REPLY, REPLY_HEADER_LEN)
    if not hmac.compare_digest(frame[1:9], imei_bcd(imei)):
        raise FrameRejected(Reason.WRONG_DEVICE)
    if int.from_bytes(frame[9:11], "big") != device_key.key_id:
        raise FrameRejected(Reason.UNKNOWN_KEY, "device key id")
    if not hmac.compare_digest(frame[11:19], command_frame[1:9]):
        raise FrameRejected(Reason.WRONG_COMMAND)
    body, signature = frame[:-SIGNATURE_LEN], frame[-SIGNATURE_LEN:]
    _verify(device_key, signature, reply_signed_bytes(server_id, imei.encode(), command_frame,
                                                       body))
    header = ReplyHeader(imei, device_key.key_id, int.from_bytes(frame[11:13], "big"),
                         int.from_bytes(frame[13:19], "big"))
    return _reply_body(frame, header)


def _reply_body(frame: bytes, header: ReplyHeader) -> Reply:
    """Status and result items of a reply frame (envelope already checked)."""
    try:
        status = ReplyStatus(frame[19])
    except ValueError:
        raise FrameRejected(Reason.MALFORMED, "reply status") from None
    return Reply(header, status, tuple(decode_tlvs(frame[REPLY_HEADER_LEN:-SIGNATURE_LEN])))


def seal_alert(
    alert: Alert,
    *,
    counter: int,
    raised_at: Instant,
    device_key: SigningKey,
    server_id: bytes,
    imei: str,
) -> bytes:
    """Sign an unsolicited alert under the device's own alert ``counter``."""
    body = b"".join((
        _ALERT_VT,
        imei_bcd(imei),
        u16(device_key.key_id, "key id"),
        counter_bytes(counter),
        to_minutes(raised_at).to_bytes(4, "big"),
        bytes((alert.alert_type,)),
        alert.encode_args(),
    ))
    signed = alert_signed_bytes(check_server_id(server_id), check_imei(imei), body)
    return body + device_key.sign(signed)


def peek_alert(frame: bytes) -> AlertHeader:
    """Routing fields of an alert, NOT authenticated: use them only to find the device."""
    check_envelope(frame, TYPE_ALERT, ALERT_HEADER_LEN)
    try:
        imei = bcd_decode(frame[1:9])
    except ValueError:
        raise FrameRejected(Reason.MALFORMED, "IMEI digits") from None
    return AlertHeader(
        imei,
        int.from_bytes(frame[9:11], "big"),
        int.from_bytes(frame[11:17], "big"),
        int.from_bytes(frame[17:21], "big"),
    )


def open_alert(
    frame: bytes,
    *,
    device_key: VerifyKey,
    server_id: bytes,
    imei: str,
    window: CounterWindow | None = None,
) -> OpenedAlert:
    """Verify an alert; with ``window``, also refuse replays and mark the counter
    (the caller persists the window before acting on the alert)."""
    check_envelope(frame, TYPE_ALERT, ALERT_HEADER_LEN)
    if not hmac.compare_digest(frame[1:9], imei_bcd(imei)):
        raise FrameRejected(Reason.WRONG_DEVICE)
    if int.from_bytes(frame[9:11], "big") != device_key.key_id:
        raise FrameRejected(Reason.UNKNOWN_KEY, "device key id")
    body, signature = frame[:-SIGNATURE_LEN], frame[-SIGNATURE_LEN:]
    _verify(device_key, signature, alert_signed_bytes(server_id, imei.encode(), body))
    alert = _alert_body(frame)
    header = AlertHeader(imei, device_key.key_id, int.from_bytes(frame[11:17], "big"),
                         int.from_bytes(frame[17:21], "big"))
    if window is not None:
        window.accept(header.counter)
    return OpenedAlert(header, alert)


def _alert_body(frame: bytes) -> Alert:
    """Type and decoded arguments of an alert frame (envelope already checked)."""
    try:
        alert_type = AlertType(frame[21])
    except ValueError:
        raise FrameRejected(Reason.MALFORMED, f"alert type 0x{frame[21]:02x}") from None
    return decode_alert(alert_type, frame[ALERT_HEADER_LEN:-SIGNATURE_LEN])


def peek_frame(frame: bytes) -> CommandFrame | Reply | OpenedAlert:
    """Decode any frame WITHOUT verifying its signature: for showing stored frames only.

    Nothing read this way may be acted upon; a frame to act on is opened with
    :func:`open_command`, :func:`open_reply` or :func:`open_alert`.  The
    envelope and the argument encoding are checked as when opening (raises
    :class:`FrameRejected` with the same reasons); the signature, key ids,
    not-after and counters are not.
    """
    frame = bytes(frame)
    frame_type = frame[0] & 0x0F if frame else TYPE_COMMAND
    if frame_type == TYPE_REPLY:
        return _reply_body(frame, peek_reply(frame))
    if frame_type == TYPE_ALERT:
        return OpenedAlert(peek_alert(frame), _alert_body(frame))
    check_envelope(frame, TYPE_COMMAND, COMMAND_HEADER_LEN)
    return _command_frame(frame)


def command_digest(command_frame: bytes) -> bytes:
    """SHA-256 of a command frame (what a reply is bound to)."""
    return hashlib.sha256(command_frame).digest()
