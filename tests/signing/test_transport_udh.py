"""Frames through the real UDH codec of sms_gateway: ports, concatenation, 140 octets."""

from __future__ import annotations

from signing.commands import make_command
from signing.transport import DEVICE_PORT, SERVER_PORT, SMS_USER_DATA, Reassembler, split_frame
from sms_gateway.udh import Concat, Udh, encode_udh, split_user_data
from tests.signing.helpers import NOW, SERVER_NUMBER, make_handset, seal


def _user_data(frame: bytes, reference: int) -> list[bytes]:
    parts = split_frame(frame)
    out = []
    for seq, part in enumerate(parts, start=1):
        concat = Concat(reference, len(parts), seq) if len(parts) > 1 else None
        out.append(encode_udh(Udh(DEVICE_PORT, SERVER_PORT, concat)) + part)
    return out


def test_single_part_frame_with_port_udh_fits_140_octets() -> None:
    frame = seal(make_command("notify", text="y" * 53, encoding="utf8"), 1)
    (user_data,) = _user_data(frame, 0)
    assert len(user_data) == SMS_USER_DATA
    udh, payload = split_user_data(user_data)
    assert (udh.dest_port, udh.src_port, udh.concat) == (DEVICE_PORT, SERVER_PORT, None)
    assert make_handset().receive(payload, SERVER_NUMBER, NOW).command.name == "notify"


def test_concatenated_frame_survives_udh_and_reassembly_out_of_order() -> None:
    text = "Ünïcødé notice " * 12
    frame = seal(make_command("notify", text=text), 2)
    user_data = _user_data(frame, 77)
    assert len(user_data) == 3 and all(len(u) <= SMS_USER_DATA for u in user_data)
    joiner = Reassembler()
    result = None
    for data in reversed(user_data):
        udh, payload = split_user_data(data)
        assert udh.concat is not None and udh.dest_port == DEVICE_PORT
        result = joiner.add(SERVER_NUMBER, udh.concat.reference, udh.concat.total,
                            udh.concat.seq, payload, now=0)
    assert result == frame
    outcome = make_handset().receive(result, SERVER_NUMBER, NOW)
    assert outcome.command.args["text"] == text
