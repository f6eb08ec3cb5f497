"""``mepl.app.devices``: add, show, page, update, enrol (server-key pinning), import audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from blobstore.importer import ImportReport
from mepl.app.devices import (
    add_device_txn,
    device_page_txn,
    enrol_device_txn,
    record_import_txn,
    show_device_txn,
    update_device_txn,
)
from mepl.app.errors import Conflict, InvalidRequest, NotFound
from mepl.app.keys import key_usage_txn
from signing.keys import SigningKey
from signing.keystore import KeyIndex
from tests.app.conftest import ALICE, IMEIS, Store


def keys(active: int, *ids: int) -> KeyIndex:
    return KeyIndex(server_id=b"\x01" * 8, active_key_id=active,
                    keys=tuple(SigningKey.generate(i).public for i in ids),
                    trusted_numbers=(), ca_key_path=Path("ca.key.pem"))


def public_key() -> str:
    return SigningKey.generate(1).public.raw.hex()


def pin(store: Store, imei: str) -> int | None:
    value = store.sql("SELECT k.key_id FROM device_server_keys k JOIN devices d "
                      "ON d.id = k.device_id WHERE d.imei = :i", i=imei)
    return None if value is None else int(value)


def test_add_reads_any_written_form_creates_groups_and_audits(store: Store) -> None:
    record = store.run("add", add_device_txn, ALICE, "49-015420-323751-8",
                       imsi="234150000000001", phone="07700 900100",
                       groups=["north", "depot-7"], region="GB")
    assert (record.imei, record.imsi, record.msisdn) == (
        IMEIS[0], "234150000000001", "+447700900100")
    assert record.groups == ("depot-7", "north")
    assert store.rows("SELECT actor, role, target, details FROM audit") == [
        ("alice", "admin", IMEIS[0], {"groups": ["north", "depot-7"]})]


@pytest.mark.parametrize(("options", "field"), [
    ({"imei": "490154203237519"}, "imei"),
    ({"imsi": "12"}, "imsi"),
    ({"phone": "12"}, "phone"),
    ({"groups": ["no spaces allowed"]}, "group"),
])
def test_add_refuses_unreadable_input_naming_the_field_and_writes_nothing(
        store: Store, options: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"imei": IMEIS[0], **options}
    imei = values.pop("imei")
    with pytest.raises(InvalidRequest) as refused:
        store.run("add", add_device_txn, ALICE, imei, region="GB", **values)
    assert refused.value.field == field
    assert store.sql("SELECT count(*) FROM devices") == 0
    assert store.audit_count() == 0


def test_a_duplicate_imei_is_a_conflict_and_writes_no_audit_row(store: Store) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[0])
    with pytest.raises(Conflict, match="already registered"):
        store.run("add", add_device_txn, ALICE, IMEIS[0], groups=["north"])
    assert store.audit_count("device.add") == 1
    assert store.sql("SELECT count(*) FROM groups") == 0


def test_update_records_identity_history_with_the_actors_role_and_audits_old_and_new(
        store: Store) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[0], phone="+447700900100")
    updated = store.run("update", update_device_txn, ALICE, "+447700900100",
                        phone="07700 900199", state="locked", region="GB")
    assert (updated.record.msisdn, updated.record.state) == ("+447700900199", "locked")
    assert [(c.kind, c.old_value, c.new_value, c.source) for c in updated.changes] == [
        ("msisdn", "+447700900100", "+447700900199", "admin")]
    assert store.sql("SELECT details FROM audit WHERE action = 'device.update'") == {
        "msisdn": {"old": "+447700900100", "new": "+447700900199"},
        "state": {"old": "unprovisioned", "new": "locked"}}
    shown = store.run("show", show_device_txn, ALICE, "+447700900199")
    assert shown.to_json()["identity_history"][0]["new"] == "+447700900199"
    cleared = store.run("update", update_device_txn, ALICE, IMEIS[0], phone="")
    assert cleared.record.msisdn is None


def test_update_refuses_an_unknown_state_and_an_unknown_device(store: Store) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[0])
    with pytest.raises(InvalidRequest) as refused:
        store.run("update", update_device_txn, ALICE, IMEIS[0], state="melted")
    assert refused.value.field == "state"
    with pytest.raises(NotFound, match="no device with IMEI"):
        store.run("update", update_device_txn, ALICE, IMEIS[1], state="locked")
    assert store.audit_count("device.update") == 0


def test_enrol_provisions_the_device_and_pins_the_active_server_key(store: Store) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[0])
    enrolled = store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], public_key(),
                         keys=keys(2, 1, 2))
    assert (enrolled.record.state, enrolled.server_key_id) == ("provisioned", 2)
    assert enrolled.record.key_id == enrolled.key_id
    assert pin(store, IMEIS[0]) == 2
    assert store.sql("SELECT (details->>'server_key_id')::int FROM audit "
                     "WHERE action = 'device.enrol'") == 2


def test_enrolling_the_same_handset_again_keeps_its_server_key_a_new_one_replaces_it(
        store: Store) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[0])
    key = public_key()
    store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], key, keys=keys(1, 1))
    again = store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], key, keys=keys(2, 1, 2))
    assert (again.server_key_id, pin(store, IMEIS[0])) == (1, 1)
    told = store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], key, keys=keys(2, 1, 2),
                     server_key=2)
    assert (told.server_key_id, pin(store, IMEIS[0])) == (2, 2)
    store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], key, keys=keys(3, 1, 2, 3))
    assert pin(store, IMEIS[0]) == 2
    store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], public_key(), keys=keys(3, 1, 2, 3))
    assert pin(store, IMEIS[0]) == 3  # a re-provisioned handset has the active key


def test_enrol_without_a_key_store_pins_only_an_explicit_server_key(store: Store) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[0])
    store.run("add", add_device_txn, ALICE, IMEIS[1])
    assert store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], public_key(),
                     keys=None).server_key_id is None
    assert store.run("enrol", enrol_device_txn, ALICE, IMEIS[1], public_key(),
                     keys=None, server_key=4).server_key_id == 4
    assert (pin(store, IMEIS[0]), pin(store, IMEIS[1])) == (None, 4)
    usage = store.run("usage", key_usage_txn, ALICE)
    assert (usage.devices_per_key, usage.unpinned) == ({4: 1}, 1)


@pytest.mark.parametrize(("key", "server_key", "field", "message"), [
    ("abcd", None, "public_key", "an Ed25519 public key has 32 octets, got 2"),
    ("zz" * 32, None, "public_key", "not hexadecimal"),
    ("00" * 32, None, "public_key",
     "not a usable device key: a point of small order (no signature can ever verify with it)"),
    ("ff" * 32, None, "public_key", "not a usable device key: not a canonical encoding of a "
     "point"),
    (None, 0, "server_key", "server key ids are 1..65535"),
    (None, 9, "server_key", "no server key with id 9"),
])
def test_enrol_refuses_a_bad_key_or_an_unknown_server_key_and_writes_nothing(
        store: Store, key: str | None, server_key: int | None, field: str,
        message: str) -> None:
    store.run("add", add_device_txn, ALICE, IMEIS[0])
    with pytest.raises(InvalidRequest) as refused:
        store.run("enrol", enrol_device_txn, ALICE, IMEIS[0], key or public_key(),
                  keys=keys(1, 1), server_key=server_key)
    assert (refused.value.field, str(refused.value)) == (field, message)
    assert store.sql("SELECT public_key FROM devices") is None
    assert store.audit_count("device.enrol") == 0


def test_device_pages_follow_the_ids(store: Store) -> None:
    for imei in IMEIS:
        store.run("add", add_device_txn, ALICE, imei, groups=["north"] if imei != IMEIS[1]
                  else [])
    first = store.run("page", device_page_txn, ALICE, limit=2)
    rest = store.run("page", device_page_txn, ALICE, after_id=first[-1].id, limit=10)
    assert [r.imei for r in first + rest] == list(IMEIS)
    north = store.run("page", device_page_txn, ALICE, group="north")
    assert [r.imei for r in north] == [IMEIS[0], IMEIS[2], IMEIS[3]]


def test_an_import_is_audited_with_its_counts(store: Store) -> None:
    store.run("import", record_import_txn, ALICE, "fleet.csv",
              ImportReport(rows=4, imported=3))
    assert store.rows("SELECT target, details FROM audit WHERE action = 'device.import'") == [
        ("fleet.csv", {"rows": 4, "imported": 3, "bad": 0})]
