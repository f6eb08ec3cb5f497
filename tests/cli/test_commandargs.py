"""``NAME=VALUE`` typing of command arguments, table-driven over the whole catalog."""

from __future__ import annotations

from typing import Any

import pytest

from mepl.commandargs import (
    ArgumentError,
    argument_specs,
    describe_arguments,
    expected_form,
    int_bounds,
    parse_command_arguments,
    parse_value,
)
from signing.commands import ARGUMENTS, Command, Opcode
from signing.fields import Field, Kind

KEY = "0123456789abcdef" * 4

# One written value per kind, and the normalised value the command must then hold.
GOOD: dict[Kind, tuple[str, Any]] = {
    Kind.FLAG: ("no", False),
    Kind.U8: ("7", 7),
    Kind.U16: (" 300 ", 300),
    Kind.U32: ("70000", 70000),
    Kind.I32: ("-123456", -123456),
    Kind.DIGITS: ("0123 4567", "01234567"),
    Kind.NUMBER: ("07700 900002", "+447700900002"),
    Kind.NUMBERS: ("+447700900000, 07700 900001", ("+447700900000", "+447700900001")),
    Kind.UTF8: ("Return to base — now", "Return to base — now"),
    Kind.GSM7: ("Gate 3 at 18:00", "Gate 3 at 18:00"),
    Kind.KEY32: (KEY.upper(), bytes.fromhex(KEY)),
    Kind.FEATURES: ("battery, SIM,lock_state", ("battery", "sim", "lock_state")),
    Kind.RESTRICTIONS: ("usb_data,camera", ("camera", "usb_data")),
}
# A written value per kind that must be refused (utf8 takes any text).
BAD: dict[Kind, str] = {
    Kind.FLAG: "banana", Kind.U8: "lots", Kind.U16: "1.5", Kind.U32: "0x10",
    Kind.I32: "ten", Kind.DIGITS: "12a4", Kind.NUMBER: "hello",
    Kind.NUMBERS: "+44770090000, hello",
    Kind.GSM7: "caf\u00e9 \u2713", Kind.KEY32: "abcd", Kind.FEATURES: "battery,teleport",
    Kind.RESTRICTIONS: "camera,jetpack",
}

INTS = (Kind.U8, Kind.U16, Kind.U32, Kind.I32)
CATALOG = [(op, field) for op, fields in ARGUMENTS.items() for field in fields]


def required_pairs(op: Opcode, skip: str) -> list[str]:
    """Written values for the other required arguments of ``op``."""
    return [f"{f.name}={GOOD[f.kind][0]}" for f in ARGUMENTS[op]
            if f.required and f.name != skip]


def test_every_kind_has_a_good_and_a_bad_written_value() -> None:
    assert set(GOOD) == set(Kind)
    assert set(BAD) == set(Kind) - {Kind.UTF8}


@pytest.mark.parametrize(("op", "field"), CATALOG,
                         ids=[f"{op.name.lower()}.{f.name}" for op, f in CATALOG])
def test_every_argument_of_every_opcode_can_be_written(op: Opcode, field: Field) -> None:
    text, expected = GOOD[field.kind]
    command = parse_command_arguments(op.name.lower(), [f"{field.name}={text}",
                                                        *required_pairs(op, field.name)],
                                      region="GB")
    assert command.args[field.name] == expected
    # What is stored rebuilds the very same command when it is sealed.
    assert Command.from_json(command.to_json()) == command


@pytest.mark.parametrize(("op", "field"), [(op, f) for op, f in CATALOG if f.kind in BAD],
                         ids=[f"{op.name.lower()}.{f.name}" for op, f in CATALOG
                              if f.kind in BAD])
def test_a_bad_value_names_the_argument_the_opcode_and_the_expected_form(
        op: Opcode, field: Field) -> None:
    with pytest.raises(ArgumentError) as err:
        parse_command_arguments(op, [f"{field.name}={BAD[field.kind]}",
                                     *required_pairs(op, field.name)], region="GB")
    message = str(err.value)
    assert repr(field.name) in message and op.name.lower() in message
    assert "expected " + expected_form(field).split(":")[0] in message


