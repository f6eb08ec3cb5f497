"""Command arguments as an operator writes them: ``NAME=VALUE`` strings to a checked command.

Pure (no I/O, no database, no configuration): ``mepl commands send --arg`` calls
:func:`parse_command_arguments`, and so can any later use-case layer (the admin
console).  Every argument of every opcode in the catalog
(:data:`signing.commands.ARGUMENTS`) can be written this way; the written form
depends on the argument's kind:

=============  ==========================================================
kind           written as
=============  ==========================================================
flag           ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``)
u8 ... i32     a decimal integer in the argument's range (``-338688000``)
digits         decimal digits (spaces allowed)
numbers        comma-separated phone numbers, E.164 or national in the region
utf8           any text, kept exactly (``text=Return to base``)
gsm7           text in the GSM 7-bit alphabet
key32          64 hex digits (32 octets)
features       comma-separated feature names (``battery,sim``)
restrictions   comma-separated restriction names; empty or ``none``: no restriction
=============  ==========================================================

NOTIFY takes ``text`` and optionally ``encoding`` (``auto``, the default,
``utf8`` or ``gsm7``); its catalog field ``text_gsm7`` is accepted too and means
``text`` with ``encoding=gsm7``.  Errors are :class:`ArgumentError` and name the
argument, the opcode and the expected form.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from signing import gsm7
from signing.commands import ARGUMENTS, DEFAULTS, Command, Opcode, make_command, opcode_from_name
from signing.errors import EncodingError
from signing.fields import FEATURES, RESTRICTIONS, Field, Kind
from sms_gateway.addresses import to_e164
from sms_gateway.errors import AddressError

_TRUE = frozenset(("true", "yes", "on", "1"))
_FALSE = frozenset(("false", "no", "off", "0"))
_INTEGER = re.compile(r"[+-]?[0-9]+")
_SEPARATORS = str.maketrans("", "", " -.()/")
_INT_BITS = {Kind.U8: 8, Kind.U16: 16, Kind.U32: 32}
NOTIFY_ENCODINGS = ("auto", "utf8", "gsm7")


class ArgumentError(EncodingError):
    """An argument cannot be read; the message names it and the expected form."""


@dataclass(frozen=True)
class ArgumentSpec:
    """One argument an opcode takes from the command line and how it is written."""

    name: str
    form: str
    required: bool
    default: Any = None


def int_bounds(field: Field) -> tuple[int, int]:
    """The inclusive range of an integer field (its own, else its kind's)."""
    if field.kind is Kind.I32:
        low, high = -(1 << 31), (1 << 31) - 1
    else:
        low, high = 0, (1 << _INT_BITS[field.kind]) - 1
    return (field.low if field.low is not None else low,
            field.high if field.high is not None else high)


def expected_form(field: Field) -> str:
    """How a value of ``field`` is written, for errors and help."""
    kind = field.kind
    if kind is Kind.FLAG:
        return "true or false"
    if kind in (Kind.U8, Kind.U16, Kind.U32, Kind.I32):
        low, high = int_bounds(field)
        return f"an integer in {low}..{high}"
    if kind is Kind.DIGITS:
        return "1 to 20 decimal digits"
    if kind is Kind.NUMBER:
        return "a phone number (E.164, or national in the default region)"
    if kind is Kind.NUMBERS:
        return "comma-separated phone numbers (E.164, or national in the default region)"
    if kind is Kind.UTF8:
        return "any text"
    if kind is Kind.GSM7:
        return "text in the GSM 7-bit alphabet"
    if kind is Kind.KEY32:
        return "64 hex digits (32 octets)"
    if kind is Kind.FEATURES:
        return "comma-separated feature names: " + ", ".join(FEATURES)
    return "comma-separated restriction names (empty or 'none': none): " + ", ".join(
        RESTRICTIONS)


def argument_specs(opcode: Opcode | str) -> tuple[ArgumentSpec, ...]:
    """The arguments ``opcode`` takes as ``NAME=VALUE``, with forms and defaults."""
    op = _opcode(opcode)
    defaults = DEFAULTS.get(op, {})
    specs = [ArgumentSpec(f.name, expected_form(f), f.required and f.name not in defaults,
                          defaults.get(f.name)) for f in ARGUMENTS[op]]
    if op is Opcode.NOTIFY:
        specs = [ArgumentSpec("text", "any text", True),
                 ArgumentSpec("encoding", " or ".join(NOTIFY_ENCODINGS), False, "auto"),
                 ArgumentSpec("text_gsm7", "text in the GSM 7-bit alphabet (text with "
                                           "encoding=gsm7)", False)]
    return tuple(specs)


def describe_arguments() -> str:
    """Every opcode with its arguments and their written forms (for ``--help``)."""
    lines = []
    for op in Opcode:
        specs = argument_specs(op)
        lines.append(f"  {op.name.lower()}" + ("" if specs else ": no arguments"))
        for spec in specs:
            extra = "required" if spec.required else (
                "optional" if spec.default is None else f"default {_shown(spec.default)}")
            lines.extend(textwrap.wrap(f"{spec.name}: {spec.form} ({extra})", width=78,
                                       initial_indent="      ",
                                       subsequent_indent="          "))
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_value(field: Field, text: str, *, region: str | None = None,
                where: str | None = None) -> Any:
    """The JSON value of one written argument (raises :class:`ArgumentError`).

    ``region`` reads national phone numbers; ``where`` names the argument in
    errors (default ``argument 'NAME'``).  Ranges, names and lengths are
    checked again by :func:`signing.commands.make_command`.
    """
    where = where or f"argument {field.name!r}"
    kind = field.kind
    value = text.strip()

    def refuse(detail: str = "") -> ArgumentError:
        got = f", got {text!r}" if not detail else f": {detail}"
        return ArgumentError(f"{where}: expected {expected_form(field)}{got}")

    if kind is Kind.FLAG:
        word = value.lower()
        if word not in _TRUE | _FALSE:
            raise refuse()
        return word in _TRUE
    if kind in (Kind.U8, Kind.U16, Kind.U32, Kind.I32):
        if not _INTEGER.fullmatch(value):
            raise refuse()
        number = int(value)
        low, high = int_bounds(field)
        if not low <= number <= high:
            raise refuse()
        return number
    if kind is Kind.DIGITS:
        digits = value.replace(" ", "")
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
            raise refuse()
        return digits
    if kind is Kind.UTF8:
        return text
    if kind is Kind.GSM7:
        if not gsm7.is_gsm7(text):
            bad = sorted({ch for ch in text if not gsm7.is_gsm7(ch)})
            raise refuse(f"{''.join(bad)!r} not in the GSM 7-bit alphabet")
        return text
    if kind is Kind.KEY32:
        hexdigits = value.replace(":", "").replace(" ", "").lower()
        if len(hexdigits) != 64 or not re.fullmatch(r"[0-9a-f]+", hexdigits):
            raise refuse()
        return hexdigits
    if kind is Kind.NUMBER:
        return _number(value.strip(), region, refuse)
    items = [item.strip() for item in value.split(",") if item.strip()]
    if kind is Kind.NUMBERS:
        return [_number(item, region, refuse) for item in items]
    names = FEATURES if kind is Kind.FEATURES else RESTRICTIONS
    if kind is Kind.RESTRICTIONS and [i.lower() for i in items] == ["none"]:
        return []
    words = [item.lower().replace("-", "_") for item in items]
    unknown = [w for w in words if w not in names]
    if unknown:
        raise refuse(f"unknown name {unknown[0]!r}")
    if not words and kind is Kind.FEATURES:
        raise refuse("at least one feature")
    return words


def _number(item: str, region: str | None, refuse: Callable[[str], ArgumentError]) -> str:
    compact = item.translate(_SEPARATORS)
    if compact.startswith("+") and compact[1:].isascii() and compact[1:].isdigit():
        return compact
    try:
        return to_e164(item, region)
    except AddressError as exc:
        raise refuse(f"{item!r} is not a phone number ({exc})") from None


def parse_command_arguments(opcode: Opcode | str, pairs: Sequence[str], *,
                            region: str | None = None) -> Command:
    """``["NAME=VALUE", ...]`` for ``opcode`` to a checked :class:`Command`.

    Store ``command.to_json()["args"]``: it is canonical and
    :meth:`Command.from_json` rebuilds the same command from it.  Raises
    :class:`ArgumentError` naming the argument and the expected form.
    """
    op = _opcode(opcode)
    name_of_op = op.name.lower()
    fields = {f.name: f for f in ARGUMENTS[op]}
    accepted = [s.name for s in argument_specs(op)]
    given: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ArgumentError(f"{pair!r}: write an argument as NAME=VALUE")
        if name not in accepted:
            takes = f"it takes {', '.join(accepted)}" if accepted else "it takes no arguments"
            raise ArgumentError(f"unknown argument {name!r} for {name_of_op}; {takes}")
        if name in given:
            raise ArgumentError(f"argument {name!r} of {name_of_op} is given twice")
        given[name] = value
    if op is Opcode.NOTIFY:
        raw = _notify(given)
    else:
        raw = {name: parse_value(fields[name], value, region=region,
                                 where=f"argument {name!r} of {name_of_op}")
               for name, value in given.items()}
    try:
        command = make_command(op, **raw)
        command.encode_args()
    except EncodingError as exc:
        if op is Opcode.NOTIFY and "longer than 255" in str(exc):
            raise ArgumentError("argument 'text' of notify: too long for one command "
                                "(at most 255 octets in UTF-8 or 255 GSM 7-bit "
                                "characters)") from None
        raise ArgumentError(f"{name_of_op}: {exc}") from None
    return command


def _notify(given: dict[str, str]) -> dict[str, Any]:
    if "text" in given and "text_gsm7" in given:
        raise ArgumentError("notify: give text or text_gsm7, not both")
    if "text_gsm7" in given:
        if "encoding" in given:
            raise ArgumentError("notify: text_gsm7 is always gsm7; leave out encoding")
        text = parse_value(_notify_field("text_gsm7"), given["text_gsm7"],
                           where="argument 'text_gsm7' of notify")
        return {"text": text, "encoding": "gsm7"}
    if "text" not in given:
        raise ArgumentError("notify: missing argument 'text' (any text)")
    encoding = given.get("encoding", "auto").strip().lower()
    if encoding not in NOTIFY_ENCODINGS:
        raise ArgumentError(f"argument 'encoding' of notify: expected "
                            f"{' or '.join(NOTIFY_ENCODINGS)}, got {given['encoding']!r}")
    if encoding == "gsm7":
        parse_value(_notify_field("text_gsm7"), given["text"],
                    where="argument 'text' of notify (encoding gsm7)")
    return {"text": given["text"], "encoding": encoding}


def _notify_field(name: str) -> Field:
    return next(f for f in ARGUMENTS[Opcode.NOTIFY] if f.name == name)


def _opcode(opcode: Opcode | str) -> Opcode:
    if isinstance(opcode, Opcode):
        return opcode
    try:
        return opcode_from_name(opcode)
    except EncodingError as exc:
        raise ArgumentError(str(exc)) from None
