from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sms_gateway.events import DeliveryStatus
from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.receipts import (
    MultipartTracker,
    ReceiptHold,
    is_receipt,
    normalise_id,
    parse_receipt_text,
    receipt_from_sm,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEXT = ("id:0000ABC123 sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 "
        "stat:DELIVRD err:000 text:hello world")


def test_receipt_text_fields_are_parsed() -> None:
    fields = parse_receipt_text(TEXT)
    assert fields["id"] == "0000ABC123" and fields["stat"] == "DELIVRD"
    assert fields["submit date"] == "2601011200" and fields["text"] == "hello world"


@pytest.mark.parametrize(("raw", "mode", "out", "expected"), [
    ("0000ABC123", "hex", None, "abc123"), ("abc123", "hex", None, "abc123"),
    ("000123", "decimal", None, "123"), ("255", "decimal", "hex", "ff"),
    ("ff", "hex", "decimal", "255"), (" Msg-1 ", "as-is", None, "Msg-1"),
    ("not-hex", "hex", None, "not-hex"),
])
def test_message_ids_are_normalised_per_link(raw: str, mode: str, out: str | None,
                                            expected: str) -> None:
    assert normalise_id(raw, mode, out) == expected


def test_tlvs_win_over_the_text_and_unknown_tlvs_are_kept() -> None:
    sm = ShortMessage(source_addr="447700900123", source_addr_ton=1, esm_class=0x04,
                      short_message=TEXT.encode(),
                      tlvs=((codec.TAG_RECEIPTED_MESSAGE_ID, b"00ABC124\0"),
                            (codec.TAG_MESSAGE_STATE, b"\x05"),
                            (codec.TAG_NETWORK_ERROR_CODE, b"\x03\x00\x01"),
                            (0x1501, b"\xca\xfe")))
    receipt = receipt_from_sm(sm, link="a", received_at=NOW, id_mode="hex")
    assert receipt.message_id == "abc124"
    assert receipt.status is DeliveryStatus.UNDELIVERABLE
    assert receipt.error_code == "030001"
    assert receipt.extra == {"tlv_0x1501": "cafe"}
    assert receipt.sender == "+447700900123"


def test_text_only_receipt_is_parsed_with_dates_and_status() -> None:
    sm = ShortMessage(esm_class=0x04, short_message=TEXT.encode())
    assert is_receipt(sm)
    receipt = receipt_from_sm(sm, link="a", received_at=NOW, id_mode="hex")
    assert receipt.message_id == "abc123" and receipt.status is DeliveryStatus.DELIVERED
    assert receipt.submitted_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert receipt.done_at == datetime(2026, 1, 1, 12, 1, tzinfo=UTC)


def test_decimal_receipt_text_ids_map_onto_hex_submit_ids() -> None:
    sm = ShortMessage(esm_class=0x04, short_message=b"id:255 stat:EXPIRED err:001")
    receipt = receipt_from_sm(sm, link="a", received_at=NOW, id_mode="hex",
                              text_id_mode="decimal")
    assert receipt.message_id == "ff" and receipt.status is DeliveryStatus.EXPIRED


def test_mo_message_is_not_a_receipt() -> None:
    assert not is_receipt(ShortMessage(esm_class=0x40, short_message=b"\x00"))


def test_receipt_before_submit_resp_is_held_until_id_known() -> None:
    hold: ReceiptHold[str] = ReceiptHold(max_age=10.0)
    assert hold.should_hold("ab", submits_in_flight=True)
    assert not hold.should_hold("ab", submits_in_flight=False)
    hold.hold("ab", "receipt-ab", 1.0)
    hold.hold("cd", "receipt-cd", 2.0)
    assert [h.item for h in hold.note_submitted("ab")] == ["receipt-ab"]
    assert not hold.should_hold("ab", submits_in_flight=True)
    assert hold.expire(11.9) == []
    assert [h.item for h in hold.expire(12.0)] == ["receipt-cd"] and len(hold) == 0


def test_receipt_hold_is_bounded_in_size() -> None:
    hold: ReceiptHold[int] = ReceiptHold(max_held=2)
    assert hold.hold("a", 1, 0.0) == [] and hold.hold("b", 2, 0.0) == []
    assert [h.item for h in hold.hold("c", 3, 0.0)] == [1]


def test_three_part_receipts_roll_up_to_one_delivered_status() -> None:
    tracker: MultipartTracker[str] = MultipartTracker()
    tracker.register("m1", ["p1", "p2", "p3"])
    assert tracker.update("p2", DeliveryStatus.DELIVERED) is None
    assert tracker.update("p1", DeliveryStatus.ENROUTE) is None
    assert tracker.update("p3", DeliveryStatus.DELIVERED) is None
    assert tracker.update("p1", DeliveryStatus.DELIVERED) == ("m1", DeliveryStatus.DELIVERED)
    assert tracker.pending() == 0 and tracker.update("p1", DeliveryStatus.DELIVERED) is None


def test_roll_up_is_not_delivered_when_any_part_failed() -> None:
    tracker: MultipartTracker[int] = MultipartTracker()
    tracker.register(7, ["a", "b"])
    assert tracker.update("a", DeliveryStatus.UNDELIVERABLE) is None
    assert tracker.update("a", DeliveryStatus.DELIVERED) is None  # final stays final
    assert tracker.update("b", DeliveryStatus.DELIVERED) == (7, DeliveryStatus.UNDELIVERABLE)
    assert tracker.update("zz", DeliveryStatus.DELIVERED) is None
