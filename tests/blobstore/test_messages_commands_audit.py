from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from blobstore.audit import append_audit_txn, recent_audit_txn
from blobstore.commands import (
    PRIORITY_BULK,
    PRIORITY_SECURITY,
    NewCommand,
    count_commands_by_state_txn,
    get_command_txn,
    insert_command_txn,
    insert_group_commands_txn,
)
from blobstore.counters import allocate_counter_txn, allocate_counters_txn
from blobstore.devices import add_device_txn
from blobstore.groups import add_members_txn, create_group_txn
from blobstore.identity import luhn_check_digit
from blobstore.lifecycle import bulk_transition_txn, command_history_txn, transition_txn
from blobstore.messages import (
    NewMessage,
    device_messages_txn,
    get_message_txn,
    insert_message_txn,
    insert_messages_txn,
    insert_unique_message_txn,
    messages_by_smsc_id_txn,
    set_smsc_message_id_txn,
)
from blobstore.schema import commands
from mepl.core import lifecycle
from mepl.core.lifecycle import InvalidTransition
from mepl.runtime.outbound_txn import claim_commands_txn

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def _imei(n: int) -> str:
    body = f"35{n:012d}"
    return body + luhn_check_digit(body)


def _devices(engine: Engine, n: int) -> list[int]:
    with engine.begin() as conn:
        return [add_device_txn(conn, _imei(i)).id for i in range(n)]


def test_store_computes_sha256_and_keeps_exact_bytes(engine: Engine) -> None:
    payload = bytes(range(256))
    with engine.begin() as conn:
        message_id = insert_message_txn(conn, NewMessage(
            "in", "smpp", "pdu", payload, link="carrier_a", peer="+447700900123",
            meta={"seq": 7}))
        stored = get_message_txn(conn, message_id)
    assert stored is not None
    assert stored.payload == payload
    assert stored.sha256 == hashlib.sha256(payload).digest()
    assert stored.meta == {"seq": 7}


def test_multi_row_insert_returns_ids_in_batch_order(engine: Engine) -> None:
    batch = [NewMessage("out", "smpp", "mt", bytes([i]) * 140,
                        created_at=NOW if i % 2 else None) for i in range(50)]
    with engine.begin() as conn:
        ids = insert_messages_txn(conn, batch)
        payloads = [get_message_txn(conn, i) for i in ids]
    assert len(set(ids)) == 50
    assert [p.payload[0] for p in payloads if p is not None] == list(range(50))


def test_duplicate_external_id_is_detected_not_stored_twice(engine: Engine) -> None:
    first = NewMessage("in", "http", "callback", b"body-1", link="kannel", external_id="gw-42")
    again = NewMessage("in", "http", "callback", b"body-1 retried", link="kannel",
                       external_id="gw-42")
    other_link = NewMessage("in", "http", "callback", b"x", link="jasmin", external_id="gw-42")
    with engine.begin() as conn:
        new_id, dup = insert_unique_message_txn(conn, first)
        assert dup is False
        assert insert_unique_message_txn(conn, again) == (new_id, True)
        other_id, other_dup = insert_unique_message_txn(conn, other_link)
        assert other_dup is False and other_id != new_id
        count = conn.execute(text("SELECT count(*) FROM messages")).scalar()
    assert count == 2


def test_receipt_lookup_by_smsc_message_id(engine: Engine) -> None:
    [device] = _devices(engine, 1)
    with engine.begin() as conn:
        mid = insert_message_txn(conn, NewMessage("out", "smpp", "mt", b"part",
                                                  link="carrier_a", device_id=device,
                                                  part_seq=1, part_total=2))
        set_smsc_message_id_txn(conn, mid, "abc123")
        found = messages_by_smsc_id_txn(conn, "carrier_a", "abc123")
        assert [m.id for m in found] == [mid]
        assert [m.id for m in device_messages_txn(conn, device)] == [mid]


