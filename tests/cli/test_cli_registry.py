from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from blobstore.identity import luhn_check_digit
from blobstore.migrate import head_revision, upgrade
from mepl.cli.main import main
from tests.support.pg import create_database, migrated_database

Run = Callable[..., tuple[int, str, str]]


def _imei(n: int) -> str:
    body = f"35{n:012d}"
    return body + luhn_check_digit(body)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import os
    for name in list(os.environ):
        if name.startswith("MEPL_"):
            monkeypatch.delenv(name)
    yield


def _runner(capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str | None) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        extra = ["--state-dir", str(tmp_path / "state")]
        if url is not None:
            extra += ["--database-url", url]
        capsys.readouterr()
        code = main([*argv, *extra])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    return _runner(capsys, tmp_path, migrated_database("cli"))


def test_add_then_show_by_each_identifier(run: Run) -> None:
    code, out, err = run("devices", "add", "--imei", "35-209900-176148-1", "--imsi",
                         "234150123456789", "--phone", "07700 900123", "--group", "north")
    assert (code, err) == (0, "")
    assert "added device 352099001761481" in out
    for identifier in ("352099001761481", "234150123456789", "+44 7700 900123",
                       "447700900123", "07700900123"):
        code, out, _ = run("devices", "show", identifier, "--region", "GB")
        assert code == 0
        assert "IMEI:      352099001761481" in out
        assert "phone:     +447700900123" in out
        assert "groups:    north" in out


def test_wrong_check_digit_exits_1_naming_option_and_digit(run: Run) -> None:
    code, out, err = run("devices", "add", "--imei", "352099001761482")
    assert code == 1
    assert out == ""
    assert err.strip() == ("mepl: error: --imei: IMEI 352099001761482 has a wrong check "
                           "digit 2: expected 1")


def test_unparseable_phone_and_duplicate_imei_exit_1(run: Run) -> None:
    code, _, err = run("devices", "add", "--imei", _imei(1), "--phone", "12")
    assert code == 1 and "--phone: phone number '12' is not a valid number" in err
    assert run("devices", "add", "--imei", _imei(1))[0] == 0
    code, _, err = run("devices", "add", "--imei", _imei(1))
    assert code == 1 and f"IMEI {_imei(1)} is already registered" in err


def test_update_records_identity_history_shown_by_show(run: Run) -> None:
    run("devices", "add", "--imei", _imei(1), "--phone", "+447700900001")
    code, out, _ = run("devices", "update", "+447700900001", "--phone", "+447700900002",
                       "--state", "locked")
    assert code == 0 and "1 identity change(s)" in out
    code, out, _ = run("devices", "show", _imei(1), "--json")
    data = json.loads(out)
    assert data["state"] == "locked"
    assert data["identity_history"][0]["old"] == "+447700900001"
    assert data["identity_history"][0]["new"] == "+447700900002"


def test_import_reports_bad_lines_on_stderr_and_summary_on_stdout(
        run: Run, tmp_path: Path) -> None:
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text(
        "imei,imsi,phone,group\n"
        f"{_imei(1)},234150000000001,+447700900001,north\n"
        "352099001761482,,,\n"
        f"{_imei(2)},,07700900002,north\n"
        f"{_imei(1)},,,\n"
    )
    code, out, err = run("devices", "import", str(csv_file), "--region", "GB")
    assert code == 1
    assert err.splitlines() == [
        "line 3: IMEI 352099001761482 has a wrong check digit 2: expected 1",
        f"line 5: duplicate IMEI {_imei(1)}, already on line 2",
    ]
    assert out.strip() == f"imported 2 device(s) from {csv_file}: 4 row(s), 2 bad"
    code, out, _ = run("devices", "list", "--group", "north", "--json")
    assert code == 0
    assert [d["imei"] for d in json.loads(out)] == [_imei(1), _imei(2)]
    code, out, _ = run("groups", "list")
    assert "north" in out and " 2 " in out


def test_clean_import_exits_0(run: Run, tmp_path: Path) -> None:
    csv_file = tmp_path / "ok.csv"
    csv_file.write_text(f"imei\n{_imei(1)}\n{_imei(2)}\n")
    code, out, err = run("devices", "import", str(csv_file))
    assert (code, err) == (0, "")
    assert "imported 2 device(s)" in out


def test_import_of_missing_file_and_bad_header(run: Run, tmp_path: Path) -> None:
    code, _, err = run("devices", "import", str(tmp_path / "nope.csv"))
    assert code == 2 and "cannot read" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("serial,phone\n1,2\n")
    code, _, err = run("devices", "import", str(bad))
    assert code == 1 and "header must be imei,imsi,phone,group" in err


