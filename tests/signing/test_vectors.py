"""The code must reach exactly the verdicts, bytes and replies stored in the vectors."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature

from signing.alerts import Alert, make_alert
from signing.commands import Command, ReplyStatus
from signing.counters import CounterWindow
from signing.errors import FrameRejected
from signing.frames import open_alert, open_reply, seal_alert, seal_command, seal_reply
from tests.signing import vectors

COMMANDS = vectors.cases("commands")
REPLIES = vectors.cases("replies")
ALERTS = vectors.cases("alerts")
TAGS = vectors.document()["domain_tags"]


def test_vector_file_covers_every_opcode_and_attack() -> None:
    accepted = {c["decoded"]["opcode"] for c in COMMANDS if c["verdict"] == "accept"}
    assert accepted == {"lock", "unlock", "status_query", "lock_status", "sleep", "wake",
                        "notify", "locate", "wipe", "set_trusted_numbers", "rotate_key",
                        "set_restrictions", "set_geofence"}
    reasons = {c["reason"] for c in COMMANDS + REPLIES + ALERTS}
    assert {"bad_signature", "replayed", "counter_too_old", "expired", "unsupported_version",
            "truncated", "unknown_key", "wrong_command", "wrong_device"} <= reasons
    assert any(c["verdict"] == "duplicate" for c in COMMANDS)


def test_vector_file_has_alerts_with_and_without_a_signed_number() -> None:
    numbers = {c["decoded"]["alert"]: c["decoded"]["args"]["msisdn"] for c in ALERTS
               if c["verdict"] == "accept" and "msisdn" in c["decoded"]["args"]}
    assert numbers == {"sim_changed": "+447700900789", "invalid_sim": "+12025550123"}
    assert any(c["decoded"]["alert"] == "sim_changed" and "msisdn" not in c["decoded"]["args"]
               for c in ALERTS if c["verdict"] == "accept")
    flipped = next(c for c in ALERTS if c["name"] == "alert-flip-msisdn")
    assert (flipped["reason"], flipped["signature_valid"]) == ("bad_signature", False)


@pytest.mark.parametrize("case", COMMANDS, ids=[c["name"] for c in COMMANDS])
def test_handset_reaches_the_command_vector_verdict(case: dict[str, Any]) -> None:
    handset = vectors.handset(case["handset"])
    for step in case["prior"]:
        handset.receive(bytes.fromhex(step["frame"]), step["sender"], step["now"])
    frame = bytes.fromhex(case["frame"])
    if case["verdict"] == "reject":
        with pytest.raises(FrameRejected) as info:
            handset.receive(frame, case["sender"], case["now"])
        assert info.value.reason.value == case["reason"]
        return
    outcome = handset.receive(frame, case["sender"], case["now"])
    assert outcome.duplicate == (case["verdict"] == "duplicate")
    assert outcome.frame.command.to_json() == case["decoded"]
    assert outcome.reply_frame.hex() == case["reply"]


@pytest.mark.parametrize("case", COMMANDS, ids=[c["name"] for c in COMMANDS])
def test_command_signed_bytes_and_encoding_match_the_vector(case: dict[str, Any]) -> None:
    frame = bytes.fromhex(case["frame"])
    if case["frame_is_sealed_inputs"]:
        inputs = case["inputs"]
        sealed = seal_command(Command.from_json(inputs["command"]), key=vectors.key(
            inputs["signer"]), server_id=bytes.fromhex(inputs["server_id"]),
            imei=inputs["imei"], counter=inputs["counter"], not_after=inputs["not_after"])
        assert sealed == frame
    if case["signed_bytes"] is None:
        return
    imei = vectors.document()["devices"][case["handset"]["device"]]["imei"]
    rebuilt = (bytes.fromhex(TAGS["command"]) + vectors.server_id() + imei.encode()
               + frame[:-64])
    assert rebuilt.hex() == case["signed_bytes"]
    assert frame[-64:].hex() == case["signature"]
    if case["verify_key"] is not None:
        assert _verifies(case["verify_key"], case["signature"], case["signed_bytes"]) == case[
            "signature_valid"]


def _verifies(key_name: str, signature: str, signed: str) -> bool:
    try:
        vectors.key(key_name).public.public_key.verify(bytes.fromhex(signature),
                                                        bytes.fromhex(signed))
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize("case", REPLIES, ids=[c["name"] for c in REPLIES])
def test_server_reaches_the_reply_vector_verdict(case: dict[str, Any]) -> None:
    device_key = vectors.key(case["device_key"])
    frame = bytes.fromhex(case["frame"])
    command = bytes.fromhex(case["command_frame"])
    if case["signed_bytes"] is not None:
        rebuilt = (bytes.fromhex(TAGS["reply"]) + vectors.server_id() + case["imei"].encode()
                   + hashlib.sha256(command).digest() + frame[:-64])
        assert rebuilt.hex() == case["signed_bytes"]
        assert _verifies(case["device_key"], case["signature"], case["signed_bytes"]) == case[
            "signature_valid"]
    kwargs = {"device_key": device_key.public, "server_id": vectors.server_id(),
              "imei": case["imei"], "command_frame": command}
    if case["verdict"] == "reject":
        with pytest.raises(FrameRejected) as info:
            open_reply(frame, **kwargs)  # type: ignore[arg-type]
        assert info.value.reason.value == case["reason"]
        return
    reply = open_reply(frame, **kwargs)  # type: ignore[arg-type]
    assert reply.status.name.lower() == case["status"]
    assert [{"tag": t, "value": v.hex()} for t, v in reply.items] == case["items"]
    items = [(i["tag"], bytes.fromhex(i["value"])) for i in case["inputs"]["items"]]
    assert seal_reply(command, ReplyStatus[case["inputs"]["status"].upper()], items,
                      device_key=device_key, server_id=vectors.server_id(),
                      imei=case["imei"]) == frame


@pytest.mark.parametrize("case", ALERTS, ids=[c["name"] for c in ALERTS])
def test_server_reaches_the_alert_vector_verdict(case: dict[str, Any]) -> None:
    device_key = vectors.key(case["device_key"])
    frame = bytes.fromhex(case["frame"])
    if case["signed_bytes"] is not None:
        rebuilt = (bytes.fromhex(TAGS["alert"]) + vectors.server_id() + case["imei"].encode()
                   + frame[:-64])
        assert rebuilt.hex() == case["signed_bytes"]
    window = CounterWindow.from_json(case["window"]) if case["window"] else None
    kwargs = {"device_key": device_key.public, "server_id": vectors.server_id(),
              "imei": case["imei"], "window": window}
    if case["verdict"] == "reject":
        with pytest.raises(FrameRejected) as info:
            open_alert(frame, **kwargs)  # type: ignore[arg-type]
        assert info.value.reason.value == case["reason"]
        return
    opened = open_alert(frame, **kwargs)  # type: ignore[arg-type]
    assert opened.alert.to_json() == case["decoded"]
    assert window is not None and not window.is_fresh(opened.header.counter)
    inputs = case["inputs"]
    alert: Alert = make_alert(inputs["alert"]["alert"], **inputs["alert"]["args"])
    assert seal_alert(alert, counter=inputs["counter"], raised_at=inputs["raised_at"],
                      device_key=device_key, server_id=vectors.server_id(),
                      imei=case["imei"]) == frame