def test_new_message_refuses_bad_fields() -> None:
    with pytest.raises(ValueError, match="direction"):
        NewMessage("sideways", "smpp", "mo", b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be"):
        NewMessage("in", "smpp", "MO", b"")
    with pytest.raises(ValueError, match="part_seq and part_total"):
        NewMessage("in", "smpp", "mo", b"", part_seq=1)


def test_audit_rows_cannot_be_updated_deleted_or_truncated(engine: Engine) -> None:
    with engine.begin() as conn:
        audit_id = append_audit_txn(conn, actor="alice", role="admin", action="device.lock",
                                    target="352099001761481", details={"reason": "lost"})
    for statement in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit",
                      "TRUNCATE audit"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.begin() as conn:
        [row] = recent_audit_txn(conn)
    assert (row.id, row.actor, row.details) == (audit_id, "alice", {"reason": "lost"})


def test_devices_and_commands_cannot_be_deleted_so_history_never_dangles(
        engine: Engine) -> None:
    [device] = _devices(engine, 1)
    with engine.begin() as conn:
        command_id = insert_command_txn(conn, device, NewCommand("lock", "ops", NOW))
    for statement in (f"DELETE FROM commands WHERE id = {command_id}",
                      f"DELETE FROM devices WHERE id = {device}"):
        with pytest.raises(DBAPIError, match="never deleted"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM commands")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM devices")).scalar() == 1


def test_counters_are_never_handed_out_twice_under_concurrency(engine: Engine) -> None:
    [device] = _devices(engine, 1)
    taken: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            with engine.begin() as conn:
                value = allocate_counter_txn(conn, 1, device)
            with lock:
                taken.append(value)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(1, 101))
    with engine.begin() as conn:
        assert allocate_counter_txn(conn, 1, device, count=10) == 101
        assert allocate_counter_txn(conn, 2, device) == 1


