"""Unsolicited device alerts: types and their argument fields.

``sim_changed`` and ``invalid_sim`` may carry ``msisdn`` (tag 0x03), the
phone number of the SIM concerned, as known to the device.  It is inside the
signature, unlike the SMS sender, so it is what the server may record as the
device's number.  Decoded, ``alert.args["msisdn"]`` is a ``str``: ``"+"`` and
the E.164 digits, e.g. ``"+447700900123"`` (the wire holds the digits only, as
packed BCD); the key is absent when the device did not send a number.
``imsi`` and ``iccid`` are ``str`` of decimal digits.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signing.errors import EncodingError
from signing.fields import Field, Kind, Value, decode_fields, encode_fields, normalise_fields
from signing.fields import to_json as value_to_json


class AlertType(enum.IntEnum):
    """Alert types (one octet on the wire)."""

    SIM_CHANGED = 0x01
    INVALID_SIM = 0x02
    PROVISIONING_DEFECT = 0x03
    LEFT_TERRITORY = 0x04
    LOST = 0x05


ALERT_ARGUMENTS: Mapping[AlertType, tuple[Field, ...]] = {
    AlertType.SIM_CHANGED: (
        Field(0x01, "imsi", Kind.DIGITS),
        Field(0x02, "iccid", Kind.DIGITS, required=False),
        Field(0x03, "msisdn", Kind.NUMBER, required=False),
    ),
    AlertType.INVALID_SIM: (
        Field(0x01, "imsi", Kind.DIGITS, required=False),
        Field(0x02, "iccid", Kind.DIGITS, required=False),
        Field(0x03, "msisdn", Kind.NUMBER, required=False),
    ),
    AlertType.PROVISIONING_DEFECT: (
        Field(0x01, "defect", Kind.U8),
        Field(0x02, "detail", Kind.UTF8, required=False),
    ),
    AlertType.LEFT_TERRITORY: (
        Field(0x01, "fence_id", Kind.U8),
        Field(0x02, "lat_e7", Kind.I32, low=-900_000_000, high=900_000_000),
        Field(0x03, "lon_e7", Kind.I32, low=-1_800_000_000, high=1_800_000_000),
    ),
    AlertType.LOST: (Field(0x01, "detail", Kind.UTF8, required=False),),
}
"""Argument fields per alert type."""


def alert_type_from_name(name: str) -> AlertType:
    """``"sim-changed"`` or ``"SIM_CHANGED"`` to an :class:`AlertType`."""
    try:
        return AlertType[name.upper().replace("-", "_")]
    except KeyError:
        known = ", ".join(t.name.lower().replace("_", "-") for t in AlertType)
        raise EncodingError(f"unknown alert type {name!r}; known: {known}") from None


@dataclass(frozen=True)
class Alert:
    """An alert type and its normalised arguments (build with :func:`make_alert`)."""

    alert_type: AlertType
    args: Mapping[str, Value] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The type's name, e.g. ``"sim_changed"``."""
        return self.alert_type.name.lower()

    def encode_args(self) -> bytes:
        """Canonical TLV octets of the arguments."""
        return encode_fields(ALERT_ARGUMENTS[self.alert_type], self.args)

    def to_json(self) -> dict[str, Any]:
        """``{"alert": name, "args": {...}}``."""
        return {"alert": self.name, "args": {k: value_to_json(v) for k, v in self.args.items()}}


def make_alert(alert_type: AlertType | str, **args: Any) -> Alert:
    """Check and normalise alert arguments."""
    kind = alert_type if isinstance(alert_type, AlertType) else alert_type_from_name(alert_type)
    return Alert(kind, normalise_fields(ALERT_ARGUMENTS[kind], args))


def decode_alert(alert_type: AlertType, data: bytes) -> Alert:
    """Decode the arguments of a verified alert (raises FrameRejected MALFORMED)."""
    return Alert(alert_type, decode_fields(ALERT_ARGUMENTS[alert_type], data))
