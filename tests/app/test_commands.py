"""``mepl.app.commands``: queueing for a device, a group or the fleet; refusals; cancel; history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection

from blobstore.lifecycle import transition_txn
from mepl.app.commands import (
    Queued,
    Target,
    cancel_command_txn,
    list_commands_txn,
    queue_command_txn,
    show_command_txn,
)
from mepl.app.devices import add_device_txn, enrol_device_txn, update_device_txn
from mepl.app.errors import InvalidRequest, NeedsConfirmation, NotFound, Refused
from mepl.core import lifecycle
from signing.keys import SigningKey
from tests.app.conftest import ALICE, IMEIS, NOW, Store


def device(store: Store, index: int, *, group: str = "north", enrolled: bool = True,
           retired: bool = False) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[index], phone=f"0770090010{index}",
              groups=[group], region="GB")
    if enrolled:
        store.run("enrol", enrol_device_txn, ALICE, IMEIS[index],
                  SigningKey.generate(1).public.raw.hex(), keys=None)
    if retired:
        store.run("retire", update_device_txn, ALICE, IMEIS[index], state="retired")


def queue(store: Store, target: Target, opcode: str, *args: str, **options: Any) -> Queued:
    return store.run("queue", queue_command_txn, ALICE, target, opcode, now=NOW,
                     arguments=args, region="GB", **options)


def move(store: Store, command_id: int, *events: str) -> None:
    def txn(conn: Connection) -> None:
        for event in events:
            transition_txn(conn, command_id, event, machine=lifecycle, now=NOW + timedelta(
                minutes=1), actor="dispatcher-1")
    store.run("move", txn)


def test_queue_for_a_device_found_by_its_national_number_audits_in_the_same_transaction(
        store: Store) -> None:
    device(store, 0)
    queued = queue(store, Target.device("07700 900100"), "status_query",
                   "features=battery,sim")
    assert (queued.opcode, queued.target, queued.count) == ("status_query", IMEIS[0], 1)
    row = store.rows("SELECT id, state, priority, requested_by, arguments, not_after, "
                     "xmin::text AS tx FROM commands")[0]
    assert (row.id, row.state, row.priority) == (queued.command_id, "queued", 100)
    assert row.requested_by == "admin:alice"
    assert row.arguments == {"features": ["battery", "sim"]}
    assert row.not_after == NOW + timedelta(days=1)
    audit = store.rows("SELECT actor, role, target, details, xmin::text AS tx FROM audit "
                       "WHERE action = 'command.send'")[0]
    assert (audit.actor, audit.role, audit.target) == ("alice", "admin", IMEIS[0])
    assert audit.details == {"opcode": "status_query",
                             "args": {"features": ["battery", "sim"]},
                             "commands": 1, "priority": 100}
    assert audit.tx == row.tx  # one transaction wrote both


def test_a_use_case_inside_a_failing_transaction_leaves_neither_command_nor_audit(
        store: Store) -> None:
    device(store, 0)

    def then_fail(conn: Connection) -> None:
        queue_command_txn(conn, ALICE, Target.device(IMEIS[0]), "lock", now=NOW)
        raise RuntimeError("after the use case")

    with pytest.raises(RuntimeError):
        store.run("fails", then_fail)
    assert store.sql("SELECT count(*) FROM commands") == 0
    assert store.audit_count("command.send") == 0


def test_security_opcodes_go_at_security_priority_whatever_was_asked(store: Store) -> None:
    device(store, 0)
    assert queue(store, Target.device(IMEIS[0]), "lock", priority="bulk").priority == 10
    assert queue(store, Target.device(IMEIS[0]), "status_query", "features=sim",
                 priority="bulk").priority == 500
    assert queue(store, Target.device(IMEIS[0]), "status_query", "features=sim",
                 priority="security").priority == 10


@pytest.mark.parametrize(("opcode", "args", "options", "field", "words"), [
    ("fly", (), {}, "opcode", "fly"),
    ("sleep", ("minutes=lots",), {}, "arguments", "minutes"),
    ("wipe", ("external_storage=banana",), {}, "arguments", "true or false"),
    ("lock", (), {"priority": "urgent"}, "priority", "urgent"),
    ("lock", (), {"valid_for": timedelta(0)}, "valid_for", "positive"),
])
def test_bad_input_is_an_invalid_request_naming_it_and_writes_nothing(
        store: Store, opcode: str, args: tuple[str, ...], options: dict[str, Any],
        field: str, words: str) -> None:
    device(store, 0)
    with pytest.raises(InvalidRequest) as refused:
        queue(store, Target.device(IMEIS[0]), opcode, *args, **options)
    assert refused.value.field == field and words in str(refused.value)
    assert store.sql("SELECT count(*) FROM commands") == 0
    assert store.audit_count("command.send") == 0


def test_unknown_device_and_group_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no device with IMEI"):
        queue(store, Target.device(IMEIS[0]), "lock")
    with pytest.raises(NotFound, match="no group named south"):
        queue(store, Target.group("south"), "lock")
    with pytest.raises(InvalidRequest) as unreadable:
        queue(store, Target.device("not a number"), "lock")
    assert unreadable.value.field == "device"


def test_a_command_to_a_retired_device_is_refused_and_writes_nothing(store: Store) -> None:
    device(store, 0, retired=True)
    with pytest.raises(Refused, match=f"device {IMEIS[0]} is retired"):
        queue(store, Target.device(IMEIS[0]), "lock")
    assert store.sql("SELECT count(*) FROM commands") == 0
    assert store.audit_count("command.send") == 0


def test_a_group_command_leaves_its_retired_members_out(store: Store) -> None:
    for i in range(3):
        device(store, i, enrolled=i != 1, retired=i == 2)
    queued = queue(store, Target.group("north"), "status_query", "features=sim")
    assert (queued.target, queued.count, queued.left_out) == ("group:north", 2, 1)
    assert {r.imei for r in store.rows(
        "SELECT d.imei FROM commands c JOIN devices d ON d.id = c.device_id")} == {
        IMEIS[0], IMEIS[1]}
    assert store.sql("SELECT details FROM command_events LIMIT 1") == {"group": "north"}
    assert store.sql("SELECT details->>'left_out' FROM audit "
                     "WHERE action = 'command.send'") == "1"


def test_the_fleet_is_every_enrolled_device_that_is_not_retired(store: Store) -> None:
    device(store, 0, group="north")
    device(store, 1, group="south")
    device(store, 2, group="south", enrolled=False)
    device(store, 3, group="north", retired=True)
    queued = queue(store, Target.fleet(), "status_query", "features=battery")
    assert (queued.target, queued.count, queued.command_id) == ("fleet", 2, None)
    assert {r.imei for r in store.rows(
        "SELECT d.imei FROM commands c JOIN devices d ON d.id = c.device_id")} == {
        IMEIS[0], IMEIS[1]}
    assert store.sql("SELECT target FROM audit WHERE action = 'command.send'") == "fleet"


def test_a_wipe_to_a_group_needs_confirmation_saying_how_many_it_would_reach(
        store: Store) -> None:
    for i in range(3):
        device(store, i, retired=i == 2)
    with pytest.raises(NeedsConfirmation) as asked:
        queue(store, Target.group("north"), "wipe")
    assert asked.value.reach == 2
    assert str(asked.value) == ("wipe to group north would reach 2 device(s) and must be "
                                "confirmed")
    assert store.sql("SELECT count(*) FROM commands") == 0
    assert store.audit_count("command.send") == 0
    queued = queue(store, Target.group("north"), "wipe", "external_storage=yes",
                   confirm=True)
    assert (queued.count, queued.priority) == (2, 10)
    assert store.sql("SELECT details->>'confirmed' FROM audit "
                     "WHERE action = 'command.send'") == "true"


def test_a_wipe_to_the_fleet_needs_confirmation_and_to_one_device_does_not(
        store: Store) -> None:
    device(store, 0)
    device(store, 1)
    with pytest.raises(NeedsConfirmation, match="wipe to the whole fleet would reach 2"):
        queue(store, Target.fleet(), "wipe")
    assert queue(store, Target.fleet(), "lock").count == 2  # not destructive
    assert queue(store, Target.device(IMEIS[0]), "wipe").count == 1
    assert queue(store, Target.fleet(), "wipe", confirm=True).count == 2


def test_cancel_withdraws_a_queued_command_with_its_event_and_audit_row(
        store: Store) -> None:
    device(store, 0)
    queued = queue(store, Target.device(IMEIS[0]), "lock")
    done = store.run("cancel", cancel_command_txn, ALICE, queued.command_id,
                     now=NOW + timedelta(minutes=5))
    assert (done.command_id, done.opcode, done.imei) == (queued.command_id, "lock", IMEIS[0])
    assert store.sql("SELECT state FROM commands") == "cancelled"
    assert store.rows("SELECT target, details FROM audit WHERE action = 'command.cancel'") \
        == [(f"command:{queued.command_id}",
             {"opcode": "lock", "device": IMEIS[0], "from": "queued"})]
    history = store.run("show", show_command_txn, ALICE, queued.command_id).history
    assert [(e.from_state, e.to_state, e.event, e.actor) for e in history][-1] == (
        "queued", "cancelled", "cancel", "admin:alice")


@pytest.mark.parametrize(("events", "state", "why"), [
    (("claim",), "sending", "it is already being sent"),
    (("claim", "submitted"), "sent", "it is already sent"),
    (("claim", "submitted", "delivered"), "delivered", "it is already sent and delivered"),
    (("reply_ok",), "done", "the device already executed it"),
    (("cancel",), "cancelled", "it is already cancelled"),
])
def test_cancel_of_a_command_that_left_the_queue_is_refused_naming_its_state(
        store: Store, events: tuple[str, ...], state: str, why: str) -> None:
    device(store, 0)
    queued = queue(store, Target.device(IMEIS[0]), "lock")
    move(store, queued.command_id, *events)
    with pytest.raises(Refused) as refused:
        store.run("cancel", cancel_command_txn, ALICE, queued.command_id, now=NOW)
    assert str(refused.value) == (f"command {queued.command_id} cannot be cancelled: "
                                  f"{why} (state {state})")
    assert store.sql("SELECT state FROM commands") == state
    assert store.audit_count("command.cancel") == 0


def test_cancel_of_an_unknown_command_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no command with id 4242"):
        store.run("cancel", cancel_command_txn, ALICE, 4242, now=NOW)


def test_show_gives_the_command_and_its_whole_history_oldest_first(store: Store) -> None:
    device(store, 0)
    queued = queue(store, Target.device(IMEIS[0]), "lock")
    move(store, queued.command_id, "claim", "submitted", "delivered")
    shown = store.run("show", show_command_txn, ALICE, queued.command_id)
    assert (shown.record.id, shown.record.state) == (queued.command_id, "delivered")
    assert [(e.from_state, e.to_state, e.event, e.actor) for e in shown.history] == [
        (None, "queued", "create", "admin:alice"),
        ("queued", "sending", "claim", "dispatcher-1"),
        ("sending", "sent", "submitted", "dispatcher-1"),
        ("sent", "delivered", "delivered", "dispatcher-1"),
    ]
    with pytest.raises(NotFound, match="no command with id 4242"):
        store.run("show", show_command_txn, ALICE, 4242)


def test_list_gives_a_devices_commands_newest_first(store: Store) -> None:
    device(store, 0)
    device(store, 1)
    first = queue(store, Target.device(IMEIS[0]), "lock")
    second = queue(store, Target.device(IMEIS[0]), "unlock")
    queue(store, Target.device(IMEIS[1]), "lock")
    listed = store.run("list", list_commands_txn, ALICE, "+447700900100")
    assert [r.id for r in listed] == [second.command_id, first.command_id]
    assert [r.id for r in store.run("list", list_commands_txn, ALICE, IMEIS[0],
                                    limit=1)] == [second.command_id]
    with pytest.raises(InvalidRequest) as bad:
        store.run("list", list_commands_txn, ALICE, IMEIS[0], limit=0)
    assert bad.value.field == "limit"