def test_groups_commands(run: Run) -> None:
    assert run("groups", "add", "depot-7", "--description", "the depot")[0] == 0
    code, _, err = run("groups", "add", "depot-7")
    assert code == 1 and "already exists" in err
    run("devices", "add", "--imei", _imei(1), "--phone", "+447700900001")
    run("devices", "add", "--imei", _imei(2))
    code, out, _ = run("groups", "add-member", "depot-7", "+447700900001", _imei(2))
    assert (code, out.strip()) == (0, "2 device(s) added to group depot-7")
    code, out, _ = run("groups", "show", "depot-7")
    assert code == 0 and "2 member(s) - the depot" in out and _imei(2) in out
    code, out, _ = run("groups", "remove-member", "depot-7", _imei(2))
    assert out.strip() == "1 device(s) removed from group depot-7"
    code, _, err = run("groups", "add-member", "depot-7", _imei(3))
    assert code == 1 and "no device with IMEI" in err
    code, out, _ = run("groups", "list", "--json")
    assert json.loads(out) == [{"name": "depot-7", "description": "the depot", "members": 1}]


def test_out_of_date_schema_is_refused_until_upgrade(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = _runner(capsys, tmp_path, create_database("empty"))
    code, out, err = run("devices", "list")
    assert code == 2 and out == ""
    head = head_revision()
    assert f"database schema is at empty (no schema), this mepl needs {head}: " \
           "run `mepl db upgrade`" in err
    code, out, _ = run("db", "status")
    assert code == 1 and "run `mepl db upgrade`" in out
    code, out, _ = run("db", "upgrade")
    assert (code, out.strip()) == (0, f"database schema upgraded from empty to {head}")
    code, out, _ = run("db", "upgrade")
    assert "up to date" in out
    assert run("devices", "list")[0] == 0


def test_a_schema_one_revision_behind_is_refused_and_upgraded_in_place(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = create_database("behind")
    engine = create_engine(url)
    try:
        upgrade(engine, "0001")
    finally:
        engine.dispose()
    run = _runner(capsys, tmp_path, url)
    code, _, err = run("devices", "list")
    assert code == 2 and f"database schema is at 0001, this mepl needs {head_revision()}" in err
    code, out, _ = run("db", "upgrade")
    assert code == 0 and f"upgraded from 0001 to {head_revision()}" in out
    assert run("devices", "list")[0] == 0


def test_bad_configuration_names_the_key(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEPL_DATABASE__POOL_SIZE", "lots")
    code, _, err = run("devices", "list")
    assert code == 2 and "database.pool_size: expected an integer" in err


def test_unreachable_database_exits_2(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    run = _runner(capsys, tmp_path, "postgresql+psycopg2://postgres@/x?host=/nonexistent")
    code, _, err = run("devices", "list")
    assert code == 2
    assert err.startswith("mepl: error: cannot reach the database: connection to server")


def test_embedded_default_starts_migrates_and_stops(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = _runner(capsys, tmp_path, None)
    code, _, err = run("devices", "list")
    assert code == 2 and "run `mepl db upgrade`" in err
    assert run("db", "upgrade")[0] == 0
    assert run("devices", "add", "--imei", _imei(5), "--phone", "+447700900005")[0] == 0
    code, out, _ = run("devices", "list")
    assert code == 0 and _imei(5) in out and "+447700900005" in out
    pgdata = tmp_path / "state" / "pg"
    assert (pgdata / "PG_VERSION").exists()
    assert not (pgdata / "postmaster.pid").exists()  # stopped when the command ended


def test_update_and_enrol_name_the_option_at_fault_and_a_positional_without_one(
        run: Run) -> None:
    run("devices", "add", "--imei", _imei(1), "--phone", "+447700900001")
    code, out, err = run("devices", "update", _imei(1), "--phone", "12")
    assert (code, out) == (1, "")
    assert err.strip() == "mepl: error: --phone: phone number '12' is not a valid number"
    code, _, err = run("devices", "enrol", _imei(1), "--public-key", "zz")
    assert (code, err.strip()) == (1, "mepl: error: --public-key: not hexadecimal")
    code, _, err = run("devices", "show", _imei(2))
    assert code == 1 and err.startswith(f"mepl: error: no device with IMEI {_imei(2)} or")
    code, _, err = run("groups", "add", "bad name")
    assert code == 1 and err.startswith("mepl: error: group name 'bad name' must be")


def test_import_with_public_keys_enrols_each_device_pinned_to_the_active_key(
        run: Run, tmp_path: Path) -> None:
    code, _, err = run("keys", "init", "--trusted-number", "+447700900000")
    assert code == 0, err
    handset_key = bytes(range(32))
    csv_file = tmp_path / "keys.csv"
    csv_file.write_text(f"imei,phone,public_key\n{_imei(1)},+447700900001,{handset_key.hex()}\n"
                        f"{_imei(2)},+447700900002,\n")
    code, out, err = run("devices", "import", str(csv_file))
    assert (code, err) == (0, "")
    assert out.strip() == (f"imported 2 device(s) from {csv_file}, 1 enrolled with their keys: "
                           "2 row(s), 0 bad")
    code, out, _ = run("devices", "show", _imei(1), "--json")
    shown = json.loads(out)
    assert (shown["state"], shown["public_key"]) == ("provisioned", handset_key.hex())
    code, out, _ = run("keys", "show")
    shown = json.loads(out)
    assert (shown["devices_per_key"], shown["devices_unpinned"]) == (
        {str(shown["active_key_id"]): 1}, 0)
