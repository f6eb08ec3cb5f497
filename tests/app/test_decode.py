"""The decoder of stored messages, over real frames made by the signing package."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from blobstore.messages import StoredMessage
from blobstore.pdu_batches import MAGIC, pack_pdu
from mepl.app.decode import decode_message, hex_dump
from signing.alerts import make_alert
from signing.commands import make_command
from signing.transport import DEVICE_PORT, SERVER_PORT, armour, split_frame
from sms_gateway.udh import Concat, Udh, encode_udh
from tests.signing.helpers import IMEI_A, NOW, SERVER_NUMBER, make_handset, seal

AT = datetime.fromtimestamp(NOW, UTC)
PORTS = Udh(dest_port=SERVER_PORT, src_port=DEVICE_PORT)


def stored(kind: str, payload: bytes, *, direction: str = "in", channel: str = "smpp",
           meta: Mapping[str, Any] | None = None, error: str | None = None,
           device_id: int | None = None, command_id: int | None = None,
           part: tuple[int, int] | None = None, message_id: int = 1,
           peer: str | None = "+447700900123", link: str | None = "l1",
           smsc_message_id: str | None = None) -> StoredMessage:
    return StoredMessage(
        id=message_id, direction=direction, channel=channel, kind=kind, link=link, peer=peer,
        device_id=device_id, command_id=command_id, smsc_message_id=smsc_message_id,
        external_id=None, part_seq=part[0] if part else None,
        part_total=part[1] if part else None, payload=payload,
        sha256=hashlib.sha256(payload).digest(), error=error, meta=meta, created_at=AT)


def mo_part(frame: bytes, udh: Udh = PORTS, **kwargs: Any) -> StoredMessage:
    meta = {"receiver": SERVER_NUMBER, "data_coding": 4, "udh": True}
    if udh.concat is not None:
        meta.update(concat_ref=udh.concat.reference, concat_bits=8)
        kwargs["part"] = (udh.concat.seq, udh.concat.total)
    return stored("mo", encode_udh(udh) + frame, meta=meta, **kwargs)


def reply_to(opcode: str, counter: int = 2, **args: Any) -> bytes:
    """The reference handset's reply to ``opcode``, after a lock without emergency dialer."""
    handset = make_handset()
    handset.device.position = [515007292, -1246050, 25]
    handset.receive(seal(make_command("lock", emergency_dialer=False), 1), SERVER_NUMBER, NOW)
    return handset.receive(seal(make_command(opcode, **args), counter), SERVER_NUMBER,
                           NOW).reply_frame


