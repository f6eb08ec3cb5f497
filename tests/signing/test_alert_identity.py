"""A SIM-change alert carries the new SIM's number inside the signature (issue 8, item 2).

The SMS sender proves nothing: a relayed alert arrives from whatever number
relayed it.  The number (and IMSI) the server records must come from signed
alert content, so ``sim_changed`` (and ``invalid_sim``) carry an optional
signed ``msisdn`` field, tag 0x03, decoded as ``"+"`` and the E.164 digits.
"""

from __future__ import annotations

import pytest

from signing.alerts import AlertType, decode_alert, make_alert
from signing.errors import EncodingError, FrameRejected, Reason
from signing.frames import open_alert, seal_alert
from signing.handset import Handset
from signing.wire import ALERT_HEADER_LEN
from tests.signing.helpers import DEVICE_A, IMEI_A, NOW, SERVER_ID, make_handset

NEW_NUMBER = "+447700900456"
NEW_IMSI = "234150999999999"


def _open(frame: bytes) -> dict[str, object]:
    opened = open_alert(frame, device_key=DEVICE_A.public, server_id=SERVER_ID, imei=IMEI_A)
    return dict(opened.alert.args)


def test_sim_changed_alert_carries_the_new_number_under_the_signature() -> None:
    frame = make_handset().alert(
        make_alert("sim_changed", imsi=NEW_IMSI, msisdn=NEW_NUMBER), NOW)
    assert _open(frame) == {"imsi": NEW_IMSI, "msisdn": NEW_NUMBER}
    tlv = bytes.fromhex("0306447700900456")
    assert frame[ALERT_HEADER_LEN:-64].endswith(tlv)
    where = frame.index(tlv) + 4
    tampered = bytearray(frame)
    tampered[where] ^= 0x01  # 0x90 -> 0x91: another number, same length
    with pytest.raises(FrameRejected) as info:
        _open(bytes(tampered))
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_sim_changed_without_a_number_still_verifies_as_before() -> None:
    frame = make_handset().alert(make_alert("sim_changed", imsi=NEW_IMSI), NOW)
    assert _open(frame) == {"imsi": NEW_IMSI}
    assert frame[ALERT_HEADER_LEN:-64] == bytes.fromhex("0108234150999999999f")


def test_invalid_sim_alert_may_carry_the_number_of_the_refused_sim() -> None:
    frame = make_handset().alert(make_alert("invalid_sim", msisdn="+12025550123"), NOW)
    assert _open(frame) == {"msisdn": "+12025550123"}


@pytest.mark.parametrize("number", ["447700900456", "+44", "+4477009004561234", "+44 7700",
                                    "", 447700900456])
def test_alert_number_must_be_an_e164_number_with_plus(number: object) -> None:
    with pytest.raises(EncodingError, match="msisdn"):
        make_alert("sim_changed", imsi=NEW_IMSI, msisdn=number)


@pytest.mark.parametrize("value", ["030112", "03024f47", "0300",
                                   "03081234567890123456"])
def test_non_canonical_or_short_numbers_in_a_signed_alert_are_malformed(value: str) -> None:
    with pytest.raises(FrameRejected) as info:
        decode_alert(AlertType.SIM_CHANGED, bytes.fromhex("01020123" + value))
    assert info.value.reason is Reason.MALFORMED


def test_handset_remembers_the_number_of_its_current_sim() -> None:
    handset = make_handset()
    assert handset.msisdn is None
    handset.alert(make_alert("sim_changed", imsi=NEW_IMSI, msisdn=NEW_NUMBER), NOW)
    assert handset.msisdn == NEW_NUMBER
    state = handset.to_json()
    assert state["msisdn"] == NEW_NUMBER
    assert Handset.from_json(state, DEVICE_A).msisdn == NEW_NUMBER
    handset.alert(make_alert("sim_changed", imsi="001010123456789"), NOW)
    assert handset.msisdn is None, "a new SIM whose number is unknown clears the old number"
    del state["msisdn"]
    assert Handset.from_json(state, DEVICE_A).msisdn is None


def test_sealed_alert_with_number_is_the_documented_size() -> None:
    alert = make_alert("sim_changed", imsi=NEW_IMSI, iccid="8944110068256270054",
                       msisdn=NEW_NUMBER)
    frame = seal_alert(alert, counter=1, raised_at=NOW, device_key=DEVICE_A,
                       server_id=SERVER_ID, imei=IMEI_A)
    assert len(frame) == 116
