"""``mepl.app.groups``: create, list, show, change members (all or nothing, audited)."""

from __future__ import annotations

import pytest

from mepl.app.devices import add_device_txn
from mepl.app.errors import Conflict, InvalidRequest, NotFound
from mepl.app.groups import (
    change_members_txn,
    create_group_txn,
    list_groups_txn,
    show_group_txn,
)
from tests.app.conftest import ALICE, IMEIS, Store


def test_create_audits_and_refuses_a_taken_or_unreadable_name(store: Store) -> None:
    group = store.run("create", create_group_txn, ALICE, "depot-7", "the depot")
    assert (group.name, group.description, group.members) == ("depot-7", "the depot", 0)
    with pytest.raises(Conflict, match="group depot-7 already exists"):
        store.run("create", create_group_txn, ALICE, "depot-7")
    with pytest.raises(InvalidRequest) as refused:
        store.run("create", create_group_txn, ALICE, "-no")
    assert refused.value.field == "name"
    assert store.rows("SELECT action, target FROM audit") == [("group.add", "depot-7")]


def test_members_change_all_or_nothing_and_are_audited(store: Store) -> None:
    store.run("create", create_group_txn, ALICE, "north")
    store.run("add", add_device_txn, ALICE, IMEIS[0], phone="+447700900100")
    store.run("add", add_device_txn, ALICE, IMEIS[1])
    with pytest.raises(NotFound, match="no device with IMEI"):
        store.run("members", change_members_txn, ALICE, "north", [IMEIS[0], IMEIS[2]],
                  adding=True)
    assert store.audit_count("group.add_member") == 0
    assert store.run("members", change_members_txn, ALICE, "north",
                     ["07700900100", IMEIS[1]], adding=True, region="GB") == 2
    assert store.run("members", change_members_txn, ALICE, "north", [IMEIS[1]],
                     adding=False) == 1
    assert store.rows("SELECT action, details FROM audit WHERE action LIKE 'group.%member' "
                      "ORDER BY id") == [
        ("group.add_member", {"devices": ["07700900100", IMEIS[1]]}),
        ("group.remove_member", {"devices": [IMEIS[1]]})]
    with pytest.raises(NotFound, match="no group named south"):
        store.run("members", change_members_txn, ALICE, "south", [IMEIS[0]], adding=True)


def test_list_and_show_count_the_members(store: Store) -> None:
    store.run("create", create_group_txn, ALICE, "north")
    store.run("create", create_group_txn, ALICE, "empty")
    for imei in IMEIS[:3]:
        store.run("add", add_device_txn, ALICE, imei, groups=["north"])
    assert [(g.name, g.members) for g in store.run("list", list_groups_txn, ALICE)] == [
        ("empty", 0), ("north", 3)]
    shown = store.run("show", show_group_txn, ALICE, "north", limit=2)
    assert shown.group.members == 3
    assert [r.imei for r in shown.members] == list(IMEIS[:2])
    with pytest.raises(NotFound):
        store.run("show", show_group_txn, ALICE, "south")
