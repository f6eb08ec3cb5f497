"""Typed argument fields: the codec between Python values, TLV values and JSON.

Commands and alerts declare their arguments as tuples of :class:`Field`
(tag, name, kind, required, range).  Python values are normalised to
``bool``, ``int``, ``str``, ``bytes`` or ``tuple[str, ...]``; JSON uses hex
for ``bytes`` and lists for tuples.  Phone numbers (kinds ``NUMBER`` and
``NUMBERS``) are ``"+"`` and the E.164 digits in Python and JSON, packed BCD
digits without the ``+`` on the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signing import gsm7
from signing.errors import EncodingError, FrameRejected, Reason
from signing.wire import Tlv, bcd_decode, bcd_encode, decode_tlvs, encode_tlvs

Value = bool | int | str | bytes | tuple[str, ...]


class Kind(enum.Enum):
    """How a field's value is encoded."""

    FLAG = "flag"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    I32 = "i32"
    DIGITS = "digits"
    NUMBER = "number"
    NUMBERS = "numbers"
    UTF8 = "utf8"
    GSM7 = "gsm7"
    KEY32 = "key32"
    FEATURES = "features"
    RESTRICTIONS = "restrictions"


FEATURES: tuple[str, ...] = (
    "battery", "signal", "network_operator", "location_services", "lock_state", "storage",
    "sim", "app_version", "os_version", "restrictions", "geofence", "sleep_state",
)
"""Feature names for the status query; the code on the wire is the index + 1."""

RESTRICTIONS: tuple[str, ...] = (
    "camera", "usb_data", "bluetooth", "wifi_config", "app_install", "screen_capture",
    "factory_reset", "location_off", "developer_options", "airplane_mode", "sim_swap_ui",
)
"""Restriction names; bit ``i`` of the 32-bit map is ``RESTRICTIONS[i]``."""


@dataclass(frozen=True)
class Field:
    """One argument: TLV ``tag``, JSON ``name``, encoding ``kind``, optional range."""

    tag: int
    name: str
    kind: Kind
    required: bool = True
    low: int | None = None
    high: int | None = None


def _int_size(kind: Kind) -> int:
    if kind is Kind.U8:
        return 1
    if kind is Kind.U16:
        return 2
    if kind is Kind.U32 or kind is Kind.I32:
        return 4
    return 0


def normalise(field: Field, raw: Any) -> Value:
    """Check and convert a Python or JSON value for ``field`` (raises EncodingError)."""
    kind = field.kind
    size = _int_size(kind)
    if size:
        if raw.__class__ is not int and (not isinstance(raw, int) or isinstance(raw, bool)):
            raise EncodingError(f"argument {field.name!r} must be an integer")
        signed = kind is Kind.I32
        low = field.low if field.low is not None else (-(1 << 31) if signed else 0)
        high = field.high if field.high is not None else (
            (1 << 31) - 1 if signed else (1 << (8 * size)) - 1)
        if not low <= raw <= high:
            raise EncodingError(f"argument {field.name!r} must be in {low}..{high}")
        return int(raw)
    where = f"argument {field.name!r}"
    if kind is Kind.FLAG:
        if not isinstance(raw, bool):
            raise EncodingError(f"{where} must be true or false")
        return raw
    if kind is Kind.DIGITS:
        if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 20:
            raise EncodingError(f"{where} must be 1..20 decimal digits")
        return raw
    if kind is Kind.NUMBER:
        return _e164(where, raw)
    if kind is Kind.NUMBERS:
        return _normalise_numbers(where, raw)
    if kind in (Kind.UTF8, Kind.GSM7):
        if not isinstance(raw, str):
            raise EncodingError(f"{where} must be a string")
        if kind is Kind.GSM7 and not gsm7.is_gsm7(raw):
            raise EncodingError(f"{where} has characters outside the GSM 7-bit alphabet")
        return raw
    if kind is Kind.KEY32:
        value = bytes.fromhex(raw) if isinstance(raw, str) else raw
        if not isinstance(value, bytes) or len(value) != 32:
            raise EncodingError(f"{where} must be 32 octets (64 hex digits)")
        return value
    names = FEATURES if kind is Kind.FEATURES else RESTRICTIONS
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise EncodingError(f"{where} must be a list of names")
    items = tuple(raw)
    for item in items:
        if item not in names:
            raise EncodingError(f"{where}: unknown name {item!r}; known: {', '.join(names)}")
    if len(set(items)) != len(items):
        raise EncodingError(f"{where}: duplicate names")
    if kind is Kind.RESTRICTIONS:
        items = tuple(sorted(items, key=names.index))
    elif not items:
        raise EncodingError(f"{where}: at least one feature")
    return items


def _e164(where: str, item: Any) -> str:
    """``item`` if it is ``"+"`` and 3..15 digits (an E.164 number), else EncodingError."""
    digits = item[1:] if isinstance(item, str) and item.startswith("+") else None
    if digits is None or not digits.isascii() or not digits.isdigit() or not 3 <= len(
        digits
    ) <= 15:
        raise EncodingError(f"{where}: {item!r} is not an E.164 number (+ and 3..15 digits)")
    return "+" + digits


