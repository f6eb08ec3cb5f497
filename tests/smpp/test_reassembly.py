from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.events import Channel, InboundMessage
from sms_gateway.reassembly import ConflictingPartError, PartKey, Reassembler, add_inbound
from sms_gateway.udh import Concat, Udh

KEY = PartKey("a", "+447700900123", 42, 8, 3)


@given(st.permutations([1, 2, 3]))
def test_parts_in_any_order_complete_once_with_payload_in_order(order: list[int]) -> None:
    r: Reassembler[int] = Reassembler()
    results = [r.add(KEY, seq, f"<{seq}>".encode(), seq, 0.0) for seq in order]
    assert results[:-1] == [None, None]
    done = results[-1]
    assert done is not None and done.payload == b"<1><2><3>" and done.items == (1, 2, 3)
    assert r.pending() == 0


def test_identical_duplicate_is_ignored_and_conflicting_duplicate_rejected() -> None:
    r: Reassembler[str] = Reassembler()
    assert r.add(KEY, 1, b"one", "x", 0.0) is None
    assert r.add(KEY, 1, b"one", "y", 0.0) is None
    with pytest.raises(ConflictingPartError):
        r.add(KEY, 1, b"ONE", "z", 0.0)
    r.add(KEY, 2, b"two", "x", 0.0)
    done = r.add(KEY, 3, b"three", "x", 0.0)
    assert done is not None and done.payload == b"onetwothree"


def test_sets_from_other_senders_links_or_reference_widths_do_not_mix() -> None:
    r: Reassembler[int] = Reassembler()
    keys = [KEY, PartKey("a", "+447700900999", 42, 8, 3), PartKey("b", KEY.originator, 42, 8, 3),
            PartKey("a", KEY.originator, 42, 16, 3)]
    for k in keys:
        assert r.add(k, 1, b"p", 0, 0.0) is None
    assert r.pending() == 4


def test_incomplete_sets_expire_with_now_passed_in() -> None:
    r: Reassembler[int] = Reassembler(timeout=60.0)
    r.add(KEY, 1, b"a", 1, 100.0)
    r.add(KEY, 3, b"c", 3, 110.0)
    assert r.expire(159.9) == []
    [expired] = r.expire(160.0)
    assert expired.key == KEY and expired.seqs == (1, 3) and expired.items == (1, 3)
    assert r.add(KEY, 2, b"b", 2, 161.0) is None  # a fresh set, not completed by stale parts


def test_too_many_sets_expire_the_oldest_first() -> None:
    r: Reassembler[int] = Reassembler(max_sets=2)
    for ref in range(3):
        r.add(PartKey(None, "x", ref, 8, 2), 1, b"", ref, float(ref))
    [expired] = r.expire(3.0)
    assert expired.key.reference == 0 and r.pending() == 2


def test_seq_outside_total_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        Reassembler[int]().add(KEY, 4, b"", 0, 0.0)


def test_inbound_messages_reassemble_through_their_udh() -> None:
    r: Reassembler[InboundMessage] = Reassembler()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    parts = [InboundMessage(Channel.SMPP, "a", "+447700900123", "+4412", f"{i}".encode(), 4, now,
                            udh=Udh(concat=Concat(513, 3, i, 16))) for i in (1, 2, 3)]
    random.Random(5).shuffle(parts)
    results = [add_inbound(r, p, 0.0) for p in parts]
    done = results[-1]
    assert done is not None and done.payload == b"123" and done.key.ref_bits == 16
    single = add_inbound(r, InboundMessage(Channel.HTTP, "h", "+1", "+2", b"s", 4, now), 0.0)
    assert single is not None and single.payload == b"s"
