"""peek_frame: every frame type decoded without its signature, for showing stored frames."""

from __future__ import annotations

import pytest

from signing.alerts import make_alert
from signing.commands import ReplyStatus, make_command
from signing.errors import FrameRejected, Reason
from signing.frames import CommandFrame, OpenedAlert, Reply, peek_frame
from tests.signing.helpers import IMEI_A, NOW, SERVER_KEY, make_handset, seal


def test_peek_frame_decodes_a_command_like_open_command_without_any_key() -> None:
    frame = seal(make_command("status_query", features=["battery", "sim"]), 7)
    peeked = peek_frame(frame)
    assert isinstance(peeked, CommandFrame)
    assert (peeked.key_id, peeked.counter, peeked.not_after) == (
        SERVER_KEY.key_id, 7, (NOW + 3600) // 60 * 60)
    assert peeked.command.to_json() == {"opcode": "status_query",
                                        "args": {"features": ["battery", "sim"]}}


def test_peek_frame_decodes_reply_status_and_items_of_the_reference_handset() -> None:
    handset = make_handset()
    outcome = handset.receive(seal(make_command("lock_status"), 3), "+447700900123", NOW)
    peeked = peek_frame(outcome.reply_frame)
    assert isinstance(peeked, Reply)
    assert peeked.header.imei == IMEI_A
    assert (peeked.header.command_key_id, peeked.header.command_counter) == (1, 3)
    assert peeked.status is ReplyStatus.OK
    assert peeked.items == ((0x01, b"\x00"),)


def test_peek_frame_decodes_an_alert() -> None:
    frame = make_handset().alert(make_alert("lost", detail="left in a taxi"), NOW)
    peeked = peek_frame(frame)
    assert isinstance(peeked, OpenedAlert)
    assert peeked.header.counter == 1 and peeked.header.raised_minutes == NOW // 60
    assert peeked.alert.to_json() == {"alert": "lost", "args": {"detail": "left in a taxi"}}


def test_peek_frame_ignores_the_signature_but_refuses_what_cannot_be_decoded() -> None:
    frame = bytearray(seal(make_command("lock"), 1))
    frame[-1] ^= 0xFF  # a bad signature: still decodable, for display
    assert isinstance(peek_frame(bytes(frame)), CommandFrame)
    frame[13] = 0x7F  # an opcode nobody knows
    with pytest.raises(FrameRejected) as bad_opcode:
        peek_frame(bytes(frame))
    assert bad_opcode.value.reason is Reason.UNKNOWN_OPCODE
    for garbage, reason in ((b"", Reason.TRUNCATED), (b"\x21" + bytes(90),
                                                       Reason.UNSUPPORTED_VERSION),
                            (b"\x15" + bytes(90), Reason.WRONG_FRAME_TYPE),
                            (b"\x12" + bytes(10), Reason.TRUNCATED)):
        with pytest.raises(FrameRejected) as rejected:
            peek_frame(garbage)
        assert rejected.value.reason is reason