@pytest.mark.parametrize(("op", "field"), [(op, f) for op, f in CATALOG if f.kind in INTS])
def test_integers_outside_the_argument_range_are_refused_with_the_range(
        op: Opcode, field: Field) -> None:
    low, high = int_bounds(field)
    for value in (low - 1, high + 1):
        with pytest.raises(ArgumentError, match=rf"expected an integer in {low}\.\.{high}"):
            parse_command_arguments(op, [f"{field.name}={value}",
                                         *required_pairs(op, field.name)])


def test_the_operator_guide_notify_example_is_text_with_automatic_encoding() -> None:
    command = parse_command_arguments("notify", ["text=Return to base"])
    assert command.to_json()["args"] == {"text": "Return to base", "encoding": "gsm7"}
    assert parse_command_arguments("notify", ["text=a=b"]).args == {"text_gsm7": "a=b"}


def test_notify_encoding_can_be_chosen_and_gsm7_refuses_other_characters() -> None:
    assert parse_command_arguments("notify", ["text=Hi", "encoding=UTF8"]).args == {
        "text": "Hi"}
    with pytest.raises(ArgumentError, match=r"argument 'text' of notify \(encoding gsm7\)"):
        parse_command_arguments("notify", ["text=\u2713 done", "encoding=gsm7"])
    with pytest.raises(ArgumentError, match="argument 'encoding' of notify: expected auto"):
        parse_command_arguments("notify", ["text=Hi", "encoding=ascii"])
    with pytest.raises(ArgumentError, match="not both"):
        parse_command_arguments("notify", ["text=Hi", "text_gsm7=Hi"])
    with pytest.raises(ArgumentError, match="missing argument 'text'"):
        parse_command_arguments("notify", [])
    with pytest.raises(ArgumentError, match="too long"):
        parse_command_arguments("notify", ["text=" + "\u2713" * 100])


def test_defaults_apply_and_restrictions_can_be_cleared() -> None:
    assert parse_command_arguments("lock", []).args == {"emergency_dialer": True}
    assert parse_command_arguments("sleep", []).args == {"minutes": 0}
    for cleared in ("restrictions=", "restrictions=none"):
        assert parse_command_arguments("set_restrictions", [cleared]).args == {
            "restrictions": ()}


@pytest.mark.parametrize(("pairs", "message"), [
    (["emergency_dialer"], "NAME=VALUE"),
    (["=true"], "NAME=VALUE"),
    (["colour=red"], "unknown argument 'colour' for lock; it takes emergency_dialer"),
    (["emergency_dialer=true", "emergency_dialer=false"], "given twice"),
])
def test_malformed_pairs_are_refused_clearly(pairs: list[str], message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        parse_command_arguments("lock", pairs)


def test_an_opcode_without_arguments_says_so_and_unknown_opcodes_are_refused() -> None:
    with pytest.raises(ArgumentError, match="unlock; it takes no arguments"):
        parse_command_arguments("unlock", ["x=1"])
    with pytest.raises(ArgumentError, match="unknown opcode 'fly'"):
        parse_command_arguments("fly", [])


def test_missing_required_arguments_are_named() -> None:
    with pytest.raises(ArgumentError, match="rotate_key: missing argument 'next_public_key'"):
        parse_command_arguments("rotate-key", ["next_key_id=2"])


def test_national_numbers_are_read_in_the_given_region() -> None:
    command = parse_command_arguments("set_trusted_numbers", ["numbers=(202) 555-0123"],
                                      region="US")
    assert command.args["numbers"] == ("+12025550123",)


def test_digits_kind_reads_decimal_digits() -> None:
    field = Field(1, "pin", Kind.DIGITS)
    assert parse_value(field, "12 34") == "1234"
    with pytest.raises(ArgumentError, match="argument 'pin': expected 1 to 20 decimal digits"):
        parse_value(field, "1" * 21)


def test_every_opcode_is_described_for_help() -> None:
    text = describe_arguments()
    for op in Opcode:
        assert f"  {op.name.lower()}" in text
    assert "      encoding: auto or utf8 or gsm7 (default auto)" in text
    assert [s.name for s in argument_specs("notify")] == ["text", "encoding", "text_gsm7"]
