"""The signed-frame decoders: binary and armoured frames, replies, alerts, commands.

Contract: :func:`~signing.frames.peek_frame`, ``peek_reply``, ``peek_alert``,
``open_reply``, ``open_alert``, ``open_command`` (through the reference
handset) and :func:`~signing.transport.dearmour` raise only
:class:`~signing.errors.FrameRejected`; the inbound worker's frame extraction
likewise; :func:`mepl.app.decode.decode_message` (``mepl messages``) never
raises.  Random frames rarely get past the signature, so most inputs are
frames whose header and arguments come from the fuzzer and that are then
signed with the right key (and sometimes damaged after signing): that is how
the argument decoders behind the signature are reached.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._common import Reader, expect, instrumented, run

with instrumented(__name__ == "__main__"):
    from blobstore.messages import StoredMessage
    from mepl.app.decode import decode_message
    from mepl.runtime.inbound_rows import frame_of as _frame_of
    from signing.alerts import make_alert
    from signing.commands import ReplyStatus, make_command
    from signing.counters import CounterWindow
    from signing.errors import FrameRejected
    from signing.frames import (
        open_alert,
        open_reply,
        peek_alert,
        peek_frame,
        peek_reply,
        seal_alert,
        seal_command,
        seal_reply,
    )
    from signing.handset import Handset
    from signing.keys import SigningKey, device_key_id
    from signing.transport import armour, dearmour
    from signing.wire import (
            alert_signed_bytes,
        command_signed_bytes,
        imei_bcd,
        reply_signed_bytes,
    )

TARGET = "signed_frame"
SERVER_ID = hashlib.sha256(b"fuzz deployment").digest()
IMEI = "490154203237518"
SERVER_KEY = SigningKey.from_seed(1, hashlib.sha256(b"fuzz server").digest())
_raw_device = SigningKey.from_seed(1, hashlib.sha256(b"fuzz device").digest())
DEVICE_KEY = SigningKey(device_key_id(_raw_device.public.raw), _raw_device.private_key)
NOW = 1_767_225_600
COMMAND = seal_command(make_command("status_query", features=["battery"]), key=SERVER_KEY,
                       server_id=SERVER_ID, imei=IMEI, counter=5, not_after=NOW + 3600)
SENDER = "+447700900123"
PEEK_ERRORS = (FrameRejected,)


def _damage(r: Reader, frame: bytes) -> bytes:
    """Leave the frame, flip a bit, truncate it, or append to it (after signing)."""
    how = r.u8() % 8
    if how == 1 and frame:
        out = bytearray(frame)
        out[r.u16() % len(out)] ^= 1 << (r.u8() % 8)
        return bytes(out)
    if how == 2:
        return frame[: r.u16() % (len(frame) + 1)]
    if how == 3:
        return frame + r.chunk(8)
    return frame


def signed_reply(r: Reader) -> bytes:
    """A reply whose header and items are the fuzzer's, signed by the device."""
    imei = imei_bcd(IMEI) if r.u8() % 8 else r.take(8).ljust(8, b"\0")
    key_id = DEVICE_KEY.key_id.to_bytes(2, "big") if r.u8() % 8 else r.take(2).ljust(2, b"\0")
    echo = COMMAND[1:9] if r.u8() % 8 else r.take(8).ljust(8, b"\0")
    status = bytes((r.u8() % 6,))
    body = b"\x12" + imei + key_id + echo + status + r.chunk()
    signed = reply_signed_bytes(SERVER_ID, IMEI.encode(), COMMAND, body)
    return _damage(r, body + DEVICE_KEY.sign(signed))