def _normalise_numbers(where: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise EncodingError(f"{where} must be a list of E.164 numbers")
    out = [_e164(where, item) for item in raw]
    if len(set(out)) != len(out) or len(out) > 8:
        raise EncodingError(f"{where}: at most 8 distinct numbers")
    return tuple(out)


def encode_value(kind: Kind, value: Value) -> bytes:
    """The TLV value octets of a normalised value."""
    size = _int_size(kind)
    if size:
        assert isinstance(value, int)
        return value.to_bytes(size, "big", signed=kind is Kind.I32)
    if kind is Kind.FLAG:
        return b"\x01" if value else b"\x00"
    if kind is Kind.DIGITS:
        assert isinstance(value, str)
        return bcd_encode(value)
    if kind is Kind.NUMBER:
        assert isinstance(value, str)
        return bcd_encode(value[1:])
    if kind is Kind.UTF8:
        assert isinstance(value, str)
        return value.encode("utf-8")
    if kind is Kind.GSM7:
        assert isinstance(value, str)
        septets = gsm7.encode_septets(value)
        if len(septets) > 255:
            raise EncodingError("GSM 7-bit text longer than 255 septets")
        return bytes((len(septets),)) + gsm7.pack(septets)
    if kind is Kind.KEY32:
        assert isinstance(value, bytes)
        return value
    assert isinstance(value, tuple)
    if kind is Kind.NUMBERS:
        out = bytearray()
        for number in value:
            out += bytes((len(number) - 1,)) + bcd_encode(number[1:])
        return bytes(out)
    if kind is Kind.FEATURES:
        return bytes(FEATURES.index(name) + 1 for name in value)
    bitmap = sum(1 << RESTRICTIONS.index(name) for name in value)
    return bitmap.to_bytes(4, "big")


def decode_value(field: Field, data: bytes) -> Value:
    """Decode and check TLV value octets; anything non-canonical raises ValueError."""
    kind = field.kind
    value: Value
    if kind is Kind.FLAG:
        if data not in (b"\x00", b"\x01"):
            raise ValueError("flag must be 0 or 1")
        value = data == b"\x01"
    elif _int_size(kind):
        if len(data) != _int_size(kind):
            raise ValueError("wrong integer length")
        value = int.from_bytes(data, "big", signed=kind is Kind.I32)
    elif kind is Kind.DIGITS:
        value = bcd_decode(data)
    elif kind is Kind.NUMBER:
        value = "+" + bcd_decode(data)
    elif kind is Kind.UTF8:
        value = data.decode("utf-8")
    elif kind is Kind.GSM7:
        if not data:
            raise ValueError("missing septet count")
        value = gsm7.decode_septets(gsm7.unpack(data[1:], data[0]))
    elif kind is Kind.KEY32:
        value = bytes(data)
    elif kind is Kind.NUMBERS:
        numbers: list[str] = []
        i = 0
        while i < len(data):
            count = data[i]
            size = (count + 1) // 2
            chunk = data[i + 1 : i + 1 + size]
            if len(chunk) != size:
                raise ValueError("truncated number")
            numbers.append("+" + bcd_decode(chunk))
            i += 1 + size
        value = tuple(numbers)
    elif kind is Kind.FEATURES:
        if not all(1 <= code <= len(FEATURES) for code in data):
            raise ValueError("unknown feature code")
        value = tuple(FEATURES[code - 1] for code in data)
    else:
        if len(data) != 4:
            raise ValueError("restriction map must be 4 octets")
        bitmap = int.from_bytes(data, "big")
        if bitmap >> len(RESTRICTIONS):
            raise ValueError("unknown restriction bit")
        value = tuple(n for i, n in enumerate(RESTRICTIONS) if bitmap >> i & 1)
    checked = normalise(field, value)
    if encode_value(kind, checked) != data:
        raise ValueError("non-canonical encoding")
    return checked


def encode_fields(fields: Sequence[Field], args: Mapping[str, Value]) -> bytes:
    """Encode normalised ``args`` as canonical TLVs in tag order."""
    items: list[Tlv] = []
    for field in fields:
        if field.name in args:
            items.append((field.tag, encode_value(field.kind, args[field.name])))
    return encode_tlvs(items)


def normalise_fields(fields: Sequence[Field], raw: Mapping[str, Any]) -> dict[str, Value]:
    """Check every argument in ``raw`` against ``fields``; unknown or missing ones raise."""
    names = [f.name for f in fields]
    for name in raw:
        if name not in names:
            raise EncodingError(f"unknown argument {name!r}")
    out: dict[str, Value] = {}
    for field in fields:
        if field.name in raw and raw[field.name] is not None:
            out[field.name] = normalise(field, raw[field.name])
        elif field.required:
            raise EncodingError(f"missing argument {field.name!r}")
    return out


def decode_fields(fields: Sequence[Field], data: bytes) -> dict[str, Value]:
    """Decode TLVs against ``fields``: unknown tags and bad values are MALFORMED."""
    by_tag = {f.tag: f for f in fields}
    out: dict[str, Value] = {}
    for tag, value in decode_tlvs(data):
        field = by_tag.get(tag)
        if field is None:
            raise FrameRejected(Reason.MALFORMED, f"unknown argument tag 0x{tag:02x}")
        try:
            out[field.name] = decode_value(field, value)
        except (ValueError, EncodingError) as exc:
            raise FrameRejected(Reason.MALFORMED, f"argument {field.name}: {exc}") from None
    for field in fields:
        if field.required and field.name not in out:
            raise FrameRejected(Reason.MALFORMED, f"missing argument {field.name}")
    return out


def to_json(value: Value) -> Any:
    """JSON form of a normalised value."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return list(value)
    return value


def get_int(args: Mapping[str, Value], name: str) -> int:
    """An integer argument (for code that consumes decoded commands)."""
    value = args[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"argument {name} is not an integer")
    return value