def test_a_sent_command_part_shows_its_frame_fields_smsc_id_part_and_receipt() -> None:
    frame = seal(make_command("status_query", features=["battery", "sim"]), 42)
    view = decode_message(stored("mt", frame, direction="out", device_id=3, command_id=9,
                                 part=(1, 1), smsc_message_id="abc123",
                                 meta={"status": "delivered"}))
    assert view.summary == ('command status_query features=["battery", "sim"] '
                            "(key 1, counter 42, part 1/1)")
    assert view.verdict == "receipt: delivered"
    assert view.details["frame"] == {
        "type": "command", "key_id": 1, "counter": 42,
        "not_after": datetime.fromtimestamp((NOW + 3600) // 60 * 60, UTC).isoformat(),
        "opcode": "status_query", "args": {"features": ["battery", "sim"]}}
    assert view.details["smsc_message_id"] == "abc123"
    assert view.part == "1/1"
    waiting = decode_message(stored("mt", frame, direction="out", part=(1, 1)))
    assert waiting.verdict == "no receipt yet"


def test_a_notify_command_shows_its_text_not_septets() -> None:
    frame = seal(make_command("notify", text="Return to base"), 5)
    view = decode_message(stored("mt", frame, direction="out"))
    assert view.details["frame"]["args"] == {"text": "Return to base", "encoding": "gsm7"}
    assert 'text="Return to base"' in view.summary


def test_a_verified_lock_status_reply_shows_the_state_as_text() -> None:
    view = decode_message(mo_part(reply_to("lock_status", 7), device_id=3, command_id=9),
                          opcode="lock_status")
    assert view.verdict == "verified"
    assert view.summary == "reply to lock_status (key 1, counter 7): ok; state=locked"
    frame = view.details["frame"]
    assert (frame["imei"], frame["command_counter"], frame["status"]) == (IMEI_A, 7, "ok")
    assert frame["items"] == [{"tag": 1, "name": "state", "value": "locked"}]
    assert view.details["udh"] == {"dest_port": SERVER_PORT, "src_port": DEVICE_PORT}
    assert view.details["transport"] == "binary"


def test_a_locate_reply_shows_degrees_and_accuracy() -> None:
    view = decode_message(mo_part(reply_to("locate")), opcode="locate")
    assert view.details["frame"]["items"] == [
        {"tag": 1, "name": "lat", "value": 51.5007292},
        {"tag": 2, "name": "lon", "value": -0.124605},
        {"tag": 3, "name": "accuracy_m", "value": 25}]
    assert "lat=51.5007292; lon=-0.124605; accuracy_m=25" in view.summary


def test_a_status_query_reply_shows_each_feature_as_utf8_text() -> None:
    view = decode_message(mo_part(reply_to("status_query", features=["battery", "lock_state"])),
                          opcode="status_query")
    assert [(i["name"], i["value"]) for i in view.details["frame"]["items"]] == [
        ("battery", "80"), ("lock_state", "locked")]


def test_reply_items_of_an_unknown_command_are_shown_as_hex() -> None:
    view = decode_message(mo_part(reply_to("lock_status")))
    assert view.details["frame"]["items"] == [
        {"tag": 1, "name": "0x01", "value": "01", "encoding": "hex"}]
    assert view.verdict == "not applied yet"


def test_an_armoured_alert_is_decoded_with_its_signed_msisdn() -> None:
    frame = make_handset().alert(make_alert("sim_changed", imsi="234150000000009",
                                            msisdn="+447700900999"), NOW)
    text = armour(frame)
    row = stored("mo", text.encode("ascii"), channel="http", device_id=3,
                 meta={"receiver": SERVER_NUMBER, "data_coding": 0, "armoured": text,
                       "callback": 11})
    view = decode_message(row)
    assert view.details["transport"] == "text armour"
    assert view.details["callback_message_id"] == 11
    assert view.details["frame"]["alert"] == "sim_changed"
    assert view.details["frame"]["args"] == {"imsi": "234150000000009",
                                             "msisdn": "+447700900999"}
    assert view.details["frame"]["raised_at"] == AT.isoformat()
    assert view.summary.startswith('alert sim_changed imsi="234150000000009"')
    assert view.verdict == "verified"


def test_a_tampered_frame_is_still_shown_with_the_rejection_recorded() -> None:
    frame = bytearray(reply_to("lock_status"))
    frame[-3] ^= 0x40
    view = decode_message(mo_part(bytes(frame), error="rejected: bad_signature"))
    assert view.verdict == "rejected: bad_signature"
    assert view.details["frame"]["status"] == "ok"


@pytest.mark.parametrize(("kind", "payload", "meta", "reason"), [
    ("mo", b"\x00\xffhello", None, "undecodable: unsupported_version: version 0"),
    ("mo", b"\x09\x05\x04", {"udh": True}, "undecodable: UdhError: UDH length exceeds"),
    ("mo", b"M1:!!!", None, "undecodable: malformed: bad base64"),
    ("mo", b"\x12" + bytes(30), None, "undecodable: truncated: 31 octets"),
    ("mt", b"\x13" + bytes(100), None, "undecodable: wrong_frame_type: type 3"),
    ("pdu", b"\x00\x01", None, "undecodable: 2 octets: shorter than a PDU header"),
    ("pdu_batch", b"\x00\x01", None, "undecodable: not a PDU batch"),
    ("pdu_batch", MAGIC + pack_pdu(1.0, None, bytes(16))[:-1], None,
     "undecodable: record 1: cut short"),
])
def test_garbage_never_raises_and_shows_the_reason_and_hex(
        kind: str, payload: bytes, meta: Mapping[str, Any] | None, reason: str) -> None:
    view = decode_message(stored(kind, payload, meta=meta, error="rejected: malformed",
                                 direction="out" if kind == "mt" else "in"))
    assert view.summary.startswith(reason)
    assert view.details["hex"] == payload.hex()
    assert view.verdict == "rejected: malformed"


def test_a_validly_enveloped_frame_with_bad_arguments_is_undecodable_malformed() -> None:
    frame = bytearray(seal(make_command("wipe", external_storage=True), 3))
    frame[16] = 0x07  # the flag's value: neither 0 nor 1
    view = decode_message(stored("mt", bytes(frame), direction="out"))
    assert view.summary.startswith("undecodable: malformed: argument external_storage")


def test_concatenated_parts_are_joined_only_when_every_part_is_stored() -> None:
    frame = make_handset().alert(make_alert("lost", detail="left on the 7:42 " * 8), NOW)
    chunks = split_frame(frame)
    assert len(chunks) == 2
    parts = [mo_part(chunk, Udh(SERVER_PORT, DEVICE_PORT, Concat(9, 2, seq)),
                     message_id=20 + seq, device_id=3)
             for seq, chunk in enumerate(chunks, start=1)]
    alone = decode_message(replace(parts[0], device_id=None))
    assert alone.summary == "part 1/2 of a message not complete: 1 of 2 parts stored"
    assert alone.verdict == "waiting for the other parts"
    joined = decode_message(parts[1], parts=parts)
    assert joined.details["frame"]["alert"] == "lost"
    assert joined.details["joined_parts"] == [21, 22]
    assert joined.details["udh"]["concat"] == {"reference": 9, "seq": 2, "total": 2}
    assert (joined.part, joined.verdict) == ("2/2", "verified")


def test_a_pdu_batch_shows_each_pdu_with_its_time_command_and_smsc_id() -> None:
    resp = (b"\x00\x00\x00\x17\x80\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x07"
            b"abc123\x00")
    submit = b"\x00\x00\x00\x10\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x07"
    at = AT.timestamp()
    payload = (MAGIC + pack_pdu(at, "c9", submit) + pack_pdu(at + 0.5, "c9", resp)
               + pack_pdu(at, None, b"x"))
    view = decode_message(stored("pdu_batch", payload, direction="out", meta={"pdus": 3}))
    assert view.summary == "3 PDUs: short frame 1, submit_sm 1, submit_sm_resp 1"
    assert view.verdict == "-"
    first, second, third = view.details["pdus"]
    assert (first["command"], first["sequence"], first["reference"]) == ("submit_sm", 7, "c9")
    assert first["at"] == AT.isoformat()
    assert (second["smsc_message_id"], second["hex"]) == ("abc123", resp.hex())
    assert third == {"at": AT.isoformat(), "hex": "78"}


def test_receipts_pdus_and_http_callbacks() -> None:
    dlr = decode_message(stored("dlr", b"id:abc123 stat:DELIVRD err:000", command_id=9,
                                smsc_message_id="abc123",
                                meta={"status": "delivered", "error": None}))
    assert (dlr.summary, dlr.verdict) == ("receipt delivered for SMSC id abc123", "applied")
    assert dlr.details["receipt_text"] == "id:abc123 stat:DELIVRD err:000"
    pdu = decode_message(stored("pdu", bytes(16), direction="out", meta={
        "command": "submit_sm_resp", "sequence": 7, "status": 0x58, "reference": "c9"}))
    assert pdu.summary.startswith("submit_sm_resp seq 7 0x00000058 ESME_RTHROTTLED (throttling")
    assert pdu.details["reference"] == "c9"
    request = (b"POST /kannel/dlr?type=1&token=%2A%2A%2A HTTP/1.1\r\n"
               b"content-type: application/x-www-form-urlencoded\r\n\r\nstatus=1")
    callback = decode_message(stored("dlr", request, channel="http", link="kannel",
                                     peer="10.0.0.9", command_id=9))
    assert callback.summary == "kannel: POST /kannel/dlr?type=1&token=%2A%2A%2A HTTP/1.1"
    assert callback.details["headers"] == ["content-type: application/x-www-form-urlencoded"]
    assert callback.details["body"] == "status=1"
    assert callback.verdict == "applied"


def test_hex_dump_lines_have_offsets_hex_and_ascii() -> None:
    assert hex_dump(b"M1:ABC\x00" + bytes(range(0x41, 0x4D))) == [
        "00000000  4d 31 3a 41 42 43 00 41 42 43 44 45 46 47 48 49  M1:ABC.ABCDEFGHI",
        "00000010  4a 4b 4c                                         JKL"]
