"""The eight properties of SIGNED-SMS.md, each with tests that fail if it is broken."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.alerts import make_alert
from signing.commands import ReplyStatus, make_command, rotate_key_command
from signing.counters import CounterWindow
from signing.errors import EncodingError, FrameRejected, Reason
from signing.frames import open_alert, open_reply, peek_alert, seal_command
from signing.handset import Handset
from signing.keys import SigningKey
from signing.wire import DOMAIN_ALERT, DOMAIN_COMMAND, DOMAIN_REPLY
from tests.signing.helpers import (
    DEVICE_A,
    DEVICE_B,
    IMEI_A,
    IMEI_B,
    NEXT_KEY,
    NOW,
    SERVER_ID,
    SERVER_KEY,
    SERVER_NUMBER,
    make_handset,
    seal,
)

LOCK = make_command("lock", emergency_dialer=False)
VALID_FRAME = seal(LOCK, 7)


def _rejected(handset: Handset, frame: bytes, now: int = NOW,
              sender: str = SERVER_NUMBER) -> Reason:
    with pytest.raises(FrameRejected) as info:
        handset.receive(frame, sender, now)
    return info.value.reason


# 1. Authenticity of commands


def test_every_single_bit_flip_of_a_command_is_rejected() -> None:
    handset = make_handset()
    for index in range(len(VALID_FRAME)):
        for bit in range(8):
            mutated = bytearray(VALID_FRAME)
            mutated[index] ^= 1 << bit
            _rejected(handset, bytes(mutated))
    assert not handset.device.locked
    assert handset.receive(VALID_FRAME, SERVER_NUMBER, NOW).frame.command == LOCK


def test_frame_signed_by_another_key_under_a_trusted_key_id_is_rejected() -> None:
    forger = SigningKey.generate(SERVER_KEY.key_id)
    assert _rejected(make_handset(), seal(LOCK, 7, key=forger)) is Reason.BAD_SIGNATURE


def test_handset_state_holds_no_server_private_key() -> None:
    state = str(make_handset().to_json())
    assert SERVER_KEY.public.raw.hex() in state
    assert SERVER_KEY.private_key.private_bytes_raw().hex() not in state
    assert DEVICE_A.private_key.private_bytes_raw().hex() not in state


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_mutation_of_a_valid_frame_is_rejected(data: st.DataObject) -> None:
    frame = bytearray(VALID_FRAME)
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "extend"]))
    if kind == "flip":
        index = data.draw(st.integers(0, len(frame) - 1))
        frame[index] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "insert":
        frame.insert(data.draw(st.integers(0, len(frame))), data.draw(st.integers(0, 255)))
    elif kind == "delete":
        del frame[data.draw(st.integers(0, len(frame) - 1))]
    elif kind == "truncate":
        del frame[data.draw(st.integers(0, len(frame) - 1)):]
    else:
        frame += data.draw(st.binary(min_size=1, max_size=40))
    assert bytes(frame) != VALID_FRAME
    handset = make_handset()
    with pytest.raises(FrameRejected):
        handset.receive(bytes(frame), SERVER_NUMBER, NOW)
    assert handset.executed == {} and handset.windows == {}


# 2. Identity binding at zero byte cost


def test_frame_for_device_a_is_rejected_by_device_b() -> None:
    frame_for_a = seal(LOCK, 7, imei=IMEI_A)
    device_b = make_handset(IMEI_B, DEVICE_B)
    assert _rejected(device_b, frame_for_a) is Reason.BAD_SIGNATURE
    assert make_handset().receive(frame_for_a, SERVER_NUMBER, NOW).reply_frame


def test_identity_costs_no_bytes_on_the_wire() -> None:
    assert len(seal(LOCK, 7)) == 14 + len(LOCK.encode_args()) + 64
    assert IMEI_A.encode() not in VALID_FRAME and SERVER_ID not in VALID_FRAME


def test_frame_from_another_deployment_is_rejected() -> None:
    other = seal(LOCK, 7, server_id=bytes(32))
    assert _rejected(make_handset(), other) is Reason.BAD_SIGNATURE


def test_domain_tags_are_distinct_and_prefix_free() -> None:
    tags = [DOMAIN_COMMAND, DOMAIN_REPLY, DOMAIN_ALERT]
    for a in tags:
        for b in tags:
            assert a == b or not b.startswith(a)


# 3. No replay


def test_counter_is_48_bits() -> None:
    handset = make_handset()
    assert handset.receive(seal(LOCK, 2**48 - 1), SERVER_NUMBER, NOW).frame.counter == 2**48 - 1
    with pytest.raises(EncodingError):
        seal(LOCK, 2**48)


def test_out_of_order_counters_inside_the_window_are_accepted_once() -> None:
    handset = make_handset()
    handset.receive(seal(LOCK, 100), SERVER_NUMBER, NOW)
    handset.receive(seal(LOCK, 90), SERVER_NUMBER, NOW)
    assert _rejected(handset, seal(make_command("wake"), 90)) is Reason.REPLAYED
    assert _rejected(handset, seal(LOCK, 36)) is Reason.COUNTER_TOO_OLD
    handset.receive(seal(LOCK, 37), SERVER_NUMBER, NOW)


def test_counter_is_persisted_before_the_command_executes() -> None:
    snapshots: list[tuple[bool, bool]] = []

    def persist(h: Handset) -> None:
        snapshots.append((h.windows[1].is_fresh(7), h.device.locked))

    handset = make_handset()
    handset.persist = persist
    handset.receive(VALID_FRAME, SERVER_NUMBER, NOW)
    assert snapshots[0] == (False, False)
    assert snapshots[-1] == (False, True)


def test_a_failed_persist_means_the_command_is_not_executed() -> None:
    def persist(h: Handset) -> None:
        raise OSError("disk full")

    handset = make_handset()
    handset.persist = persist
    with pytest.raises(OSError):
        handset.receive(VALID_FRAME, SERVER_NUMBER, NOW)
    assert not handset.device.locked


def test_counter_state_survives_a_json_round_trip() -> None:
    handset = make_handset()
    handset.receive(VALID_FRAME, SERVER_NUMBER, NOW)
    restored = Handset.from_json(handset.to_json(), DEVICE_A)
    assert restored.receive(VALID_FRAME, SERVER_NUMBER, NOW).duplicate
    assert _rejected(restored, seal(make_command("wake"), 7)) is Reason.REPLAYED


# 4. Expiry


def test_a_command_held_two_days_in_an_smsc_is_not_executed() -> None:
    handset = make_handset()
    assert _rejected(handset, VALID_FRAME, now=NOW + 2 * 86400) is Reason.EXPIRED
    assert not handset.device.locked and handset.windows == {}


def test_not_after_is_inclusive_and_rounded_down_to_the_minute() -> None:
    frame = seal(LOCK, 7, not_after=NOW + 119)
    assert _rejected(make_handset(), frame, now=NOW + 61) is Reason.EXPIRED
    make_handset().receive(frame, SERVER_NUMBER, NOW + 60)


# 5. Idempotent resends


def test_a_resent_frame_returns_the_stored_reply_without_executing_again() -> None:
    handset = make_handset()
    note = seal(make_command("notify", text="hello"), 11)
    first = handset.receive(note, SERVER_NUMBER, NOW)
    second = handset.receive(note, SERVER_NUMBER, NOW + 60)
    assert second.duplicate and not first.duplicate
    assert second.reply_frame == first.reply_frame
    assert handset.device.notifications == ["hello"]


# 6. Authenticated replies and alerts


def test_reply_verifies_and_cannot_be_moved_or_forged() -> None:
    handset = make_handset()
    command = seal(make_command("lock_status"), 5)
    other = seal(make_command("lock_status"), 6)
    reply = handset.receive(command, SERVER_NUMBER, NOW).reply_frame
    opened = open_reply(reply, device_key=DEVICE_A.public, server_id=SERVER_ID, imei=IMEI_A,
                        command_frame=command)
    assert opened.status is ReplyStatus.OK and opened.items == ((1, b"\x00"),)
    with pytest.raises(FrameRejected) as moved:
        open_reply(reply, device_key=DEVICE_A.public, server_id=SERVER_ID, imei=IMEI_A,
                   command_frame=other)
    assert moved.value.reason is Reason.WRONG_COMMAND
    impostor = SigningKey(DEVICE_A.key_id, DEVICE_B.private_key)
    forged = make_handset(key=impostor).receive(command, SERVER_NUMBER, NOW).reply_frame
    with pytest.raises(FrameRejected) as bad:
        open_reply(forged, device_key=DEVICE_A.public, server_id=SERVER_ID, imei=IMEI_A,
                   command_frame=command)
    assert bad.value.reason is Reason.BAD_SIGNATURE


def test_alerts_use_their_own_counter_and_replays_are_refused() -> None:
    handset = make_handset()
    handset.receive(VALID_FRAME, SERVER_NUMBER, NOW)
    sim = make_alert("sim_changed", imsi="234150999999999")
    first = handset.alert(sim, NOW)
    second = handset.alert(make_alert("lost"), NOW)
    assert peek_alert(first).counter == 1 and peek_alert(second).counter == 2
    window = CounterWindow()
    opened = open_alert(first, device_key=DEVICE_A.public, server_id=SERVER_ID, imei=IMEI_A,
                        window=window)
    assert opened.alert == sim
    with pytest.raises(FrameRejected) as replay:
        open_alert(first, device_key=DEVICE_A.public, server_id=SERVER_ID, imei=IMEI_A,
                   window=window)
    assert replay.value.reason is Reason.REPLAYED


def test_sim_change_alert_is_found_and_verified_without_a_sender_number() -> None:
    frame = make_handset().alert(make_alert("sim_changed", imsi="001010123456789"), NOW)
    header = peek_alert(frame)
    keys = {IMEI_A: DEVICE_A.public, IMEI_B: DEVICE_B.public}
    opened = open_alert(frame, device_key=keys[header.imei], server_id=SERVER_ID,
                        imei=header.imei)
    assert opened.alert.args["imsi"] == "001010123456789"


# 7. Keys are identified and rotate


def test_rotation_overlaps_then_retires_the_old_key() -> None:
    handset = make_handset()
    rotate = seal(rotate_key_command(NEXT_KEY.key_id, NEXT_KEY.public.raw), 20)
    handset.receive(rotate, SERVER_NUMBER, NOW)
    handset.receive(seal(LOCK, 21), SERVER_NUMBER, NOW)
    handset.receive(seal(make_command("wake"), 1, key=NEXT_KEY), SERVER_NUMBER, NOW)
    assert set(handset.trusted_keys) == {NEXT_KEY.key_id}
    assert _rejected(handset, seal(LOCK, 22)) is Reason.UNKNOWN_KEY


def test_rotate_command_must_be_signed_by_a_trusted_key() -> None:
    attacker = SigningKey.generate(1)
    handset = make_handset()
    rotate = seal(rotate_key_command(9, attacker.public.raw), 20, key=attacker)
    assert _rejected(handset, rotate) is Reason.BAD_SIGNATURE
    assert set(handset.trusted_keys) == {1}


def test_trusted_numbers_change_only_by_a_signed_command() -> None:
    handset = make_handset()
    change = seal(make_command("set_trusted_numbers", numbers=["+15550001111"]), 30)
    forged = seal(make_command("set_trusted_numbers", numbers=["+15559999999"]), 31,
                  key=SigningKey.generate(1))
    assert _rejected(handset, forged) is Reason.BAD_SIGNATURE
    assert handset.trusted_numbers == (SERVER_NUMBER,)
    handset.receive(change, SERVER_NUMBER, NOW)
    assert _rejected(handset, seal(LOCK, 32)) is Reason.UNTRUSTED_SENDER
    handset.receive(seal(LOCK, 32), "+1 555 000 1111", NOW)


# 8. Failures say nothing useful to an attacker


def test_rejected_frames_get_no_signed_output_and_are_counted() -> None:
    handset = make_handset()
    handset.receive(seal(LOCK, 3), SERVER_NUMBER, NOW)
    before = handset.to_json()
    bad = bytearray(VALID_FRAME)
    bad[-1] ^= 1
    outputs = []
    for frame in (bytes(bad), VALID_FRAME[:20], seal(LOCK, 3, imei=IMEI_B)):
        with contextlib.suppress(FrameRejected):
            outputs.append(handset.receive(frame, SERVER_NUMBER, NOW))
    assert outputs == []
    after = handset.to_json()
    assert after.pop("rejected") == {"bad_signature": 2, "truncated": 1}
    before.pop("rejected")
    assert after == before


def test_seal_command_refuses_a_bad_imei() -> None:
    with pytest.raises(EncodingError):
        seal_command(LOCK, key=SERVER_KEY, server_id=SERVER_ID, imei="12345", counter=1,
                     not_after=NOW)
