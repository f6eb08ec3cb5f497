"""The command catalog as the desktop console knows it: commands, their arguments, their forms.

The send form is built from this table: one row per command, one input per
argument, each checked as the server will check it (the operator guide's
table of written forms: flags ``true``/``false``, integers in range,
comma-separated names...), so a mistake is named before anything is sent.
The server checks again and has the last word; a command it knows and this
table does not can still be typed by name (its arguments are then sent as
written).  Nothing here imports Qt: the table is plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FEATURES = ("battery", "signal", "network_operator", "location_services", "lock_state",
            "storage", "sim", "app_version", "os_version", "restrictions", "geofence",
            "sleep_state")
"""The status query's feature names."""

RESTRICTIONS = ("camera", "usb_data", "bluetooth", "wifi_config", "app_install",
                "screen_capture", "factory_reset", "location_off", "developer_options",
                "airplane_mode", "sim_swap_ui")
"""The names ``set_restrictions`` takes."""

_TRUE = frozenset(("true", "yes", "on", "1"))
_FALSE = frozenset(("false", "no", "off", "0"))
_RANGES = {"u8": (0, 0xFF), "u16": (0, 0xFFFF), "u32": (0, 0xFFFF_FFFF),
           "i32": (-0x8000_0000, 0x7FFF_FFFF)}
_GSM7 = frozenset("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
                  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
                  "^{}\\[~]|€\f")


class ArgumentError(ValueError):
    """An argument is missing or not in its written form; ``name`` names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass(frozen=True)
class Argument:
    """One argument of a command: its name, kind, whether it must be given, its range."""

    name: str
    kind: str
    required: bool = True
    low: int | None = None
    high: int | None = None
    default: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def form(self) -> str:
        """How the value is written, for the form's hint and for messages."""
        if self.kind == "flag":
            return "true or false"
        if self.kind in _RANGES:
            low, high = self.bounds
            return f"a whole number from {low} to {high}"
        if self.kind == "numbers":
            return "phone numbers separated by commas"
        if self.kind == "key32":
            return "64 hex digits"
        if self.kind in ("features", "restrictions"):
            return "names separated by commas: " + ", ".join(self.names)
        if self.kind == "choice":
            return " or ".join(self.choices)
        if self.kind == "gsm7":
            return "text in the GSM 7-bit alphabet"
        return "text"

    @property
    def bounds(self) -> tuple[int, int]:
        """The accepted integer range (the kind's, narrowed by ``low``/``high``)."""
        low, high = _RANGES.get(self.kind, (0, 0))
        return (low if self.low is None else self.low, high if self.high is None else self.high)

    @property
    def names(self) -> tuple[str, ...]:
        """The names a features or restrictions argument takes."""
        return FEATURES if self.kind == "features" else RESTRICTIONS

    def check(self, command: str, text: str) -> str:
        """``text`` as sent (normalised), or :class:`ArgumentError` saying what is expected."""
        value = text.strip() if self.kind not in ("utf8", "gsm7") else text

        def wrong() -> ArgumentError:
            return ArgumentError(self.name, f"argument {self.name!r} of {command}: expected "
                                              f"{self.form}, got {text!r}")

        if self.kind == "flag":
            if value.lower() in _TRUE:
                return "true"
            if value.lower() in _FALSE:
                return "false"
            raise wrong()
        if self.kind in _RANGES:
            low, high = self.bounds
            digits = value[1:] if value[:1] in "+-" else value
            if not digits.isdigit() or not low <= int(value) <= high:
                raise wrong()
            return str(int(value))
        if self.kind == "numbers":
            numbers = [n.strip() for n in value.split(",") if n.strip()]
            if not numbers or not all(
                    sum(c.isdigit() for c in n) >= 3 and set(n) <= set("+0123456789 -()")
                    for n in numbers):
                raise wrong()
            return ",".join(numbers)
        if self.kind == "key32":
            if len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
                raise wrong()
            return value.lower()
        if self.kind in ("features", "restrictions"):
            names = [n.strip() for n in value.split(",") if n.strip()]
            if self.kind == "restrictions" and names in ([], ["none"]):
                return "none"
            if not names or any(n not in self.names for n in names):
                raise wrong()
            return ",".join(names)
        if self.kind == "choice":
            if value not in self.choices:
                raise wrong()
            return value
        if self.kind == "gsm7" and any(c not in _GSM7 for c in value):
            raise wrong()
        return value


