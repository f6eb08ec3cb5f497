"""SMPP 3.4 PDU codec: headers, a struct fast path for the hot PDUs, smpplib for the rest.

``smpplib`` is used only through ``make_pdu``/``parse_pdu``/``generate`` (see
the checked pitfalls in the architecture brief).  The hot path (submit_sm
encode, submit_sm_resp decode, deliver_sm_resp encode) and the
submit_sm/deliver_sm body decoder are plain ``struct`` code so that unknown
TLVs are kept; tests check them byte for byte against smpplib.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from smpplib import command_codes, consts, smpp

from sms_gateway.errors import RemoteError

HEADER = struct.Struct(">LLLL")
HEADER_LEN = 16
RESPONSE_BIT = 0x80000000

COMMANDS: Mapping[str, int] = MappingProxyType(dict(command_codes.commands))
COMMAND_NAMES: Mapping[int, str] = MappingProxyType({v: k for k, v in COMMANDS.items()})

GENERIC_NACK = COMMANDS["generic_nack"]
BIND_RECEIVER = COMMANDS["bind_receiver"]
BIND_TRANSMITTER = COMMANDS["bind_transmitter"]
BIND_TRANSCEIVER = COMMANDS["bind_transceiver"]
SUBMIT_SM = COMMANDS["submit_sm"]
SUBMIT_SM_RESP = COMMANDS["submit_sm_resp"]
DELIVER_SM = COMMANDS["deliver_sm"]
DELIVER_SM_RESP = COMMANDS["deliver_sm_resp"]
UNBIND = COMMANDS["unbind"]
UNBIND_RESP = COMMANDS["unbind_resp"]
ENQUIRE_LINK = COMMANDS["enquire_link"]
ENQUIRE_LINK_RESP = COMMANDS["enquire_link_resp"]
BIND_COMMANDS = frozenset((BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER))

# command_status values used here (SMPP 3.4 section 5.1.3)
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RSUBMITFAIL = 0x45
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64
ESME_RX_P_APPN = 0x65

# TLV tags (SMPP 3.4 section 5.3.2)
TAG_SOURCE_PORT = 0x020A
TAG_DESTINATION_PORT = 0x020B
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_MESSAGE_STATE = 0x0427
TAG_NETWORK_ERROR_CODE = 0x0423

_STATUS_NAMES: Mapping[int, str] = MappingProxyType({
    value: name.removeprefix("SMPP_") for name, value in vars(consts).items()
    if name.startswith("SMPP_ESME_") and isinstance(value, int)})


def describe_status(status: int) -> str:
    """``0x0000000E ESME_RINVPASWD (invalid password)``: a command_status for people."""
    name = _STATUS_NAMES.get(status)
    if name is None:
        return f"0x{status:08X} (unknown status)"
    meaning = consts.DESCRIPTIONS.get(status, "").lower()
    if meaning.startswith("<"):  # smpplib's "<Desc Not Set>"
        meaning = ""
    return f"0x{status:08X} {name} ({meaning})" if meaning else f"0x{status:08X} {name}"


ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_TYPE_RECEIPT = 0x04


class CodecError(RemoteError):
    """A PDU body could not be decoded (truncated, missing terminator...)."""


def command_name(command_id: int) -> str:
    """The SMPP name of ``command_id`` (``'submit_sm'``), or its hex for unknown ids."""
    return COMMAND_NAMES.get(command_id, f"0x{command_id:08x}")


@dataclass(slots=True)
class Pdu:
    """A framed PDU: header fields, the raw body and the whole raw frame."""

    command_id: int
    status: int
    sequence: int
    body: bytes
    raw: bytes = b""

    @property
    def is_response(self) -> bool:
        """True for ``*_resp`` and generic_nack."""
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        """The command name."""
        return command_name(self.command_id)


def encode_frame(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    """Frame ``body`` with a 16-octet header (command_length counts itself)."""
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


@dataclass(frozen=True)
class ShortMessage:
    """The decoded body of a submit_sm or deliver_sm, every TLV kept raw by tag."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: tuple[tuple[int, bytes], ...] = field(default=())

    def tlv(self, tag: int) -> bytes | None:
        """The first TLV value with ``tag``, or None."""
        for t, v in self.tlvs:
            if t == tag:
                return v
        return None

    def tlv_int(self, tag: int) -> int | None:
        """A TLV read as a big-endian unsigned integer, or None."""
        value = self.tlv(tag)
        return None if value is None else int.from_bytes(value, "big")

    def user_data(self) -> bytes:
        """short_message, or message_payload when short_message is empty."""
        if self.short_message:
            return self.short_message
        return self.tlv(TAG_MESSAGE_PAYLOAD) or b""


def _cstring(body: bytes, pos: int, limit: int, name: str) -> tuple[str, int]:
    end = body.find(b"\0", pos, pos + limit)
    if end < 0:
        raise CodecError(f"{name}: missing NUL terminator within {limit} octets")
    try:
        return body[pos:end].decode("ascii"), end + 1
    except UnicodeDecodeError:
        raise CodecError(f"{name}: not ASCII") from None


