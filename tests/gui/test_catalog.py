"""The send form's command catalog: the same commands, arguments and forms as the server's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console_proxy.gui.catalog import (
    BY_NAME,
    COMMANDS,
    ArgumentError,
    check_arguments,
    parse_duration,
)
from signing.commands import ARGUMENTS, Opcode

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_catalog_has_every_opcode_with_the_server_catalog_arguments() -> None:
    assert [spec.name for spec in COMMANDS] == [op.name.lower() for op in Opcode]
    for opcode, fields in ARGUMENTS.items():
        spec = BY_NAME[opcode.name.lower()]
        if opcode is Opcode.NOTIFY:  # written as text and encoding (the operator guide)
            assert [(a.name, a.kind) for a in spec.arguments] == [("text", "utf8"),
                                                                 ("encoding", "choice")]
            continue
        assert [(a.name, a.kind, a.low, a.high) for a in spec.arguments] == [
            (f.name, f.kind.value, f.low, f.high) for f in fields], opcode


def test_the_admin_commands_are_the_ones_the_api_reserves_for_admins() -> None:
    document = json.loads((ROOT / "docs" / "admin-api.openapi.json").read_text())
    by_body = document["paths"]["/v1/commands"]["post"]["x-mepl-role-by-body"]["roles"]
    assert {s.name for s in COMMANDS if s.role == "admin"} == {
        name for name, role in by_body.items() if role == "admin"}


def test_arguments_are_checked_in_their_written_forms() -> None:
    assert check_arguments("lock", {"emergency_dialer": "No"}) == {"emergency_dialer": "false"}
    assert check_arguments("lock", {"emergency_dialer": ""}) == {}
    assert check_arguments("sleep", {"minutes": " 30 "}) == {"minutes": "30"}
    assert check_arguments("status_query", {"features": "battery, sim"}) == {
        "features": "battery,sim"}
    assert check_arguments("set_restrictions", {"restrictions": "none"}) == {
        "restrictions": "none"}
    assert check_arguments("set_trusted_numbers", {"numbers": "+447700900000, 07700 900001"}
                           ) == {"numbers": "+447700900000,07700 900001"}
    assert check_arguments("notify", {"text": " Return to base ", "encoding": ""}) == {
        "text": " Return to base "}
    assert check_arguments("set_geofence", {"fence_id": "1", "lat_e7": "-338688000",
                                            "lon_e7": "1512093000", "radius_m": "500"}) == {
        "fence_id": "1", "lat_e7": "-338688000", "lon_e7": "1512093000", "radius_m": "500"}


@pytest.mark.parametrize(("command", "values", "name", "message"), [
    ("wipe", {"external_storage": "banana"}, "external_storage",
     "argument 'external_storage' of wipe: expected true or false, got 'banana'"),
    ("sleep", {"minutes": "70000"}, "minutes",
     "argument 'minutes' of sleep: expected a whole number from 0 to 65535, got '70000'"),
    ("rotate_key", {"next_key_id": "0", "next_public_key": "ab" * 32}, "next_key_id",
     "argument 'next_key_id' of rotate_key: expected a whole number from 1 to 65535, got '0'"),
    ("rotate_key", {"next_key_id": "2", "next_public_key": "xyz"}, "next_public_key",
     "argument 'next_public_key' of rotate_key: expected 64 hex digits, got 'xyz'"),
    ("status_query", {"features": "battery,mood"}, "features",
     "argument 'features' of status_query: expected names separated by commas: battery, "
     "signal, network_operator, location_services, lock_state, storage, sim, app_version, "
     "os_version, restrictions, geofence, sleep_state, got 'battery,mood'"),
    ("status_query", {}, "features",
     "argument 'features' of status_query is required: names separated by commas: battery, "
     "signal, network_operator, location_services, lock_state, storage, sim, app_version, "
     "os_version, restrictions, geofence, sleep_state"),
    ("lock", {"colour": "red"}, "colour", "lock has no argument 'colour'; it takes "
                                          "emergency_dialer"),
    ("notify", {"text": "hi", "encoding": "ebcdic"}, "encoding",
     "argument 'encoding' of notify: expected auto or utf8 or gsm7, got 'ebcdic'"),
    ("set_trusted_numbers", {"numbers": "call me"}, "numbers",
     "argument 'numbers' of set_trusted_numbers: expected phone numbers separated by commas, "
     "got 'call me'"),
])
def test_a_wrong_argument_is_named_with_the_form_expected(
        command: str, values: dict[str, str], name: str, message: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        check_arguments(command, values)
    assert (caught.value.name, caught.value.message) == (name, message)


def test_durations_are_written_as_in_the_cli() -> None:
    assert [parse_duration(t) for t in ("", "3600", "90m", "12h", "1d")] == [
        None, 3600, 5400, 43200, 86400]
    with pytest.raises(ArgumentError, match="'soon' is not a duration like 3600, 90m"):
        parse_duration("soon")
