"""SMPP PDU bodies: every command id, TLVs, and the deliver_sm path of a bind.

Contract: the body decoders raise only :class:`~sms_gateway.smpp.codec.CodecError`;
a deliver_sm goes through decode, receipt or MO building exactly as
:class:`~sms_gateway.smpp.inbound_handler.InboundHandler` does it and raises
only what that handler catches (CodecError, UdhError, ValueError), and the
row stored for it has no NUL in a text column (psycopg2 would refuse the
whole batch) and gives an MO's payload back; a decoded body re-encodes to
the same bytes; the PDU records blank bind passwords
whatever the frame; a stored PDU batch (``pdu_batch`` payload) is read back
whole or refused with ``ValueError``, never read short.  Bodies are random,
or real ones with a field, a length or a byte mutated.
"""

from __future__ import annotations

import json
import logging
import struct
import sys
from datetime import UTC, datetime
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._common import Reader, expect, instrumented, run

with instrumented(__name__ == "__main__"):
    from blobstore.messages import NewMessage
    from blobstore.pdu_batches import MAGIC, pack_pdu, unpack_batch
    from mepl.runtime.inbound_rows import part_row, receipt_row
    from sms_gateway.errors import UdhError
    from sms_gateway.events import DeliveryReceipt, InboundMessage
    from sms_gateway.reassembly import Reassembler, add_inbound
    from sms_gateway.smpp import codec
    from sms_gateway.smpp.codec import CodecError, ShortMessage
    from sms_gateway.smpp.inbound import inbound_from_sm
    from sms_gateway.smpp.receipts import is_receipt, receipt_from_sm
    from sms_gateway.smpp.records import make_record, redact
    from sms_gateway.udh import split_user_data

TARGET = "smpp_pdu"
# smpplib logs every unknown TLV it skips: millions of lines under the fuzzer.
logging.getLogger("smpplib.command").setLevel(logging.ERROR)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HANDLER_ERRORS = (CodecError, UdhError, ValueError)
TAGS = (codec.TAG_SOURCE_PORT, codec.TAG_DESTINATION_PORT, codec.TAG_SAR_MSG_REF_NUM,
        codec.TAG_SAR_TOTAL_SEGMENTS, codec.TAG_SAR_SEGMENT_SEQNUM, codec.TAG_MESSAGE_PAYLOAD,
        codec.TAG_RECEIPTED_MESSAGE_ID, codec.TAG_MESSAGE_STATE, codec.TAG_NETWORK_ERROR_CODE,
        0x1403, 0xFFFF)
COMMAND_IDS = tuple(sorted(codec.COMMAND_NAMES))


def deliver(body: bytes) -> None:
    """One deliver_sm body through what the bind's inbound handler does with it."""
    sm = expect(lambda: codec.decode_short_message(body), CodecError)
    if sm is None:
        return
    if len(sm.short_message) <= 254:
        assert codec.encode_short_message(sm) == body, "decode/encode round trip"
    if is_receipt(sm):
        receipt = expect(lambda: receipt_from_sm(sm, link="fuzz", received_at=NOW,
                                                 id_mode="hex", text_id_mode="decimal"),
                         *HANDLER_ERRORS)
        assert receipt is None or isinstance(receipt, DeliveryReceipt)
        if receipt is not None:
            storable(receipt_row(receipt))
        return
    message = expect(lambda: inbound_from_sm(sm, link="fuzz", received_at=NOW),
                     *HANDLER_ERRORS)
    if message is None:
        return
    assert isinstance(message, InboundMessage)
    stored_part(message)
    reassembler: Reassembler[InboundMessage] = Reassembler(max_sets=4)
    part = message
    for _ in range(2):  # the same part twice: a duplicate, never a conflict
        expect(lambda: add_inbound(reassembler, part, 0.0), ValueError)


def storable(row: NewMessage) -> None:
    """What PostgreSQL text columns take: no NUL (psycopg2 refuses the whole batch)."""
    for text in (row.link, row.peer, row.smsc_message_id, row.external_id, row.error):
        assert text is None or "\0" not in text, f"NUL in a text column: {text!r}"
    json.dumps(row.meta)


def stored_part(message: InboundMessage) -> None:
    """The row the receiver stores for an MO part, read back as the inbound worker does."""
    row = part_row(message)
    storable(row)
    meta = row.meta or {}
    payload = split_user_data(row.payload)[1] if meta.get("udh") else row.payload
    assert payload == message.payload, "stored part does not give the payload back"
    if message.udh is not None and message.udh.concat is not None:
        assert (row.part_seq, row.part_total) == (message.udh.concat.seq,
                                                  message.udh.concat.total)


def stored_batch(r: Reader) -> None:
    """A ``pdu_batch`` payload, real (then maybe mutated) or random, read back."""
    if r.flag():
        payload = bytearray(MAGIC)
        for _ in range(r.u8() % 4):
            payload += pack_pdu(r.u32() / 1000, r.chunk(6).decode("latin-1") or None,
                                r.chunk(40))
        if payload and r.flag():
            payload[r.u16() % len(payload)] = r.u8()
        data = bytes(payload)
    else:
        data = r.rest()
    pdus = expect(lambda: unpack_batch(data), ValueError)
    if pdus is not None:
        used = sum(len(pack_pdu(p.at.timestamp(), p.reference, p.raw)) for p in pdus)
        assert len(MAGIC) + used == len(data), "batch read short or long"


