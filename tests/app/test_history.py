"""The history use cases over rows stored end to end by the real inbound and outbound flows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from blobstore.errors import DeviceNotFoundError
from mepl.app.context import SyncTransactions
from mepl.app.history import (
    audit_list_txn,
    message_detail_txn,
    message_history_txn,
    security_events_txn,
)
from tests.app.history_scenario import (
    IMEI,
    NATIONAL,
    NUMBER,
    History,
    stored_history,
)


@pytest.fixture(scope="module")
def history() -> Iterator[History]:
    with stored_history() as made:
        yield made


@pytest.fixture
def txns(history: History) -> SyncTransactions:
    return SyncTransactions(history.world.engine)


def test_a_devices_messages_both_ways_newest_first_decoded_with_verdicts(
        history: History, txns: SyncTransactions) -> None:
    page = txns.run("history", message_history_txn, NATIONAL, default_region="GB")
    assert page.device.imei == IMEI
    assert [(m.id, m.direction, m.kind, m.verdict) for m in page.messages] == [
        (history.parts[1], "in", "mo", "verified"),
        (history.parts[0], "in", "mo", "verified"),
        (history.stale, "in", "mo", "rejected: stale_alert"),
        (history.alert, "in", "mo", "verified"),
        (history.reply, "in", "mo", "verified"),
        (history.dlr, "in", "dlr", "applied"),
        (history.mt, "out", "mt", "receipt: delivered"),
    ]
    summaries = {m.id: m.summary for m in page.messages}
    assert summaries[history.mt] == "command lock_status (key 1, counter 1, part 1/1)"
    assert summaries[history.reply] == (
        "reply to lock_status (key 1, counter 1): ok; state=unlocked")
    assert summaries[history.alert].startswith(
        f'alert sim_changed imsi="234150000000009" msisdn="{NUMBER}" (counter 1')
    assert summaries[history.dlr] == "receipt delivered for SMSC id m1"
    for part in history.parts:  # each part shows the whole joined frame
        assert summaries[part].startswith('alert lost detail="left on the 7:42 to Leeds')
    assert page.next_before_id is None


def test_pages_follow_each_other_by_before_id(history: History,
                                              txns: SyncTransactions) -> None:
    seen: list[int] = []
    before = None
    while True:
        page = txns.run("history", message_history_txn, IMEI, before_id=before, limit=3)
        seen += [m.id for m in page.messages]
        if page.next_before_id is None:
            break
        assert page.next_before_id == page.messages[-1].id
        before = page.next_before_id
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 7


def test_one_message_with_its_command_and_the_security_events_about_it(
        history: History, txns: SyncTransactions) -> None:
    reply = txns.run("show", message_detail_txn, history.reply)
    assert reply is not None and reply.command is not None
    assert (reply.command.opcode, reply.command.state) == ("lock_status", "done")
    assert reply.device is not None and reply.device.imei == IMEI
    alert = txns.run("show", message_detail_txn, history.alert)
    assert alert is not None
    assert [e.kind for e in alert.security_events] == ["alert:sim_changed"]
    assert alert.to_json()["security_events"][0]["message_id"] == history.alert


def test_a_forged_reply_and_garbage_are_shown_with_the_rejection_not_linked(
        history: History, txns: SyncTransactions) -> None:
    forged = txns.run("show", message_detail_txn, history.forged)
    assert forged is not None and forged.device is None
    assert forged.message.verdict == "rejected: bad_signature"
    assert forged.message.details["frame"]["imei"] == IMEI  # what it claims, unverified
    garbage = txns.run("show", message_detail_txn, history.garbage)
    assert garbage is not None
    assert garbage.message.summary.startswith("undecodable: unsupported_version: version 0")
    assert garbage.message.details["hex"] == garbage.message.payload.hex()
    assert garbage.message.verdict == "rejected: wrong_frame_type"
    assert txns.run("show", message_detail_txn, 10**9) is None


def test_audit_list_filters_by_actor_action_and_time(history: History,
                                                     txns: SyncTransactions) -> None:
    rows = txns.run("audit", audit_list_txn)
    assert [(r.actor, r.action) for r in rows] == [
        ("alice", "command.send"), ("bob", "command.send"), ("alice", "device.add"),
        ("alice", "group.add")]
    alice = txns.run("audit", audit_list_txn, actor="alice")
    assert [r.action for r in alice] == ["command.send", "device.add", "group.add"]
    sends = txns.run("audit", audit_list_txn, action="command.send", limit=1)
    assert [(r.actor, r.details) for r in sends] == [("alice", {"opcode": "unlock"})]
    recent = txns.run("audit", audit_list_txn, actor="alice",
                      since=datetime.now(UTC) - timedelta(days=1))
    assert [r.action for r in recent] == ["command.send", "device.add"]


def test_a_devices_security_events(history: History, txns: SyncTransactions) -> None:
    events = txns.run("events", security_events_txn, NUMBER)
    kinds = [e.kind for e in events.events]
    assert kinds[-1] == "alert:sim_changed" and "alert:lost" in kinds
    assert "stale_alert" in kinds


def test_bad_limits_and_unknown_devices_are_refused(txns: SyncTransactions) -> None:
    with pytest.raises(ValueError, match=r"limit must be 1\.\.1000, got 0"):
        txns.run("history", message_history_txn, IMEI, limit=0)
    with pytest.raises(ValueError, match=r"limit must be 1\.\.1000"):
        txns.run("audit", audit_list_txn, limit=5000)
    with pytest.raises(DeviceNotFoundError):
        txns.run("history", message_history_txn, "+447700900999")