@dataclass(frozen=True)
class CommandSpec:
    """A command of the catalog: its name, arguments, and who may send it."""

    name: str
    arguments: tuple[Argument, ...]
    role: str = "operator"
    summary: str = ""


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("lock", (Argument("emergency_dialer", "flag", required=False,
                                  default="true"),),
                summary="lock the device (the emergency dialer stays unless false)"),
    CommandSpec("unlock", (), summary="unlock the device"),
    CommandSpec("status_query", (Argument("features", "features"),),
                summary="ask for battery, signal, SIM... (the features named)"),
    CommandSpec("lock_status", (), summary="ask whether the device is locked"),
    CommandSpec("sleep", (Argument("minutes", "u16", required=False, default="0"),),
                summary="stop reporting for a while"),
    CommandSpec("wake", (), summary="resume reporting"),
    CommandSpec("notify", (Argument("text", "utf8"),
                           Argument("encoding", "choice", required=False, default="auto",
                                    choices=("auto", "utf8", "gsm7"))),
                summary="show a message on the device"),
    CommandSpec("locate", (), summary="ask for the device's position"),
    CommandSpec("wipe", (Argument("external_storage", "flag", required=False,
                                  default="false"),),
                role="admin", summary="erase the device (destructive)"),
    CommandSpec("set_trusted_numbers", (Argument("numbers", "numbers"),), role="admin",
                summary="the numbers the device accepts commands from"),
    CommandSpec("rotate_key", (Argument("next_key_id", "u16", low=1),
                               Argument("next_public_key", "key32")),
                role="admin", summary="move the device to the next server key"),
    CommandSpec("set_restrictions", (Argument("restrictions", "restrictions"),),
                role="admin", summary="switch device features off (none clears them)"),
    CommandSpec("set_geofence", (Argument("fence_id", "u8"),
                                 Argument("lat_e7", "i32", low=-900_000_000,
                                          high=900_000_000),
                                 Argument("lon_e7", "i32", low=-1_800_000_000,
                                          high=1_800_000_000),
                                 Argument("radius_m", "u32")),
                role="admin", summary="the territory the device must stay in"),
)
"""Every command, in the order the send form lists them."""

BY_NAME: Mapping[str, CommandSpec] = {spec.name: spec for spec in COMMANDS}


def check_arguments(command: str, values: Mapping[str, str]) -> dict[str, str]:
    """The arguments to send for ``command``, checked; :class:`ArgumentError` if one is wrong.

    Empty values of optional arguments are left out (the server applies its
    default).  A command not in the catalog passes its arguments through as
    written (the server decides), but a name must still be given.
    """
    name = command.strip().lower()
    if not name:
        raise ArgumentError("command", "choose a command to send")
    spec = BY_NAME.get(name)
    if spec is None:
        return {k.strip(): v for k, v in values.items() if k.strip()}
    known = {a.name for a in spec.arguments}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ArgumentError(unknown[0], f"{name} has no argument {unknown[0]!r}; it takes "
                                          f"{', '.join(sorted(known)) or 'none'}")
    checked: dict[str, str] = {}
    for argument in spec.arguments:
        text = values.get(argument.name, "")
        if not text.strip():
            if argument.required:
                raise ArgumentError(argument.name, f"argument {argument.name!r} of {name} "
                                                     f"is required: {argument.form}")
            continue
        checked[argument.name] = argument.check(name, text)
    return checked


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int | None:
    """``3600``, ``90m``, ``12h`` or ``1d`` in seconds; None for an empty text.

    Raises :class:`ArgumentError` (named ``valid_for``) for anything else, as
    ``mdm-console send --valid-for`` does.
    """
    text = text.strip()
    if not text:
        return None
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    if not number.isdigit() or int(number) <= 0:
        raise ArgumentError("valid_for", f"{text!r} is not a duration like 3600, 90m, 12h, 1d")
    return int(number) * _UNITS[unit]