def structured(r: Reader) -> bytes:
    """A real submit_sm/deliver_sm body from fuzz fields, then mutated (or not)."""
    tlvs = []
    for _ in range(r.u8() % 5):
        tag = r.pick(TAGS) if r.flag() else r.u16()
        tlvs.append((tag, r.chunk(8)))
    sm = ShortMessage(
        service_type=r.chunk(5).decode("latin-1").encode("ascii", "replace").decode(),
        source_addr_ton=r.u8() % 8, source_addr=r.pick(("447700900123", "84433", "", "0" * 20,
                                                        "ABC", "+4477")),
        dest_addr_ton=r.u8() % 8, destination_addr=r.pick(("84433", "447700900000", "1")),
        esm_class=r.u8(), registered_delivery=r.u8(), data_coding=r.u8(),
        short_message=r.chunk(254), tlvs=tuple(tlvs))
    body = bytearray(codec.encode_short_message(sm))
    how = r.u8() % 4
    if how == 1 and body:  # overwrite one octet (a length, a terminator, a TLV length)
        body[r.u16() % len(body)] = r.u8()
    elif how == 2:  # cut it short
        del body[r.u16() % (len(body) + 1) :]
    elif how == 3:  # trailing garbage where TLVs go
        body += r.chunk(16)
    return bytes(body)


def one_input(data: bytes) -> None:
    """Dispatch on the first octet: which decoder gets the rest."""
    r = Reader(data)
    mode = r.u8() % 8
    if mode == 0:
        deliver(r.rest())
    elif mode == 1:
        deliver(structured(r))
    elif mode == 2:
        tlvs = expect(lambda: codec.decode_tlvs(r.rest()), CodecError)
        if tlvs is not None:
            assert codec.decode_tlvs(codec.encode_tlvs(tlvs)) == tlvs
    elif mode == 3:
        message_id = expect(lambda: codec.decode_message_id_body(r.rest()), CodecError)
        assert message_id is None or (message_id.isascii() and "\0" not in message_id)
    elif mode == 4:
        expect(lambda: codec.decode_bind(r.rest()), CodecError)
    elif mode == 5:
        command = r.pick(COMMAND_IDS) if r.flag() else r.u32()
        status, seq = r.u32(), r.u32()
        body = r.rest()
        raw = struct.pack(">LLLL", 16 + len(body), command, status, seq) + body
        expect(lambda: codec.smpplib_decode(raw), CodecError)
        record = make_record("in", "fuzz", raw, 0.0)
        assert len(record.raw) <= len(raw)
    elif mode == 7:
        stored_batch(r)
    else:
        mode_id = r.pick(sorted(codec.BIND_COMMANDS))
        body = r.rest()
        raw = struct.pack(">LLLL", 16 + len(body), mode_id, 0, 1) + body
        redacted = redact(raw)
        assert len(redacted) in (16, len(raw))
        bind = expect(lambda: codec.decode_bind(body), CodecError)
        if bind is not None:
            start = 16 + len(bind.system_id) + 1
            secret = redacted[start : start + len(bind.password)]
            assert secret == b"*" * len(bind.password), "bind password left in the record"


def seeds() -> list[bytes]:
    """Real bodies: an MO with a UDH, a receipt (text and TLVs), a bind, a TLV section."""
    mo = codec.encode_short_message(ShortMessage(
        source_addr="447700900123", destination_addr="84433", esm_class=codec.ESM_UDHI,
        data_coding=4, short_message=bytes.fromhex("0b0504401a401b0003aa0201") + b"frame"))
    dlr = codec.encode_short_message(ShortMessage(
        source_addr="447700900123", destination_addr="84433", esm_class=4,
        short_message=b"id:1a2b sub:001 dlvrd:001 submit date:2601010000 done date:2601010001"
                      b" stat:DELIVRD err:000 text:", tlvs=(
            (codec.TAG_RECEIPTED_MESSAGE_ID, b"1a2b\0"), (codec.TAG_MESSAGE_STATE, b"\x02"))))
    sar = codec.encode_short_message(ShortMessage(
        source_addr="447700900123", destination_addr="84433", data_coding=8,
        short_message="héllo".encode("utf-16-be"), tlvs=(
            (codec.TAG_SAR_MSG_REF_NUM, b"\x01\x02"), (codec.TAG_SAR_TOTAL_SEGMENTS, b"\x02"),
            (codec.TAG_SAR_SEGMENT_SEQNUM, b"\x01"))))
    bind = codec.encode_bind(codec.BIND_TRANSCEIVER, 1, "esme", "secret")[16:]
    return [b"\0" + mo, b"\0" + dlr, b"\0" + sar, b"\x02" + codec.encode_tlvs(
        [(1, b"ab"), (0x0424, b"x" * 20)]), b"\x03abc\0", b"\x04" + bind,
        b"\x05\x00" + bytes.fromhex("00000004") + b"\0" * 8 + mo, b"\x06\x00" + bind,
        b"\x01" + bytes(range(60))]


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
