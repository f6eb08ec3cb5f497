"""The raw PDU log: rows built from the PDU's fields, written in batches that share a Deferred."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from twisted.internet.task import Clock
from twisted.trial import unittest

from blobstore.errors import StoreUnavailableError
from blobstore.messages import NewMessage
from blobstore.pdu_log import PduLog, pdu_line
from blobstore.pool import SyncPool
from tests.support.pg import migrated_database
from tests.support.runners import HeldRunner

_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)


def _line(n: int, **kw: Any) -> str:
    fields: dict[str, Any] = {
        "direction": "out", "link": "carrier_a", "command": "submit_sm", "sequence": n,
        "status": 0, "reference": f"cmd-{n}", "message_id": None, "raw": bytes([n % 256]) * 40}
    return pdu_line(**{**fields, **kw})


@settings(max_examples=200, deadline=None)
@given(direction=st.sampled_from(["in", "out"]), link=_TEXT, command=_TEXT,
       sequence=st.integers(0, 2**31 - 1), status=st.integers(0, 2**32 - 1),
       reference=st.none() | _TEXT, message_id=st.none() | _TEXT, raw=st.binary(max_size=300))
def test_a_pdu_line_is_the_copy_text_of_the_same_pdu_as_a_message(
        direction: Any, link: str, command: str, sequence: int, status: int,
        reference: str | None, message_id: str | None, raw: bytes) -> None:
    message = NewMessage(direction, "smpp", "pdu", raw, link=link, smsc_message_id=message_id,
                         meta={"command": command, "sequence": sequence, "status": status,
                               "reference": reference})
    assert pdu_line(direction=direction, link=link, command=command, sequence=sequence,
                    status=status, reference=reference, message_id=message_id,
                    raw=raw) == message.copy_text


def test_a_pdu_line_refuses_a_direction_that_is_neither_in_nor_out() -> None:
    with pytest.raises(ValueError, match="direction"):
        _line(1, direction="sideways")


class BatchingTests(unittest.TestCase):
    def test_lines_wait_for_the_delay_and_their_batch_shares_one_deferred(self) -> None:
        runner, clock = HeldRunner(), Clock()
        pdus = PduLog(runner, clock, max_rows=10, max_delay_s=0.005)
        waiters = [pdus.add(_line(n)) for n in range(3)]
        self.assertEqual(runner.calls, [])
        self.assertTrue(waiters[0] is waiters[1] is waiters[2])
        clock.advance(0.005)
        [(desc, lines, d)] = runner.calls
        self.assertEqual((desc, lines), ("insert_pdus", [_line(n) for n in range(3)]))
        self.assertFalse(waiters[0].called)  # not committed yet
        d.callback(3)
        self.assertIsNone(self.successResultOf(waiters[0]))

    def test_full_batches_go_at_once_and_in_flight_batches_are_bounded(self) -> None:
        runner, clock = HeldRunner(), Clock()
        pdus = PduLog(runner, clock, max_rows=2, max_delay_s=1.0, max_in_flight=1)
        waiters = [pdus.add(_line(n)) for n in range(5)]
        self.assertEqual(len(runner.calls), 1)  # the second full batch waits for the first
        self.assertEqual(pdus.pending, 3)
        self.assertIsNot(waiters[1], waiters[2])
        runner.calls[0][2].callback(2)
        self.assertEqual([len(c[1]) for c in runner.calls], [2, 2])
        runner.calls[1][2].callback(2)
        self.assertEqual([len(c[1]) for c in runner.calls], [2, 2])  # not full, not due yet
        clock.advance(1.0)
        self.assertEqual([len(c[1]) for c in runner.calls], [2, 2, 1])
        runner.calls[2][2].callback(1)
        for waiter in waiters:
            self.assertIsNone(self.successResultOf(waiter))
        self.assertEqual((pdus.pending, pdus.batches_written), (0, 3))

    def test_a_batch_that_is_not_full_waits_out_its_delay_even_when_the_store_is_idle(
            self) -> None:
        runner, clock = HeldRunner(), Clock()
        pdus = PduLog(runner, clock, max_rows=100, max_delay_s=0.025, max_in_flight=2)
        pdus.add(_line(0))
        clock.advance(0.025)  # the first batch goes
        clock.advance(0.005)
        pdus.add(_line(1))  # the next batch is due 25 ms after this line
        clock.advance(0.005)
        runner.calls[0][2].callback(1)  # the store is free again: no reason to hurry
        clock.advance(0.010)
        pdus.add(_line(2))
        self.assertEqual(len(runner.calls), 1)
        clock.advance(0.010)
        self.assertEqual([c[1] for c in runner.calls[1:]], [[_line(1), _line(2)]])

    def test_a_due_batch_held_by_the_cap_goes_when_the_earlier_one_is_done(self) -> None:
        runner, clock = HeldRunner(), Clock()
        pdus = PduLog(runner, clock, max_rows=100, max_delay_s=0.025, max_in_flight=1)
        pdus.add(_line(0))
        clock.advance(0.025)
        pdus.add(_line(1))
        clock.advance(0.100)  # due long ago, but the cap holds it
        self.assertEqual(len(runner.calls), 1)
        runner.calls[0][2].callback(1)
        self.assertEqual([c[1] for c in runner.calls[1:]], [[_line(1)]])
        self.assertEqual(clock.getDelayedCalls(), [])  # no timer spinning meanwhile

    def test_a_failed_batch_fails_its_deferred_and_counts_its_lines(self) -> None:
        runner, clock = HeldRunner(), Clock()
        lost: list[int] = []
        pdus = PduLog(runner, clock, max_rows=3, on_lost=lost.append)
        waiters = [pdus.add(_line(n)) for n in range(3)]
        waiter = waiters[0]
        runner.calls[0][2].errback(StoreUnavailableError("insert_pdus", 3, OSError("down")))
        self.failureResultOf(waiter, StoreUnavailableError)
        self.assertEqual(lost, [3])
        later = pdus.add(_line(9))  # the log goes on
        clock.advance(1)
        runner.calls[1][2].callback(1)
        self.assertIsNone(self.successResultOf(later))

    def test_backlog_beyond_the_cap_is_refused_at_once(self) -> None:
        runner, clock = HeldRunner(), Clock()
        pdus = PduLog(runner, clock, max_rows=1, max_in_flight=1, max_backlog=2)
        pdus.add(_line(0))  # in flight
        pdus.add(_line(1))
        pdus.add(_line(2))
        self.failureResultOf(pdus.add(_line(3)), StoreUnavailableError)

    def test_flush_writes_every_waiting_batch_past_the_in_flight_cap(self) -> None:
        runner, clock = HeldRunner(), Clock()
        pdus = PduLog(runner, clock, max_rows=2, max_delay_s=1.0, max_in_flight=1)
        waiters = [pdus.add(_line(n)) for n in range(5)]
        done = pdus.flush()
        self.assertEqual([len(c[1]) for c in runner.calls], [2, 2, 1])
        self.assertNoResult(done)
        for _, lines, d in runner.calls:
            d.callback(len(lines))
        self.successResultOf(done)
        self.assertTrue(all(w.called for w in waiters))


class StoredTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database())
        self.addCleanup(self.engine.dispose)

    def test_pdu_rows_are_stored_as_messages_of_kind_pdu_with_payload_hash_and_meta(
            self) -> None:
        clock = Clock()
        pdus = PduLog(SyncPool(self.engine), clock, max_rows=10)
        raw = b"\x00\x00\x00\x10\x80\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x07"
        stored = pdus.add(pdu_line(direction="in", link="carrier\ta", command="submit_sm_resp",
                                   sequence=7, status=0, reference="cmd-1\x00x",
                                   message_id="smsc-42", raw=raw))
        pdus.add(_line(8))
        clock.advance(1)
        self.assertIsNone(self.successResultOf(stored))
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, direction, channel, kind, link, smsc_message_id, payload, sha256, "
                "meta, device_id, command_id FROM messages ORDER BY id")).all()
        self.assertEqual(len(rows), 2)
        first = rows[0]
        self.assertEqual(
            (first.direction, first.channel, first.kind, first.link, first.smsc_message_id,
             bytes(first.payload), bytes(first.sha256), first.device_id, first.command_id),
            ("in", "smpp", "pdu", "carrier\ta", "smsc-42", raw, hashlib.sha256(raw).digest(),
             None, None))
        self.assertEqual(first.meta, {"command": "submit_sm_resp", "sequence": 7, "status": 0,
                                      "reference": "cmd-1\ufffdx"})
        self.assertLess(rows[0].id, rows[1].id)  # ids from the sequence, in order
