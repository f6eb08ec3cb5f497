from __future__ import annotations

import io

import pytest
from sqlalchemy import Engine
from sqlalchemy import text as text_sql

from blobstore.devices import add_device_txn, find_device_txn, list_devices_txn
from blobstore.groups import get_group_txn
from blobstore.identity import luhn_check_digit
from blobstore.importer import (
    Enrolling,
    ImportFormatError,
    ImportRow,
    RowError,
    import_csv,
    parse_csv,
)


def _imei(n: int) -> str:
    body = f"35{n:012d}"
    return body + luhn_check_digit(body)


GOOD_1, GOOD_2, GOOD_3, TAKEN = _imei(1), _imei(2), _imei(3), _imei(4)


def _csv() -> str:
    return "\n".join([
        "imei,imsi,phone,group",
        f"{GOOD_1},234150000000001,+44 7700 900001,north",       # line 2
        "352099001761482,,,",                                     # 3: bad Luhn
        f"{GOOD_2},,07700 900002,south",                           # 4: national form, GB
        f"{GOOD_2},,,",                                            # 5: duplicate in file
        f"{_imei(9)},23415x,,",                                    # 6: bad IMSI
        f"{_imei(10)},,not-a-number,",                             # 7: bad phone
        f"{_imei(11)},,,bad group",                                # 8: bad group name
        f"{GOOD_3},310150123456789,447700900003,",                 # 9
        f"{TAKEN},,,",                                             # 10: already in DB
        f"{_imei(12)},,",                                          # 11: wrong field count
        "",
    ])


def test_bad_rows_are_reported_by_line_and_good_rows_land(engine: Engine) -> None:
    with engine.begin() as conn:
        add_device_txn(conn, TAKEN)
    report = import_csv(engine, io.StringIO(_csv()), "GB", batch_size=2)
    assert (report.rows, report.imported) == (10, 3)
    assert [str(e) for e in report.errors] == [
        "line 3: IMEI 352099001761482 has a wrong check digit 2: expected 1",
        f"line 5: duplicate IMEI {GOOD_2}, already on line 4",
        "line 6: IMSI '23415x' must contain only digits",
        "line 7: phone number 'not-a-number' is not a valid number",
        "line 8: group name 'bad group' must be 1-64 letters, digits or _ . : - "
        "and start with a letter or digit",
        f"line 10: IMEI {TAKEN} is already registered",
        "line 11: expected 4 fields, got 3",
    ]
    with engine.begin() as conn:
        one = find_device_txn(conn, "+447700900001")
        two = find_device_txn(conn, "+447700900002")
        three = find_device_txn(conn, "310150123456789")
        assert (one.imei, one.imsi, one.groups) == (GOOD_1, "234150000000001", ("north",))
        assert (two.imei, two.groups) == (GOOD_2, ("south",))
        assert three.msisdn == "+447700900003"
        assert get_group_txn(conn, "north").members == 1
        assert len(list_devices_txn(conn)) == 4


def test_reimporting_the_same_file_reports_every_row_as_registered(engine: Engine) -> None:
    text = f"imei,group\n{GOOD_1},a\n{GOOD_2},a\n"
    assert import_csv(engine, io.StringIO(text), None).imported == 2
    again = import_csv(engine, io.StringIO(text), None)
    assert again.imported == 0
    assert [e.line for e in again.errors] == [2, 3]


def test_header_columns_may_come_in_any_order() -> None:
    rows = list(parse_csv(io.StringIO(f"phone,imei\n+447700900001,{GOOD_1}\n"), None))
    assert rows == [ImportRow(2, GOOD_1, None, "+447700900001", None)]


@pytest.mark.parametrize("header", ["", "imsi,phone\n", "imei,colour\n", "imei,imei\n"])
def test_a_bad_header_refuses_the_whole_file(header: str) -> None:
    with pytest.raises(ImportFormatError):
        list(parse_csv(io.StringIO(header), None))


def test_row_error_prints_as_line_and_message() -> None:
    assert str(RowError(7, "bad")) == "line 7: bad"


def test_rows_with_a_public_key_are_enrolled_and_pinned_in_the_same_batch(
        engine: Engine) -> None:
    key_a, key_b = bytes(range(32)), bytes(range(1, 33))
    text = "\n".join([
        "imei,phone,public_key",
        f"{_imei(21)},+447700900021,{key_a.hex()}",
        f"{_imei(22)},+447700900022,",                       # no key: registered only
        f"{_imei(23)},+447700900023,{key_b.hex()[:-2]}",      # 31 octets
        f"{_imei(24)},+447700900024,zz{key_b.hex()[2:]}",     # not hex
        f"{_imei(25)},+447700900025,{key_b.hex().upper()}",
        f"{_imei(26)},+447700900026,{bytes(32).hex()}",       # a zeroed buffer
        "",
    ])
    enrolling = Enrolling(lambda raw: raw[0] + 100, server_key=7,
                          key_defect=lambda raw: "all zero" if not any(raw) else None)
    report = import_csv(engine, io.StringIO(text), "GB", enrolling=enrolling)
    assert (report.imported, report.enrolled) == (3, 2)
    assert [str(e) for e in report.errors] == [
        "line 4: public_key: an Ed25519 public key has 32 octets, got 31",
        "line 5: public_key: not hexadecimal",
        "line 7: public_key: not a usable device key: all zero",
    ]
    with engine.begin() as conn:
        a = find_device_txn(conn, _imei(21))
        b = find_device_txn(conn, _imei(25))
        bare = find_device_txn(conn, _imei(22))
        pins = dict(conn.execute(text_sql(
            "SELECT device_id, key_id FROM device_server_keys")).all())
    assert (a.state, a.public_key, a.key_id) == ("provisioned", key_a, 100)
    assert (b.state, b.public_key, b.key_id) == ("provisioned", key_b, 101)
    assert (bare.state, bare.public_key) == ("unprovisioned", None)
    assert pins == {a.id: 7, b.id: 7}


def test_a_public_key_without_a_way_to_enrol_it_is_a_bad_row(engine: Engine) -> None:
    text = f"imei,public_key\n{_imei(31)},{bytes(32).hex()}\n{_imei(32)},\n"
    report = import_csv(engine, io.StringIO(text), "GB")
    assert report.imported == 1
    assert [str(e) for e in report.errors] == [
        "line 2: public_key given but no key store here to enrol with"]