def decode_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """Parse an optional-parameter section into ``(tag, value)`` pairs, unknown tags kept."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise CodecError("truncated TLV header")
        tag, length = struct.unpack_from(">HH", data, pos)
        value = data[pos + 4 : pos + 4 + length]
        if len(value) != length:
            raise CodecError(f"TLV 0x{tag:04x} overruns the PDU")
        out.append((tag, value))
        pos += 4 + length
    return tuple(out)


def encode_tlvs(tlvs: Sequence[tuple[int, bytes]]) -> bytes:
    """Encode ``(tag, value)`` pairs in the given order."""
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs)


def decode_short_message(body: bytes) -> ShortMessage:
    """Decode a submit_sm/deliver_sm body (SMPP 3.4 sections 4.4.1 and 4.6.1)."""
    try:
        service_type, pos = _cstring(body, 0, 6, "service_type")
        s_ton, s_npi = body[pos], body[pos + 1]
        source, pos = _cstring(body, pos + 2, 21, "source_addr")
        d_ton, d_npi = body[pos], body[pos + 1]
        dest, pos = _cstring(body, pos + 2, 21, "destination_addr")
        esm, pid, prio = body[pos], body[pos + 1], body[pos + 2]
        sched, pos = _cstring(body, pos + 3, 17, "schedule_delivery_time")
        validity, pos = _cstring(body, pos, 17, "validity_period")
        reg, repl, dc, default_id, sm_len = body[pos : pos + 5]
    except (IndexError, ValueError):
        raise CodecError("short message body truncated") from None
    pos += 5
    short = body[pos : pos + sm_len]
    if len(short) != sm_len:
        raise CodecError("short_message overruns the PDU")
    return ShortMessage(service_type, s_ton, s_npi, source, d_ton, d_npi, dest, esm, pid,
                        prio, sched, validity, reg, repl, dc, default_id, short,
                        decode_tlvs(body[pos + sm_len :]))


def encode_short_message(sm: ShortMessage) -> bytes:
    """Encode a submit_sm/deliver_sm body (fast path, same bytes as smpplib)."""
    if len(sm.short_message) > 254:
        raise ValueError("short_message over 254 octets: use message_payload")
    for name, value, limit in (("service_type", sm.service_type, 6),
                               ("source_addr", sm.source_addr, 21),
                               ("destination_addr", sm.destination_addr, 21),
                               ("schedule_delivery_time", sm.schedule_delivery_time, 17),
                               ("validity_period", sm.validity_period, 17)):
        if len(value) >= limit:
            raise ValueError(f"{name} longer than {limit - 1} characters")
    return b"".join((
        sm.service_type.encode("ascii"), b"\0",
        bytes((sm.source_addr_ton, sm.source_addr_npi)),
        sm.source_addr.encode("ascii"), b"\0",
        bytes((sm.dest_addr_ton, sm.dest_addr_npi)),
        sm.destination_addr.encode("ascii"), b"\0",
        bytes((sm.esm_class, sm.protocol_id, sm.priority_flag)),
        sm.schedule_delivery_time.encode("ascii"), b"\0",
        sm.validity_period.encode("ascii"), b"\0",
        bytes((sm.registered_delivery, sm.replace_if_present_flag, sm.data_coding,
               sm.sm_default_msg_id, len(sm.short_message))),
        sm.short_message,
        encode_tlvs(sm.tlvs),
    ))


def encode_message_id_body(message_id: str | None) -> bytes:
    """The body of a submit_sm_resp/deliver_sm_resp: a C-string message id."""
    return (message_id or "").encode("ascii") + b"\0"


def decode_message_id_body(body: bytes) -> str | None:
    """The message id of a submit_sm_resp body, or None when the body is empty."""
    if not body:
        return None
    end = body.find(b"\0")
    if end < 0 or end > 64:
        raise CodecError("message_id: missing NUL terminator within 65 octets")
    try:
        return body[:end].decode("ascii")
    except UnicodeDecodeError:
        raise CodecError("message_id: not ASCII") from None


class _Sequence:
    """The object smpplib wants as ``client=`` (it reads ``sequence``/``next_sequence``)."""

    def __init__(self, sequence: int) -> None:
        self.sequence = sequence

    def next_sequence(self) -> int:
        return self.sequence


def smpplib_encode(name: str, sequence: int, status: int = ESME_ROK, **fields: Any) -> bytes:
    """Encode any PDU with smpplib (slow path); ``str`` fields as str, octets as bytes."""
    pdu = smpp.make_pdu(name, client=_Sequence(sequence), **fields)
    pdu.sequence = sequence
    pdu.status = status
    raw: bytes = pdu.generate()
    return raw


def smpplib_decode(raw: bytes) -> Any:
    """Decode any PDU with smpplib (slow path; unknown TLVs are dropped by smpplib)."""
    try:
        return smpp.parse_pdu(raw, client=_Sequence(0), allow_unknown_opt_params=True)
    except Exception as exc:  # smpplib raises many unrelated types on bad input
        raise CodecError(f"undecodable PDU: {exc}") from None


def encode_bind(command_id: int, sequence: int, system_id: str, password: str,
                system_type: str = "", interface_version: int = 0x34) -> bytes:
    """Encode a bind_transmitter/receiver/transceiver request."""
    return smpplib_encode(command_name(command_id), sequence, system_id=system_id,
                          password=password, system_type=system_type,
                          interface_version=interface_version, addr_ton=0, addr_npi=0,
                          address_range="")


@dataclass(frozen=True)
class BindRequest:
    """A decoded bind request (SMSC side)."""

    system_id: str
    password: str = field(repr=False)
    system_type: str


def decode_bind(body: bytes) -> BindRequest:
    """Decode the body of a bind request."""
    system_id, pos = _cstring(body, 0, 16, "system_id")
    password, pos = _cstring(body, pos, 9, "password")
    system_type, pos = _cstring(body, pos, 13, "system_type")
    return BindRequest(system_id, password, system_type)
