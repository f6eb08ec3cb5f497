"""Stored messages as people read them: frames, receipts, PDUs and callbacks decoded.

Pure: :func:`decode_message` turns a stored row
(:class:`blobstore.messages.StoredMessage`), plus what the caller read with it
(the other parts of a concatenated message, the opcode of the command a reply
answers), into a :class:`MessageView`: a one-line ``summary``, a ``verdict``
and every decoded field in ``details`` (JSON-ready).  Frames are decoded by
:func:`signing.frames.peek_frame` (the signature is *not* checked again: the
verdict is the one the server recorded on the row), user data headers by
:mod:`sms_gateway.udh`.  Bytes that do not decode never raise: the view says
``undecodable: <reason>`` and carries the hex.

What each kind shows:

- ``mt`` (a command frame per SMS part): key id, counter, not-after, opcode and
  arguments as JSON, the SMSC message id, part n/m, the delivery receipt's status;
- ``mo`` (an SMS part from a device): the frame (text armour removed, UDH
  stripped, concatenated parts joined when all are stored) as a reply (IMEI,
  keys, the command answered, status, result items as text for the opcodes
  whose items are known) or an alert (type, raised at, arguments);
- ``dlr``: the receipt's status; ``pdu``: SMPP command, sequence and status;
  ``pdu_batch``: how many PDUs of each command, and each PDU (time, command,
  sequence, status, reference, the SMSC id of a submit_sm_resp, hex) in
  ``details["pdus"]``;
- HTTP callbacks as received: the gateway and the request line (stored rows
  are already redacted: no token, no Authorization header).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from blobstore.messages import StoredMessage
from blobstore.pdu_batches import KIND, unpack_batch
from mepl.app.pdus import view_pdu
from signing.errors import FrameRejected, SigningError
from signing.fields import FEATURES
from signing.frames import CommandFrame, OpenedAlert, Reply, peek_frame
from signing.transport import ARMOUR_PREFIX, dearmour
from signing.wire import COMMAND_HEADER_LEN, TYPE_COMMAND, Tlv, check_envelope
from sms_gateway.errors import UdhError
from sms_gateway.smpp.codec import HEADER, HEADER_LEN, command_name, describe_status
from sms_gateway.udh import Udh, split_user_data

LOCK_STATES: Final[Mapping[int, str]] = {0: "unlocked", 1: "locked",
                                         2: "locked with emergency dialer"}
"""The ``lock_status`` reply item (tag 0x01), per docs/wire-format.md section 5."""

_DECODE_ERRORS = (SigningError, UdhError, ValueError, LookupError, TypeError)


@dataclass(frozen=True)
class MessageView:
    """One stored message, decoded for people.

    ``verdict``: for frames from devices, ``verified`` (applied to a device or
    command), the rejection the server recorded (``rejected: bad_signature``),
    or ``not applied yet``; for commands sent, the receipt status; otherwise
    what the row's ``error`` says, or ``-``.  ``details`` holds every decoded
    field, JSON-ready; ``payload`` the exact bytes stored.
    """

    id: int
    at: datetime
    direction: str
    channel: str
    kind: str
    link: str | None
    peer: str | None
    device_id: int | None
    command_id: int | None
    part: str | None
    summary: str
    verdict: str
    details: Mapping[str, Any] = field(default_factory=dict)
    sha256: str = ""
    payload: bytes = b""

    def to_json(self, *, raw: bool = False) -> dict[str, Any]:
        """JSON form; with ``raw`` the stored bytes as hex too."""
        data: dict[str, Any] = {
            "id": self.id, "at": self.at.isoformat(), "direction": self.direction,
            "channel": self.channel, "kind": self.kind, "link": self.link, "peer": self.peer,
            "device_id": self.device_id, "command_id": self.command_id, "part": self.part,
            "summary": self.summary, "verdict": self.verdict, "details": dict(self.details),
            "octets": len(self.payload), "sha256": self.sha256,
        }
        if raw:
            data["payload_hex"] = self.payload.hex()
        return data


class _Undecodable(Exception):  # noqa: N818 - internal signal, never escapes this module
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_message(message: StoredMessage, *, parts: Sequence[StoredMessage] = (),
                   opcode: str | None = None) -> MessageView:
    """Decode one stored row (never raises for bad bytes).

    ``parts``: the other stored parts of the concatenated message ``message``
    belongs to (any order; ``message`` itself may be among them); the frame
    is decoded once every part is there.  ``opcode``: the opcode of the
    command a reply answers, so its result items can be shown as text.
    """
    details: dict[str, Any] = {}
    try:
        summary = _decode(message, parts, opcode, details)
    except _Undecodable as exc:
        summary = _undecodable(exc.reason, message.payload, details)
    except _DECODE_ERRORS as exc:
        summary = _undecodable(_reason(exc), message.payload, details)
    return MessageView(
        id=message.id, at=message.created_at, direction=message.direction,
        channel=message.channel, kind=message.kind, link=message.link, peer=message.peer,
        device_id=message.device_id, command_id=message.command_id,
        part=_part(message), summary=summary, verdict=_verdict(message, details),
        details=details, sha256=message.sha256.hex(), payload=bytes(message.payload))


def _reason(exc: Exception) -> str:
    if isinstance(exc, FrameRejected):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _undecodable(reason: str, payload: bytes, details: dict[str, Any]) -> str:
    details["undecodable"] = reason
    details["hex"] = payload.hex()
    shown = payload[:24].hex() + ("..." if len(payload) > 24 else "")
    return f"undecodable: {reason} [{shown}]"


def _part(message: StoredMessage) -> str | None:
    if message.part_seq is None or message.part_total is None:
        return None
    return f"{message.part_seq}/{message.part_total}"


def _verdict(message: StoredMessage, details: Mapping[str, Any]) -> str:
    if message.error:
        return message.error
    if message.kind == "mt":
        status = (message.meta or {}).get("status")
        return f"receipt: {status}" if status else "no receipt yet"
    if "request" in details:  # an HTTP callback as received
        return "applied" if message.command_id is not None else "-"
    if message.direction != "in" or message.kind in ("pdu", KIND):
        return "-"
    if message.device_id is not None or message.command_id is not None:
        return "verified" if message.kind == "mo" else "applied"
    if details.get("waiting_for_parts"):
        return "waiting for the other parts"
    return "not applied yet"


def _decode(message: StoredMessage, parts: Sequence[StoredMessage], opcode: str | None,
            details: dict[str, Any]) -> str:
    meta = message.meta or {}
    if message.kind == "pdu":
        return _pdu(message, details)
    if message.kind == KIND:
        return _pdu_batch(message, details)
    if message.channel == "http" and message.direction == "in" and "data_coding" not in meta:
        return _callback(message, details)
    if message.kind == "mt":
        return _mt(message, details)
    if message.kind == "mo":
        return _mo(message, parts, opcode, details)
    if message.kind == "dlr":
        return _dlr(message, details)
    details.update(_bytes(message.payload))
    return f"{message.kind}: {len(message.payload)} octets"


# ---------------------------------------------------------------- commands sent
def _mt(message: StoredMessage, details: dict[str, Any]) -> str:
    check_envelope(message.payload, TYPE_COMMAND, COMMAND_HEADER_LEN)
    frame = peek_frame(message.payload)
    assert isinstance(frame, CommandFrame)
    command = _command_json(frame)
    details["frame"] = command
    details["smsc_message_id"] = message.smsc_message_id
    details["receipt"] = (message.meta or {}).get("status")
    part = f", part {_part(message)}" if message.part_total else ""
    return (f"command {command['opcode']}{_args_text(command['args'])} "
            f"(key {frame.key_id}, counter {frame.counter}{part})")


def _command_json(frame: CommandFrame) -> dict[str, Any]:
    command = frame.command.to_json()
    return {"type": "command", "key_id": frame.key_id, "counter": frame.counter,
            "not_after": _minutes_iso(frame.not_after_minutes), "opcode": command["opcode"],
            "args": command["args"]}


SUMMARY_VALUE_CHARS: Final = 48
"""Longer argument values are cut in one-line summaries (``details`` keeps them whole)."""


def _args_text(args: Mapping[str, Any]) -> str:
    out = []
    for name, value in args.items():
        shown = json.dumps(value, ensure_ascii=False)
        if len(shown) > SUMMARY_VALUE_CHARS:
            shown = shown[:SUMMARY_VALUE_CHARS - 3] + "..."
        out.append(f" {name}={shown}")
    return "".join(out)


def _minutes_iso(minutes: int) -> str:
    return datetime.fromtimestamp(minutes * 60, UTC).isoformat()


# ---------------------------------------------------------------- frames from devices
def _mo(message: StoredMessage, parts: Sequence[StoredMessage], opcode: str | None,
        details: dict[str, Any]) -> str:
    meta = message.meta or {}
    details["sender"] = message.peer
    for key in ("receiver", "data_coding"):
        if key in meta:
            details[key] = meta[key]
    if "callback" in meta:
        details["callback_message_id"] = meta["callback"]
    udh, data = _user_data(message)
    if udh is not None:
        details["udh"] = _udh_json(udh)
    total = message.part_total or 1
    if total > 1:
        stored: dict[int | None, StoredMessage] = {
            p.part_seq: p for p in parts if p.part_seq is not None and p.part_total == total}
        stored[message.part_seq] = message
        if any(seq not in stored for seq in range(1, total + 1)):
            details["waiting_for_parts"] = True
            details["parts_stored"] = sorted(s for s in stored if s is not None)
            details.update(_bytes(data))
            return (f"part {message.part_seq}/{total} of a message not complete: "
                    f"{len(stored)} of {total} parts stored")
        data = b"".join(_user_data(stored[seq])[1] for seq in range(1, total + 1))
        details["joined_parts"] = [stored[seq].id for seq in range(1, total + 1)]
    raw = _frame_bytes(data, meta.get("armoured") if total == 1 else None, details)
    frame = peek_frame(raw)
    if isinstance(frame, Reply):
        return _reply(frame, opcode, details)
    if isinstance(frame, OpenedAlert):
        return _alert(frame, details)
    details["frame"] = _command_json(frame)
    return f"a command frame from a device: {frame.command.name} (counter {frame.counter})"


def _user_data(message: StoredMessage) -> tuple[Udh | None, bytes]:
    if (message.meta or {}).get("udh"):
        return split_user_data(bytes(message.payload))
    return None, bytes(message.payload)


def _udh_json(udh: Udh) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if udh.dest_port is not None:
        data.update(dest_port=udh.dest_port, src_port=udh.src_port)
    if udh.concat is not None:
        data["concat"] = {"reference": udh.concat.reference, "seq": udh.concat.seq,
                          "total": udh.concat.total}
    if udh.other:
        data["other"] = [{"iei": iei, "hex": value.hex()} for iei, value in udh.other]
    return data


def _frame_bytes(data: bytes, armoured: Any, details: dict[str, Any]) -> bytes:
    """The frame: the binary user data, or the text armour removed."""
    if isinstance(armoured, str):
        details["transport"] = "text armour"
        return dearmour(armoured)
    if data.startswith(ARMOUR_PREFIX.encode("ascii")):
        details["transport"] = "text armour"
        return dearmour(data.decode("ascii"))
    details["transport"] = "binary"
    return data


def _reply(reply: Reply, opcode: str | None, details: dict[str, Any]) -> str:
    header = reply.header
    status = reply.status.name.lower()
    items = reply_items(opcode, reply.items)
    details["frame"] = {
        "type": "reply", "imei": header.imei, "device_key_id": header.device_key_id,
        "command_key_id": header.command_key_id, "command_counter": header.command_counter,
        "status": status, "items": items}
    if opcode is not None:
        details["frame"]["answers"] = opcode
    what = f"{opcode} " if opcode else ""
    result = "; ".join(f"{i['name']}={_item_text(i['value'])}" for i in items)
    return (f"reply to {what}(key {header.command_key_id}, counter {header.command_counter}): "
            f"{status}" + (f"; {result}" if result else ""))


def _item_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def reply_items(opcode: str | None, items: Sequence[Tlv]) -> list[dict[str, Any]]:
    """Result items as ``{"tag", "name", "value"}``: text or numbers for the items of
    ``lock_status``, ``locate`` and ``status_query`` (docs/wire-format.md section 5),
    hex for anything else."""
    return [{"tag": tag, **_reply_item(opcode, tag, bytes(value))} for tag, value in items]


def _reply_item(opcode: str | None, tag: int, value: bytes) -> dict[str, Any]:
    if opcode == "lock_status" and tag == 0x01 and len(value) == 1:
        return {"name": "state", "value": LOCK_STATES.get(value[0], f"unknown ({value[0]})")}
    if opcode == "locate" and tag in (0x01, 0x02) and len(value) == 4:
        degrees = int.from_bytes(value, "big", signed=True) / 10_000_000
        return {"name": "lat" if tag == 0x01 else "lon", "value": round(degrees, 7)}
    if opcode == "locate" and tag == 0x03 and len(value) == 2:
        return {"name": "accuracy_m", "value": int.from_bytes(value, "big")}
    if opcode == "status_query" and 1 <= tag <= len(FEATURES):
        try:
            return {"name": FEATURES[tag - 1], "value": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"name": FEATURES[tag - 1], "value": value.hex(), "encoding": "hex"}
    return {"name": f"0x{tag:02x}", "value": value.hex(), "encoding": "hex"}


def _alert(opened: OpenedAlert, details: dict[str, Any]) -> str:
    header = opened.header
    alert = opened.alert.to_json()
    raised = _minutes_iso(header.raised_minutes)
    details["frame"] = {
        "type": "alert", "imei": header.imei, "device_key_id": header.device_key_id,
        "counter": header.counter, "raised_at": raised, "alert": alert["alert"],
        "args": alert["args"]}
    return (f"alert {alert['alert']}{_args_text(alert['args'])} "
            f"(counter {header.counter}, raised {raised})")


# ---------------------------------------------------------------- receipts, PDUs, callbacks
def _dlr(message: StoredMessage, details: dict[str, Any]) -> str:
    meta = message.meta or {}
    status = meta.get("status", "unknown")
    details.update(status=status, smsc_message_id=message.smsc_message_id)
    if meta.get("error") is not None:
        details["error_code"] = meta["error"]
    details.update(_bytes(message.payload, key="receipt_text"))
    return f"receipt {status} for SMSC id {message.smsc_message_id or '-'}"


def _pdu(message: StoredMessage, details: dict[str, Any]) -> str:
    meta = message.meta or {}
    if {"command", "sequence", "status"} <= meta.keys():
        command, sequence, status = str(meta["command"]), int(meta["sequence"]), int(
            meta["status"])
    elif len(message.payload) >= HEADER_LEN:
        _, command_id, status, sequence = HEADER.unpack_from(message.payload)
        command = command_name(command_id)
    else:
        raise _Undecodable(f"{len(message.payload)} octets: shorter than a PDU header")
    details.update(command=command, sequence=sequence, status=describe_status(status))
    if meta.get("reference") is not None:
        details["reference"] = meta["reference"]
    if message.smsc_message_id is not None:
        details["smsc_message_id"] = message.smsc_message_id
    shown = f" {describe_status(status)}" if command.endswith("_resp") or status else ""
    return f"{command} seq {sequence}{shown}"


def _pdu_batch(message: StoredMessage, details: dict[str, Any]) -> str:
    try:
        batch = unpack_batch(message.payload)
    except ValueError as exc:
        raise _Undecodable(str(exc)) from None
    pdus: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for index, pdu in enumerate(batch):
        view = view_pdu(message.id, message.direction, message.link or "", index, pdu.at,
                        pdu.reference, pdu.raw)
        entry: dict[str, Any] = {"at": pdu.at.isoformat()}
        if view.sequence is not None:
            entry.update(command=view.command, sequence=view.sequence, status=view.status)
        if view.smsc_message_id is not None:
            entry["smsc_message_id"] = view.smsc_message_id
        if pdu.reference is not None:
            entry["reference"] = pdu.reference
        entry["hex"] = pdu.raw.hex()
        counts[view.command] = counts.get(view.command, 0) + 1
        pdus.append(entry)
    details["pdus"] = pdus
    shown = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return f"{len(pdus)} PDUs" + (f": {shown}" if shown else "")


def _callback(message: StoredMessage, details: dict[str, Any]) -> str:
    head, sep, body = bytes(message.payload).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not sep or not lines[0]:
        raise _Undecodable("not a stored HTTP request")
    details.update(gateway=message.link, remote=message.peer, request=lines[0],
                   headers=lines[1:])
    details.update(_bytes(body, key="body"))
    return f"{message.link or '-'}: {lines[0]}"


def _bytes(data: bytes, *, key: str = "text") -> dict[str, Any]:
    """Printable UTF-8 as text, anything else as hex."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return {f"{key}_hex": bytes(data).hex()}
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return {key: text}
    return {f"{key}_hex": bytes(data).hex()}


def hex_dump(data: bytes, width: int = 16) -> list[str]:
    """``xxd``-like lines: offset, hex octets, printable ASCII."""
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<{width * 3 - 1}}  {text}")
    return lines