def signed_alert(r: Reader) -> bytes:
    """An alert whose header and arguments are the fuzzer's, signed by the device."""
    imei = imei_bcd(IMEI) if r.u8() % 8 else r.take(8).ljust(8, b"\0")
    key_id = DEVICE_KEY.key_id.to_bytes(2, "big") if r.u8() % 8 else r.take(2).ljust(2, b"\0")
    counter = r.take(6).ljust(6, b"\0")
    raised = (NOW // 60).to_bytes(4, "big") if r.flag() else r.take(4).ljust(4, b"\0")
    alert_type = bytes((r.u8() % 7,))
    body = b"\x13" + imei + key_id + counter + raised + alert_type + r.chunk()
    signed = alert_signed_bytes(SERVER_ID, IMEI.encode(), body)
    return _damage(r, body + DEVICE_KEY.sign(signed))


def signed_command(r: Reader) -> bytes:
    """A command whose header and arguments are the fuzzer's, signed by the server key."""
    key_id = b"\x00\x01" if r.u8() % 8 else r.take(2).ljust(2, b"\0")
    counter = r.take(6).ljust(6, b"\0")
    not_after = ((NOW + 3600) // 60).to_bytes(4, "big") if r.flag() else r.take(4).ljust(4,
                                                                                          b"\0")
    opcode = bytes((r.u8() % 15,))
    body = b"\x11" + key_id + counter + not_after + opcode + r.chunk()
    signed = command_signed_bytes(SERVER_ID, IMEI.encode(), body)
    return _damage(r, body + SERVER_KEY.sign(signed))


def handset() -> Handset:
    """A fresh reference handset trusting the fuzz server key and sender."""
    return Handset(imei=IMEI, server_id=SERVER_ID, device_key=DEVICE_KEY,
                   trusted_keys={SERVER_KEY.key_id: SERVER_KEY.public},
                   trusted_numbers=(SENDER,))


def server_side(frame: bytes) -> None:
    """What the inbound worker and ``mepl messages`` do with a frame from a device."""
    expect(lambda: peek_frame(frame), *PEEK_ERRORS)
    if frame[:1] == b"\x12":
        expect(lambda: peek_reply(frame), *PEEK_ERRORS)
        expect(lambda: open_reply(frame, device_key=DEVICE_KEY.public, server_id=SERVER_ID,
                                  imei=IMEI, command_frame=COMMAND), *PEEK_ERRORS)
    elif frame[:1] == b"\x13":
        expect(lambda: peek_alert(frame), *PEEK_ERRORS)
        window = CounterWindow()
        opened = expect(lambda: open_alert(frame, device_key=DEVICE_KEY.public,
                                           server_id=SERVER_ID, imei=IMEI, window=window),
                        *PEEK_ERRORS)
        if opened is not None:
            assert opened.alert.to_json()["alert"] == opened.alert.name
            assert not window.is_fresh(opened.header.counter), "alert counter not marked"


def stored(frame: bytes, r: Reader) -> None:
    """``decode_message`` on a stored row holding ``frame`` (never raises)."""
    kind = r.pick(("mo", "mt", "pdu", "dlr", "mo"))
    meta: dict[str, object] = {}
    if r.flag():
        meta["udh"] = True
    if r.flag():
        meta["armoured"] = frame.decode("latin-1")
    channel = r.pick(("smpp", "http"))
    if channel == "http" and r.flag():
        meta["data_coding"] = 4
    message = StoredMessage(
        id=1, direction=r.pick(("in", "out")), channel=channel, kind=kind, link="a",
        peer=SENDER, device_id=None, command_id=None, smsc_message_id=None, external_id=None,
        part_seq=None, part_total=None, payload=frame, sha256=hashlib.sha256(frame).digest(),
        error=None, meta=meta, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    view = decode_message(message, opcode=r.pick((None, "lock_status", "locate",
                                                  "status_query")))
    view.to_json(raw=True)


def one_input(data: bytes) -> None:
    """Dispatch on the first octet: raw, armoured, or signed-then-damaged frames."""
    r = Reader(data)
    mode = r.u8() % 7
    if mode == 0:
        frame = r.rest()
        server_side(frame)
        stored(frame[1:], Reader(frame[:1]))
    elif mode == 1:
        text = r.rest().decode("latin-1")
        dearmoured = expect(lambda: dearmour(text), *PEEK_ERRORS)
        if dearmoured is not None:
            assert dearmour(armour(dearmoured)) == dearmoured
            server_side(dearmoured)
        payload = text.encode("latin-1")
        armoured = text if payload[:1] == b"\x01" else None
        expect(lambda: _frame_of(payload, armoured), *PEEK_ERRORS)
    elif mode == 2:
        server_side(signed_reply(r))
    elif mode == 3:
        server_side(signed_alert(r))
    elif mode == 4:
        frame = signed_command(r)
        device = handset()
        outcome = expect(lambda: device.receive(frame, SENDER, NOW), *PEEK_ERRORS)
        if outcome is not None:
            # From a number it still trusts (set_trusted_numbers may just have changed them).
            sender = device.trusted_numbers[0] if device.trusted_numbers else SENDER
            again = device.receive(frame, sender, NOW)
            assert again.duplicate and again.reply_frame == outcome.reply_frame
            server_side(outcome.reply_frame)
        expect(lambda: peek_frame(frame), *PEEK_ERRORS)
    elif mode == 5:
        frame = (signed_reply, signed_alert, signed_command)[r.u8() % 3](r)
        stored(frame, r)
    else:
        frame = r.rest()
        stored(frame, Reader(b""))


def seeds() -> list[bytes]:
    """Valid frames of each type, plain and armoured."""
    reply = seal_reply(COMMAND, ReplyStatus.OK, [(1, b"80")], device_key=DEVICE_KEY,
                       server_id=SERVER_ID, imei=IMEI)
    alert = seal_alert(make_alert("sim_changed", imsi="234150123456789",
                                  msisdn="+447700900123"), counter=3, raised_at=NOW,
                       device_key=DEVICE_KEY, server_id=SERVER_ID, imei=IMEI)
    lock = seal_command(make_command("lock"), key=SERVER_KEY, server_id=SERVER_ID, imei=IMEI,
                        counter=9, not_after=NOW + 3600)
    return [b"\x00" + reply, b"\x00" + alert, b"\x00" + lock, b"\x00" + COMMAND,
            b"\x01" + armour(reply).encode(), b"\x01" + armour(alert).encode(),
            b"\x02\x01\x01\x01\x00\x02\x01\x02\x00",
            b"\x03\x01\x01\x00\x00\x00\x00\x00\x07\x01\x01\x07\x01\x0512345",
            b"\x04\x01" + (7).to_bytes(6, "big") + b"\x01\x03\x03\x01\x01\x01",
            b"\x04\x01" + (8).to_bytes(6, "big") + b"\x01\x0d\x0e\x01\x01\x01\x02\x04"
            + b"\x00" * 4, b"\x06" + reply, b"\x06" + lock]


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
