from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from blobstore.devices import (
    add_device_txn,
    device_by_imei_txn,
    find_device_txn,
    identity_history_txn,
    list_devices_txn,
    set_device_state_txn,
    update_identity_txn,
)
from blobstore.errors import (
    AmbiguousDeviceError,
    DeviceNotFoundError,
    DuplicateDeviceError,
    DuplicateGroupError,
    GroupNotFoundError,
)
from blobstore.groups import (
    add_members_txn,
    create_group_txn,
    get_group_txn,
    group_device_ids_txn,
    list_groups_txn,
    remove_members_txn,
)
from blobstore.identity import IdentityError, luhn_check_digit

IMEI = "352099001761481"
IMSI = "234150123456789"
PHONE = "+447700900123"


def _imei(n: int) -> str:
    body = f"35{n:012d}"
    return body + luhn_check_digit(body)


@pytest.fixture
def device_id(engine: Engine) -> int:
    with engine.begin() as conn:
        return add_device_txn(conn, IMEI, imsi=IMSI, msisdn=PHONE).id


@pytest.mark.parametrize("written", [
    "352099001761481", "35-209900-176148-1", "3520990017614823",   # IMEI, IMEISV
    "234150123456789", "234 15 0123456789",                        # IMSI
    "+44 7700 900123", "07700900123", "447700900123", "0044 7700 900123",  # phone
])
def test_device_is_found_by_every_identifier_however_written(
        engine: Engine, device_id: int, written: str) -> None:
    with engine.begin() as conn:
        assert find_device_txn(conn, written, "GB").id == device_id


def test_unknown_identifier_names_every_reading_tried(engine: Engine, device_id: int) -> None:
    with engine.begin() as conn, pytest.raises(DeviceNotFoundError,
                                               match="IMSI 234159999999999 or MSISDN"):
        find_device_txn(conn, "234159999999999", "GB")


def test_imei_reading_wins_over_an_imsi_equal_to_another_devices_imei(engine: Engine) -> None:
    other = _imei(7)
    with engine.begin() as conn:
        first = add_device_txn(conn, other).id
        add_device_txn(conn, IMEI, imsi=other)
        assert find_device_txn(conn, other).id == first


def test_shared_phone_number_is_reported_as_ambiguous(engine: Engine) -> None:
    with engine.begin() as conn:
        add_device_txn(conn, _imei(1), msisdn=PHONE)
        add_device_txn(conn, _imei(2), msisdn=PHONE)
        with pytest.raises(AmbiguousDeviceError, match="2 devices have MSISDN"):
            find_device_txn(conn, "07700900123", "GB")


def test_duplicate_imei_is_refused(engine: Engine, device_id: int) -> None:
    with engine.begin() as conn, pytest.raises(DuplicateDeviceError, match=IMEI):
        add_device_txn(conn, IMEI)


def test_non_canonical_identifiers_are_refused_before_the_database(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(IdentityError):
            add_device_txn(conn, "352099001761482")
        with pytest.raises(IdentityError, match=r"E\.164"):
            add_device_txn(conn, IMEI, msisdn="07700900123")


def test_database_checks_refuse_bad_values_written_around_the_store(engine: Engine) -> None:
    from sqlalchemy import text
    with pytest.raises(IntegrityError, match="ck_devices_msisdn_e164"), engine.begin() as conn:
        conn.execute(text("INSERT INTO devices (imei, msisdn) VALUES (:i, '07700900123')"),
                     {"i": IMEI})


def test_sim_swap_writes_identity_history_rows(engine: Engine, device_id: int) -> None:
    with engine.begin() as conn:
        changes = update_identity_txn(conn, device_id, imsi="234150000000001",
                                      msisdn="+447700900456", source="sim-change-alert")
        assert {(c.kind, c.old_value, c.new_value) for c in changes} == {
            ("imsi", IMSI, "234150000000001"), ("msisdn", PHONE, "+447700900456")}
    with engine.begin() as conn:
        update_identity_txn(conn, device_id, msisdn="+447700900789", source="cli")
        history = identity_history_txn(conn, device_id)
        record = device_by_imei_txn(conn, IMEI)
    assert [(h.kind, h.old_value, h.new_value, h.source) for h in history] == [
        ("imsi", IMSI, "234150000000001", "sim-change-alert"),
        ("msisdn", PHONE, "+447700900456", "sim-change-alert"),
        ("msisdn", "+447700900456", "+447700900789", "cli"),
    ]
    assert record is not None
    assert (record.imsi, record.msisdn) == ("234150000000001", "+447700900789")
    assert record.updated_at >= record.created_at


def test_unchanged_identity_writes_no_history(engine: Engine, device_id: int) -> None:
    with engine.begin() as conn:
        assert update_identity_txn(conn, device_id, imsi=IMSI, msisdn=PHONE, source="x") == []
        assert identity_history_txn(conn, device_id) == []


def test_old_number_no_longer_finds_the_device(engine: Engine, device_id: int) -> None:
    with engine.begin() as conn:
        update_identity_txn(conn, device_id, msisdn="+447700900456", source="x")
        with pytest.raises(DeviceNotFoundError):
            find_device_txn(conn, PHONE)
        assert find_device_txn(conn, "+447700900456").id == device_id


def test_state_changes_are_checked(engine: Engine, device_id: int) -> None:
    with engine.begin() as conn:
        assert set_device_state_txn(conn, device_id, "locked") == "unprovisioned"
        with pytest.raises(ValueError, match="unknown device state"):
            set_device_state_txn(conn, device_id, "stolen")


def test_groups_membership_and_paged_listing(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = [add_device_txn(conn, _imei(n)).id for n in range(5)]
        create_group_txn(conn, "north", "northern depots")
        with pytest.raises(DuplicateGroupError):
            create_group_txn(conn, "north")
        assert add_members_txn(conn, "north", ids[:3]) == 3
        assert add_members_txn(conn, "north", ids[:4]) == 1
        assert remove_members_txn(conn, "north", [ids[0]]) == 1
        assert get_group_txn(conn, "north").members == 3
        assert [g.name for g in list_groups_txn(conn)] == ["north"]
        assert group_device_ids_txn(conn, "north") == ids[1:4]
        page1 = list_devices_txn(conn, limit=2)
        page2 = list_devices_txn(conn, after_id=page1[-1].id, limit=10)
        assert [d.id for d in page1 + page2] == ids
        members = list_devices_txn(conn, group="north")
        assert [d.id for d in members] == ids[1:4]
        assert members[0].groups == ("north",)
        with pytest.raises(GroupNotFoundError):
            add_members_txn(conn, "south", ids)
        with pytest.raises(ValueError, match="group name"):
            create_group_txn(conn, "bad name")