def test_batch_counter_allocation_hands_out_consecutive_ranges_never_twice(
        engine: Engine) -> None:
    first, second = _devices(engine, 2)
    taken: list[tuple[int, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            with engine.begin() as conn:
                got = allocate_counters_txn(conn, {(1, first): 3, (1, second): 1})
            with lock:
                taken.extend((first, got[(1, first)] + i) for i in range(3))
                taken.append((second, got[(1, second)]))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c for d, c in taken if d == first) == list(range(1, 91))
    assert sorted(c for d, c in taken if d == second) == list(range(1, 31))
    with engine.begin() as conn:  # the one-at-a-time allocation goes on from there
        assert allocate_counter_txn(conn, 1, first) == 91


def test_claims_go_by_priority_then_age_and_skip_locked_rows(engine: Engine) -> None:
    [device] = _devices(engine, 1)
    later = datetime.now(UTC) + timedelta(hours=1)  # claims skip commands past not-after
    with engine.begin() as conn:
        bulk = insert_command_txn(conn, device, NewCommand("notify", "ops", later,
                                                           priority=PRIORITY_BULK))
        normal = insert_command_txn(conn, device, NewCommand("status", "ops", later))
        lock = insert_command_txn(conn, device, NewCommand("lock", "ops", later,
                                                           {"reason": "lost"},
                                                           priority=PRIORITY_SECURITY))
    claim_at = datetime.now(UTC) + timedelta(seconds=1)
    with engine.begin() as first:
        mine = claim_commands_txn(first, worker="a", now=claim_at, limit=2)
        assert [c.id for c in mine] == [lock, normal]
        assert mine[0].arguments == {"reason": "lost"}
        assert all(c.state == "sending" and c.attempts == 1 for c in mine)
        with engine.begin() as second:  # runs while the first still holds its locks
            theirs = claim_commands_txn(second, worker="b", now=claim_at, limit=5)
            assert [c.id for c in theirs] == [bulk]


def test_transitions_follow_the_lifecycle_table_and_append_history(engine: Engine) -> None:
    [device] = _devices(engine, 1)

    def step(conn: Any, cid: int, event: str, **fields: Any) -> tuple[str, str]:
        done = transition_txn(conn, cid, event, machine=lifecycle, now=NOW, actor="t", **fields)
        assert done is not None
        return done.from_state, done.to_state

    with engine.begin() as conn:
        cid = insert_command_txn(conn, device, NewCommand("lock", "ops", NOW + timedelta(1)))
        with pytest.raises(InvalidTransition):
            step(conn, cid, "submitted")
        assert step(conn, cid, "claim") == ("queued", "sending")
        assert step(conn, cid, "submitted") == ("sending", "sent")
        assert step(conn, cid, "reply_ok", result={"status": "ok"}) == ("sent", "done")
        assert step(conn, cid, "delivered") == ("done", "done")  # a late receipt: no change
        with pytest.raises(InvalidTransition):
            step(conn, cid, "cancel")
        with pytest.raises(TypeError, match="cannot set"):
            step(conn, cid, "expire", device_id=2)
        record = get_command_txn(conn, cid)
        history = command_history_txn(conn, cid)
    assert record is not None
    assert (record.state, record.result, record.finished_at) == ("done", {"status": "ok"}, NOW)
    assert [(e.from_state, e.to_state, e.event) for e in history] == [
        (None, "queued", "create"), ("queued", "sending", "claim"),
        ("sending", "sent", "submitted"), ("sent", "done", "reply_ok")]
    assert history[0].actor == "ops"


def test_a_reply_after_expiry_is_recorded_with_a_note(engine: Engine) -> None:
    [device] = _devices(engine, 1)
    with engine.begin() as conn:
        cid = insert_command_txn(conn, device, NewCommand("wipe", "ops", NOW + timedelta(1)))
        transition_txn(conn, cid, "expire", machine=lifecycle, now=NOW, actor="hk")
        done = transition_txn(conn, cid, "reply_ok", machine=lifecycle, now=NOW,
                              actor="device", result={"status": "ok"})
        history = command_history_txn(conn, cid)
    assert done is not None and (done.from_state, done.to_state) == ("expired", "done")
    assert history[-1].details["note"] == "executed after expired"


def test_group_fan_out_expiry_and_stale_claims(engine: Engine) -> None:
    ids = _devices(engine, 4)
    start = datetime.now(UTC)
    with engine.begin() as conn:
        create_group_txn(conn, "depot")
        add_members_txn(conn, "depot", ids[:3])
        queued = insert_group_commands_txn(conn, "depot", NewCommand(
            "sleep", "ops", start + timedelta(minutes=5), {"minutes": 30}))
        assert queued == 3
        claimed = claim_commands_txn(conn, worker="dead", now=start + timedelta(seconds=1),
                                     limit=1)
        assert claimed[0].arguments == {"minutes": 30}
        released = bulk_transition_txn(conn, "release", machine=lifecycle, now=start,
                                       actor="hk", where=(commands.c.claimed_at
                                                          < start + timedelta(seconds=2),))
        assert len(released) == 1
        assert count_commands_by_state_txn(conn) == {"queued": 3}
        expired = bulk_transition_txn(conn, "expire", machine=lifecycle,
                                      now=start + timedelta(minutes=6), actor="hk",
                                      where=(commands.c.not_after
                                             <= start + timedelta(minutes=6),))
        assert len(expired) == 3
        assert count_commands_by_state_txn(conn) == {"expired": 3}
        events = conn.execute(text(
            "SELECT event, count(*) FROM command_events GROUP BY event ORDER BY event")).all()
    assert [tuple(r) for r in events] == [("claim", 1), ("create", 3), ("expire", 3),
                                          ("release", 1)]


def test_copy_path_keeps_awkward_text_json_and_times_exactly(engine: Engine) -> None:
    awkward = "tab\there\nnewline\\backslash \\N é"
    batch = [
        NewMessage("in", "http", "malformed", b"\x00\t\n\\", link="jasmin", peer=awkward,
                   error=awkward, meta={"headers": {"X-Odd": awkward}}, part_seq=1,
                   part_total=1),
        NewMessage("out", "smpp", "mt", b"", created_at=NOW),
    ]
    with engine.begin() as conn:
        first_id, second_id = insert_messages_txn(conn, batch)
        db_now = conn.execute(text("SELECT now()")).scalar()
    with engine.begin() as conn:
        first = get_message_txn(conn, first_id)
        second = get_message_txn(conn, second_id)
    assert first is not None and second is not None
    assert (first.payload, first.peer, first.error) == (b"\x00\t\n\\", awkward, awkward)
    assert first.meta == {"headers": {"X-Odd": awkward}}
    assert first.created_at == db_now  # the transaction's now(), as an INSERT would give
    assert first.sha256 == hashlib.sha256(b"\x00\t\n\\").digest()
    assert (second.payload, second.created_at, second.meta) == (b"", NOW, None)


def test_nul_in_text_fields_is_stored_as_replacement_character(engine: Engine) -> None:
    odd = NewMessage("in", "smpp", "malformed", b"\x00raw\x00", peer="+44\x0077",
                     error="bad\x00", meta={"field": "a\x00b"})
    with engine.begin() as conn:
        [batched] = insert_messages_txn(conn, [odd])
        single = insert_message_txn(conn, odd)
        rows = [get_message_txn(conn, i) for i in (batched, single)]
    for row in rows:
        assert row is not None
        assert row.payload == b"\x00raw\x00"
        assert (row.peer, row.error) == ("+44\ufffd77", "bad\ufffd")
        assert row.meta == {"field": "a\ufffdb"}
