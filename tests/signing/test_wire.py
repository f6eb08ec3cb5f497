"""Encodings, budgets, text armouring, segmentation and the counter window."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing import gsm7
from signing.commands import Command, Opcode, make_command
from signing.counters import CounterWindow
from signing.errors import EncodingError, FrameRejected, Reason
from signing.transport import (
    ARMOUR_SINGLE_FRAME,
    CONCAT_PART,
    SINGLE_PART,
    Reassembler,
    armour,
    armoured_parts,
    dearmour,
    parts_needed,
    split_frame,
)
from signing.wire import bcd_decode, bcd_encode, decode_tlvs, encode_tlvs
from tests.signing.helpers import SERVER_KEY, seal

COMMON = [
    make_command("lock", emergency_dialer=True),
    make_command("unlock"),
    make_command("status_query", features=["battery", "signal", "lock_state", "sim"]),
    make_command("lock_status"),
    make_command("sleep", minutes=600),
    make_command("wake"),
    make_command("locate"),
    make_command("notify", text="Device locked by IT. Call +44 20 7946 0000."),
]
OTHERS = [
    make_command("wipe", external_storage=True),
    make_command("set_trusted_numbers", numbers=["+447700900123", "+447700900456"]),
    make_command("rotate_key", next_key_id=2, next_public_key=bytes(32)),
    make_command("set_restrictions", restrictions=["camera", "usb_data", "app_install"]),
    make_command("set_geofence", fence_id=1, lat_e7=515007000, lon_e7=-1246000, radius_m=5000),
]


def test_overhead_is_at_most_80_octets_leaving_50_for_arguments() -> None:
    overhead = len(seal(make_command("unlock"), 1))
    assert overhead <= 80
    assert SINGLE_PART - overhead >= 50


@pytest.mark.parametrize("command", COMMON + OTHERS, ids=lambda c: c.name)
def test_every_common_command_fits_one_binary_sms(command: Command) -> None:
    frame = seal(command, 1)
    assert parts_needed(len(frame)) == 1 and split_frame(frame) == [frame]


def test_fifty_octets_of_notification_text_still_fit_one_sms() -> None:
    frame = seal(make_command("notify", text="x" * 53, encoding="utf8"), 1)
    assert len(frame) == SINGLE_PART


def test_long_frames_are_cut_into_128_octet_parts_and_reassembled() -> None:
    frame = seal(make_command("notify", text="é" * 120), 1)
    parts = split_frame(frame)
    assert len(parts) == 2 and all(len(p) <= CONCAT_PART for p in parts)
    joiner = Reassembler(timeout=60)
    assert joiner.add("+4477", 9, 2, 2, parts[1], now=0) is None
    assert joiner.add("+4477", 9, 2, 1, parts[0], now=1) == frame


def test_reassembly_aborts_on_conflicting_duplicates_and_drops_stale_sets() -> None:
    joiner = Reassembler(timeout=60)
    joiner.add("+4477", 1, 2, 1, b"a", now=0)
    with pytest.raises(FrameRejected):
        joiner.add("+4477", 1, 2, 1, b"b", now=1)
    assert joiner.add("+4477", 1, 2, 2, b"c", now=2) is None
    assert joiner.add("+4477", 1, 2, 1, b"a", now=100) is None
    assert joiner.sets[("+4477", 1, 2)].parts == {1: b"a"}


def test_armoured_frame_round_trips_through_gsm7_packing() -> None:
    for command in COMMON:
        frame = seal(command, 123456)
        text = armour(frame)
        assert gsm7.is_basic(text)
        assert (len(text) <= 160) == (armoured_parts(len(frame)) == 1)
        if command.opcode is not Opcode.NOTIFY:
            assert len(text) <= 160
        septets = gsm7.encode_septets(text)
        assert len(septets) == len(text)
        carried = gsm7.decode_septets(gsm7.unpack(gsm7.pack(septets), len(septets)))
        assert dearmour(carried) == frame


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_armour_round_trips_any_bytes_through_gsm7(frame: bytes) -> None:
    text = armour(frame)
    septets = gsm7.encode_septets(text)
    assert gsm7.is_basic(text)
    assert dearmour(gsm7.decode_septets(gsm7.unpack(gsm7.pack(septets), len(septets)))) == frame


def test_armour_budget_matches_the_documented_figures() -> None:
    assert ARMOUR_SINGLE_FRAME == 117
    assert armoured_parts(117) == 1 and armoured_parts(118) == 2
    assert dearmour(armour(bytes(range(5))) + "==") == bytes(range(5))
    with pytest.raises(FrameRejected):
        dearmour("M1:@@@")


def test_gsm7_pack_matches_the_classic_example() -> None:
    assert gsm7.pack(gsm7.encode_septets("hellohello")).hex() == "e8329bfd4697d9ec37"
    assert gsm7.decode_septets(gsm7.encode_septets("{€}")) == "{€}"
    with pytest.raises(EncodingError):
        gsm7.encode_septets("ж")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(sorted(set(gsm7.BASIC) - {"\x1b"})), max_size=200))
def test_gsm7_notification_round_trips(text: str) -> None:
    command = make_command("notify", text=text, encoding="gsm7")
    from signing.commands import decode_command

    assert decode_command(Opcode.NOTIFY, command.encode_args()) == command


def test_bcd_and_tlv_encodings_are_canonical() -> None:
    assert bcd_encode("12345") == b"\x12\x34\x5f"
    assert bcd_decode(b"\x12\x34\x5f") == "12345"
    with pytest.raises(ValueError):
        bcd_decode(b"\x1f\x34")
    assert decode_tlvs(encode_tlvs([(1, b"a"), (3, b"")])) == [(1, b"a"), (3, b"")]
    with pytest.raises(EncodingError):
        encode_tlvs([(3, b""), (1, b"")])
    with pytest.raises(FrameRejected) as info:
        decode_tlvs(b"\x01\x05ab")
    assert info.value.reason is Reason.MALFORMED


def test_commands_round_trip_through_json() -> None:
    for command in COMMON + OTHERS:
        assert Command.from_json(command.to_json()) == command


def test_invalid_arguments_are_refused_when_the_command_is_made() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("lock", {"emergency_dialer": "yes"}), ("sleep", {"minutes": 70000}),
                         ("status_query", {"features": ["teleport"]}),
                         ("set_geofence", {"fence_id": 1, "lat_e7": 10**9, "lon_e7": 0,
                                           "radius_m": 1}),
                         ("set_trusted_numbers", {"numbers": ["07700900123"]}),
                         ("notify", {"text": "ж", "encoding": "gsm7"}),
                         ("frobnicate", {}), ("unlock", {"extra": 1})]
    for opcode, args in cases:
        with pytest.raises(EncodingError):
            make_command(opcode, **args)


def test_counter_window_tracks_high_water_mark_and_bitmap() -> None:
    window = CounterWindow(size=4)
    for counter in (5, 3, 9):
        window.accept(counter)
    assert window.seen_counters() == [9]
    window.accept(7)
    with pytest.raises(FrameRejected) as too_old:
        window.check(5)
    assert too_old.value.reason is Reason.COUNTER_TOO_OLD
    assert CounterWindow.from_json(window.to_json()) == window
    with pytest.raises(FrameRejected):
        CounterWindow().check(0)


def test_signing_key_repr_shows_no_key_material() -> None:
    text = repr(SERVER_KEY)
    assert "private" not in text.lower() or "Ed25519PrivateKey" not in text
    assert SERVER_KEY.private_key.private_bytes_raw().hex() not in text
