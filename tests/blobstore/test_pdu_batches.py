"""``pdu_log = "batched"``: many PDUs to a row, read back exactly as they crossed the wire."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from twisted.internet.task import Clock
from twisted.trial import unittest

from blobstore.pdu_batches import (
    KIND,
    MAGIC,
    MAX_ROW_PAYLOAD,
    PduItem,
    batch_lines,
    insert_pdu_batches_txn,
    pack_pdu,
    unpack_batch,
)
from blobstore.pdu_log import PduLog
from blobstore.pool import SyncPool
from tests.support.pg import migrated_database

_RECORDS = st.lists(st.tuples(
    st.integers(0, 4_000_000_000_000_000).map(lambda us: us / 1_000_000),
    st.none() | st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.binary(max_size=300)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(records=_RECORDS)
def test_packed_records_read_back_in_order_with_time_reference_and_bytes(
        records: list[tuple[float, str | None, bytes]]) -> None:
    payload = MAGIC + b"".join(pack_pdu(at, ref, raw) for at, ref, raw in records)
    back = unpack_batch(payload)
    assert [(p.reference, p.raw) for p in back] == [(ref, raw) for _, ref, raw in records]
    for pdu, (at, _, _) in zip(back, records, strict=True):
        assert abs(pdu.at.timestamp() - at) < 2e-6
        assert pdu.at.tzinfo is UTC


@settings(max_examples=300, deadline=None)
@given(records=_RECORDS, cut=st.integers(1, 400))
def test_a_cut_batch_is_refused_with_a_value_error_never_read_short(
        records: list[tuple[float, str | None, bytes]], cut: int) -> None:
    packed = [pack_pdu(at, ref, raw) for at, ref, raw in records]
    payload = MAGIC + b"".join(packed)
    ends = {len(MAGIC) + sum(len(p) for p in packed[:n]) for n in range(len(packed) + 1)}
    if len(payload) - cut in ends or cut >= len(payload) - len(MAGIC):
        return  # whole records cut off leave a shorter valid batch
    with pytest.raises(ValueError, match="cut short"):
        unpack_batch(payload[:-cut])


def test_a_payload_without_the_batch_header_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PDU batch"):
        unpack_batch(b"\x00\x00\x00\x10" + bytes(12))


def test_an_undecodable_reference_is_refused_naming_the_record() -> None:
    bad = MAGIC + pack_pdu(1.0, None, b"ok") + pack_pdu(1.0, "x", b"raw").replace(b"x", b"\xff")
    with pytest.raises(ValueError, match="record 2"):
        unpack_batch(bad)


def test_a_batch_becomes_one_row_per_direction_and_link_keeping_order() -> None:
    items: list[PduItem] = [("out", "a", pack_pdu(1.0, "c1", b"s1")),
                            ("in", "a", pack_pdu(1.1, None, b"r1")),
                            ("out", "b", pack_pdu(1.2, "c2", b"s2")),
                            ("out", "a", pack_pdu(1.3, "c3", b"s3"))]
    lines = batch_lines(items)
    assert [line.split("\t")[:4] for line in lines] == [
        ["out", "smpp", KIND, "a"], ["in", "smpp", KIND, "a"], ["out", "smpp", KIND, "b"]]
    assert lines[0].endswith('{"pdus": 2}')


def test_large_pdus_are_spread_over_rows_of_at_most_a_mebibyte_each_in_order() -> None:
    big = [pack_pdu(float(n), None, bytes([n]) * 300_000) for n in range(7)]
    huge = pack_pdu(9.0, None, b"h" * 1_500_000)  # larger than a row: kept whole, alone
    lines = batch_lines([("in", "a", r) for r in [*big, huge]])
    payloads = [bytes.fromhex(line.split("\t")[11][3:]) for line in lines]
    assert [len(unpack_batch(p)) for p in payloads] == [3, 3, 1, 1]
    assert all(len(p) <= MAX_ROW_PAYLOAD + len(MAGIC) for p in payloads[:3])
    back = [pdu.raw for p in payloads for pdu in unpack_batch(p)]
    assert back == [bytes([n]) * 300_000 for n in range(7)] + [b"h" * 1_500_000]


def test_a_direction_that_is_neither_in_nor_out_is_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        batch_lines([("sideways", "a", pack_pdu(1.0, None, b"x"))])


class StoredBatchTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database())
        self.addCleanup(self.engine.dispose)

    def test_a_pdu_log_batch_is_stored_as_rows_whose_payload_holds_every_pdu(self) -> None:
        clock = Clock()
        pdus = PduLog(SyncPool(self.engine), clock, max_rows=100,
                      write_txn=insert_pdu_batches_txn)
        at = datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC).timestamp()
        sent = [bytes([n]) * (16 + n) for n in range(50)]
        waiters = [pdus.add(("out", "carrier\ta", pack_pdu(at + n, f"cmd-{n}", raw)))
                   for n, raw in enumerate(sent)]
        waiters.append(pdus.add(("in", "carrier\ta", pack_pdu(at, None, b"\x00" * 16))))
        self.assertTrue(all(w is waiters[0] for w in waiters))  # one batch, one Deferred
        clock.advance(1)
        self.assertIsNone(self.successResultOf(waiters[0]))
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT direction, kind, link, payload, sha256, meta, smsc_message_id "
                "FROM messages ORDER BY id")).all()
        self.assertEqual([(r.direction, r.kind, r.link, r.meta) for r in rows],
                         [("out", KIND, "carrier\ta", {"pdus": 50}),
                          ("in", KIND, "carrier\ta", {"pdus": 1})])
        for row in rows:
            self.assertEqual(bytes(row.sha256), hashlib.sha256(bytes(row.payload)).digest())
        back = unpack_batch(bytes(rows[0].payload))
        self.assertEqual([p.raw for p in back], sent)
        self.assertEqual([p.reference for p in back], [f"cmd-{n}" for n in range(50)])
        self.assertEqual(back[0].at, datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC))

    def test_storing_nothing_writes_no_row(self) -> None:
        with self.engine.begin() as conn:
            self.assertEqual(insert_pdu_batches_txn(conn, []), 0)
            self.assertEqual(conn.execute(text("SELECT count(*) FROM messages")).scalar(), 0)
