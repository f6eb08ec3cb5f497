"""The command catalogue: opcodes, their arguments, and the reply status codes.

A :class:`Command` is an opcode plus normalised arguments.  Build one with
:func:`make_command` (``make_command("lock", emergency_dialer=True)``) or from
JSON with :meth:`Command.from_json`; the arguments are checked against the
table :data:`ARGUMENTS` when the command is made, so a sealed frame always
decodes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from signing import gsm7
from signing.errors import EncodingError, FrameRejected, Reason
from signing.fields import Field, Kind, Value, decode_fields, encode_fields, normalise_fields
from signing.fields import to_json as value_to_json


class Opcode(enum.IntEnum):
    """Command opcodes (one octet on the wire)."""

    LOCK = 0x01
    UNLOCK = 0x02
    STATUS_QUERY = 0x03
    LOCK_STATUS = 0x04
    SLEEP = 0x05
    WAKE = 0x06
    NOTIFY = 0x07
    LOCATE = 0x08
    WIPE = 0x09
    SET_TRUSTED_NUMBERS = 0x0A
    ROTATE_KEY = 0x0B
    SET_RESTRICTIONS = 0x0C
    SET_GEOFENCE = 0x0D


class ReplyStatus(enum.IntEnum):
    """The status octet of a reply."""

    OK = 0
    FAILED = 1
    UNSUPPORTED = 2
    UNAVAILABLE = 3
    DENIED = 4


ARGUMENTS: Mapping[Opcode, tuple[Field, ...]] = {
    Opcode.LOCK: (Field(0x01, "emergency_dialer", Kind.FLAG),),
    Opcode.UNLOCK: (),
    Opcode.STATUS_QUERY: (Field(0x01, "features", Kind.FEATURES),),
    Opcode.LOCK_STATUS: (),
    Opcode.SLEEP: (Field(0x01, "minutes", Kind.U16),),
    Opcode.WAKE: (),
    Opcode.NOTIFY: (
        Field(0x01, "text", Kind.UTF8, required=False),
        Field(0x02, "text_gsm7", Kind.GSM7, required=False),
    ),
    Opcode.LOCATE: (),
    Opcode.WIPE: (Field(0x01, "external_storage", Kind.FLAG),),
    Opcode.SET_TRUSTED_NUMBERS: (Field(0x01, "numbers", Kind.NUMBERS),),
    Opcode.ROTATE_KEY: (
        Field(0x01, "next_key_id", Kind.U16, low=1),
        Field(0x02, "next_public_key", Kind.KEY32),
    ),
    Opcode.SET_RESTRICTIONS: (Field(0x01, "restrictions", Kind.RESTRICTIONS),),
    Opcode.SET_GEOFENCE: (
        Field(0x01, "fence_id", Kind.U8),
        Field(0x02, "lat_e7", Kind.I32, low=-900_000_000, high=900_000_000),
        Field(0x03, "lon_e7", Kind.I32, low=-1_800_000_000, high=1_800_000_000),
        Field(0x04, "radius_m", Kind.U32),
    ),
}
"""Argument fields per opcode (TLV tag, name, encoding)."""

DEFAULTS: Mapping[Opcode, Mapping[str, Value]] = {
    Opcode.LOCK: {"emergency_dialer": True},
    Opcode.SLEEP: {"minutes": 0},
    Opcode.WIPE: {"external_storage": False},
}


def opcode_from_name(name: str) -> Opcode:
    """``"lock"``, ``"set-geofence"`` or ``"SET_GEOFENCE"`` to an :class:`Opcode`."""
    try:
        return Opcode[name.upper().replace("-", "_")]
    except KeyError:
        known = ", ".join(op.name.lower() for op in Opcode)
        raise EncodingError(f"unknown opcode {name!r}; known: {known}") from None


@dataclass(frozen=True)
class Command:
    """An opcode and its normalised arguments (build with :func:`make_command`)."""

    opcode: Opcode
    args: Mapping[str, Value] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The opcode's lower-case name (``"set_geofence"``)."""
        return self.opcode.name.lower()

    def encode_args(self) -> bytes:
        """The canonical TLV octets of the arguments (computed once per command)."""
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return encode_fields(ARGUMENTS[self.opcode], self.args)

    def to_json(self) -> dict[str, Any]:
        """``{"opcode": name, "args": {...}}``; notify shows ``text`` and ``encoding``."""
        args = {k: value_to_json(v) for k, v in self.args.items()}
        if self.opcode is Opcode.NOTIFY:
            if "text_gsm7" in args:
                args = {"text": args["text_gsm7"], "encoding": "gsm7"}
            else:
                args = {"text": args["text"], "encoding": "utf8"}
        return {"opcode": self.name, "args": args}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Command:
        """Inverse of :meth:`to_json` (raises :class:`EncodingError`)."""
        args = data.get("args") or {}
        if not isinstance(args, Mapping):
            raise EncodingError("args must be an object")
        return make_command(str(data.get("opcode", "")), **args)


def make_command(opcode: Opcode | str, **args: Any) -> Command:
    """Check and normalise arguments; notify takes ``text`` and ``encoding``.

    ``encoding`` for notify is ``"utf8"``, ``"gsm7"`` or ``"auto"`` (the
    default: GSM 7-bit when every character has a GSM-7 code and it is shorter).
    """
    op = opcode if isinstance(opcode, Opcode) else opcode_from_name(opcode)
    if op is Opcode.NOTIFY:
        args = _notify_args(args)
    merged = {**DEFAULTS.get(op, {}), **args}
    return Command(op, normalise_fields(ARGUMENTS[op], merged))


def _notify_args(args: Mapping[str, Any]) -> dict[str, Any]:
    extra = sorted(set(args) - {"text", "encoding"})
    if extra:
        raise EncodingError(f"unknown argument {extra[0]!r}")
    text = args.get("text")
    if not isinstance(text, str):
        raise EncodingError("argument 'text' must be a string")
    encoding = args.get("encoding", "auto")
    if encoding == "auto":
        fits = gsm7.is_gsm7(text)
        shorter = fits and len(gsm7.encode_septets(text)) * 7 < len(text.encode()) * 8
        encoding = "gsm7" if shorter else "utf8"
    if encoding == "gsm7":
        return {"text_gsm7": text}
    if encoding == "utf8":
        return {"text": text}
    raise EncodingError("encoding must be utf8, gsm7 or auto")


def decode_command(opcode: int, data: bytes) -> Command:
    """Decode the arguments of a verified frame (raises :class:`FrameRejected`)."""
    try:
        op = Opcode(opcode)
    except ValueError:
        raise FrameRejected(Reason.UNKNOWN_OPCODE, f"0x{opcode:02x}") from None
    args = decode_fields(ARGUMENTS[op], data)
    if op is Opcode.NOTIFY and len(args) != 1:
        raise FrameRejected(Reason.MALFORMED, "notify needs exactly one text")
    return Command(op, args)


def rotate_key_command(next_key_id: int, next_public_key: bytes) -> Command:
    """The ROTATE_KEY command delivering the next server key; seal it with the
    key the device trusts now (the device keeps that one until the first frame
    signed by the new key)."""
    return make_command(Opcode.ROTATE_KEY, next_key_id=next_key_id,
                        next_public_key=next_public_key)
