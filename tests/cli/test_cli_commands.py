"""``mepl commands`` (send, list, show, cancel) and ``mepl devices enrol`` against the real
embedded PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mepl.cli.db import cli_actor
from mepl.cli.main import main
from signing.keys import SigningKey, device_key_id
from tests.support.pg import migrated_database

IMEIS = ("490154203237518", "356938035643809", "353918058450939")


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    url = migrated_database("cmd")
    args = ["--database-url", url, "--state-dir", str(tmp_path), "--region", "GB"]
    for i, imei in enumerate(IMEIS):
        assert main(["devices", "add", "--imei", imei, "--phone", f"0770090010{i}",
                     "--group", "north", *args]) == 0
    return args


def scalar(args: list[str], sql: str) -> object:
    engine = create_engine(args[1])
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def test_enrol_registers_the_key_and_provisions_the_device(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    key = SigningKey.generate(1).public.raw
    assert main(["devices", "enrol", IMEIS[0], "--public-key", key.hex(), *db]) == 0
    assert f"device key {device_key_id(key)}" in capsys.readouterr().out
    assert scalar(db, f"SELECT state FROM devices WHERE imei = '{IMEIS[0]}'") == "provisioned"
    assert scalar(db, "SELECT count(*) FROM audit WHERE action = 'device.enrol'") == 1


def test_enrol_refuses_a_key_that_is_not_32_octets(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "enrol", IMEIS[0], "--public-key", "abcd", *db]) == 1
    assert "32 octets" in capsys.readouterr().err


def test_send_to_a_group_queues_one_row_per_member_with_security_priority_for_lock(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commands", "send", "--group", "north", "--opcode", "lock", *db]) == 0
    assert "queued lock for 3 device(s)" in capsys.readouterr().out
    assert scalar(db, "SELECT count(*) FROM commands WHERE priority = 10") == 3
    assert scalar(db, "SELECT count(*) FROM audit WHERE action = 'command.send'") == 1


def test_send_checks_arguments_against_the_catalog_before_queueing(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commands", "send", "--device", IMEIS[1], "--opcode", "status_query",
                 "--arg", "features=battery,teleport", *db]) == 1
    assert "teleport" in capsys.readouterr().err
    assert main(["commands", "send", "--device", IMEIS[1], "--opcode", "sleep",
                 "--arg", "minutes=lots", *db]) == 1
    assert main(["commands", "send", "--device", IMEIS[1], "--opcode", "fly", *db]) == 1
    assert scalar(db, "SELECT count(*) FROM commands") == 0


def test_list_and_show_report_a_queued_command_as_json(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commands", "send", "--device", "07700900101", "--opcode", "status_query",
                 "--arg", "features=battery,sim", *db]) == 0
    capsys.readouterr()
    assert main(["commands", "list", "--device", IMEIS[1], "--json", *db]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["opcode"], listed["state"]) == ("status_query", "queued")
    assert listed["arguments"] == {"features": ["battery", "sim"]}
    assert main(["commands", "show", str(listed["id"]), *db]) == 0
    shown, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)
    assert shown["id"] == listed["id"]
    assert main(["commands", "show", "999999", *db]) == 1


def test_the_operator_guide_notify_example_queues_the_text(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commands", "send", "--device", IMEIS[2], "--opcode", "notify",
                 "--arg", "text=Return to base", *db]) == 0, capsys.readouterr().err
    assert "queued notify for 1 device(s)" in capsys.readouterr().out
    stored = scalar(db, "SELECT arguments FROM commands")
    assert stored == {"text": "Return to base", "encoding": "gsm7"}


def test_every_opcode_argument_kind_can_be_queued_from_the_command_line(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    sends = [
        ("set_geofence", ["fence_id=3", "lat_e7=-338688000", "lon_e7=1512093000",
                          "radius_m=500"]),
        ("set_restrictions", ["restrictions=usb_data,camera"]),
        ("set_trusted_numbers", ["numbers=+447700900000, 07700 900001"]),
        ("wipe", ["external_storage=yes"]),
        ("rotate_key", ["next_key_id=2", "next_public_key=" + "ab" * 32]),
        ("notify", ["text=Gate closed", "encoding=utf8"]),
    ]
    for opcode, pairs in sends:
        argv = ["commands", "send", "--device", IMEIS[0], "--opcode", opcode]
        for pair in pairs:
            argv += ["--arg", pair]
        assert main([*argv, *db]) == 0, (opcode, capsys.readouterr().err)
    assert scalar(db, "SELECT count(*) FROM commands") == len(sends)
    assert scalar(db, "SELECT arguments FROM commands WHERE opcode = 'set_trusted_numbers'") \
        == {"numbers": ["+447700900000", "+447700900001"]}
    assert scalar(db, "SELECT arguments FROM commands WHERE opcode = 'set_restrictions'") \
        == {"restrictions": ["camera", "usb_data"]}


def test_a_bad_flag_is_refused_with_the_argument_name_and_the_expected_form(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commands", "send", "--device", IMEIS[0], "--opcode", "wipe",
                 "--arg", "external_storage=banana", *db]) == 1
    err = capsys.readouterr().err
    assert "external_storage" in err and "true or false" in err and "banana" in err
    assert scalar(db, "SELECT count(*) FROM commands") == 0


def enrol(db: list[str], imei: str) -> None:
    key = SigningKey.generate(1).public.raw.hex()
    assert main(["devices", "enrol", imei, "--public-key", key, *db]) == 0


def test_send_all_reaches_every_enrolled_device_that_is_not_retired(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for imei in IMEIS:
        enrol(db, imei)
    assert main(["devices", "update", IMEIS[2], "--state", "retired", *db]) == 0
    capsys.readouterr()
    assert main(["commands", "send", "--all", "--opcode", "status_query",
                 "--arg", "features=battery", *db]) == 0
    assert capsys.readouterr().out.strip() == "queued status_query for 2 device(s)"
    assert scalar(db, "SELECT target FROM audit WHERE action = 'command.send'") == "fleet"


def test_a_wipe_to_a_group_or_the_fleet_is_queued_only_with_yes(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    enrol(db, IMEIS[0])
    capsys.readouterr()
    assert main(["commands", "send", "--group", "north", "--opcode", "wipe", *db]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == ("mepl: error: wipe to group north would reach 3 device(s) and "
                           "must be confirmed: give --yes to queue it")
    assert main(["commands", "send", "--all", "--opcode", "wipe", *db]) == 1
    assert "wipe to the whole fleet would reach 1 device(s)" in capsys.readouterr().err
    assert scalar(db, "SELECT count(*) FROM commands") == 0
    assert main(["commands", "send", "--group", "north", "--opcode", "wipe", "--yes",
                 *db]) == 0
    assert "queued wipe for 3 device(s)" in capsys.readouterr().out
    assert scalar(db, "SELECT count(*) FROM commands WHERE priority = 10") == 3


def test_a_command_to_a_retired_device_is_refused_with_status_1(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "update", IMEIS[1], "--state", "retired", *db]) == 0
    capsys.readouterr()
    assert main(["commands", "send", "--device", IMEIS[1], "--opcode", "lock", *db]) == 1
    assert capsys.readouterr().err.strip() == (
        f"mepl: error: device {IMEIS[1]} is retired: no command is sent to it")
    assert main(["commands", "send", "--group", "north", "--opcode", "lock", *db]) == 0
    assert capsys.readouterr().out.strip() == (
        "queued lock for 2 device(s) (1 retired member(s) left out)")
    assert scalar(db, "SELECT count(*) FROM audit WHERE action = 'command.send'") == 1


def test_cancel_prints_each_outcome_and_exits_1_when_one_is_refused(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for imei in IMEIS[:2]:
        assert main(["commands", "send", "--device", imei, "--opcode", "lock", *db]) == 0
    ids = [str(scalar(db, f"SELECT c.id FROM commands c JOIN devices d ON d.id = c.device_id "
                          f"WHERE d.imei = '{imei}'")) for imei in IMEIS[:2]]
    engine = create_engine(db[1])
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE commands SET state = 'sent' WHERE id = :i"),
                         {"i": int(ids[1])})
    finally:
        engine.dispose()
    capsys.readouterr()
    assert main(["commands", "cancel", ids[0], ids[1], "999999", *db]) == 1
    out, err = capsys.readouterr()
    assert out.strip() == f"cancelled command {ids[0]} (lock for {IMEIS[0]})"
    assert err.splitlines() == [
        f"mepl: error: command {ids[1]} cannot be cancelled: it is already sent (state sent)",
        "mepl: error: no command with id 999999"]
    assert scalar(db, f"SELECT state FROM commands WHERE id = {ids[0]}") == "cancelled"
    assert scalar(db, "SELECT count(*) FROM audit WHERE action = 'command.cancel'") == 1
    assert main(["commands", "cancel", ids[0], *db]) == 1
    assert "it is already cancelled (state cancelled)" in capsys.readouterr().err


def test_show_prints_the_history_after_the_command(
        db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commands", "send", "--group", "north", "--opcode", "lock", *db]) == 0
    command_id = scalar(db, "SELECT min(id) FROM commands")
    assert main(["commands", "cancel", str(command_id), *db]) == 0
    capsys.readouterr()
    assert main(["commands", "show", str(command_id), *db]) == 0
    out = capsys.readouterr().out
    shown, end = json.JSONDecoder().raw_decode(out)
    assert shown["state"] == "cancelled"
    history = out[end:].strip().splitlines()
    assert history[0] == f"history of command {command_id}:"
    create, cancel = (line.split() for line in history[1:])
    user = f"cli:{cli_actor()}"
    assert create[2:] == ["-", "->", "queued", "create", user, '{"group":', '"north"}']
    assert cancel[2:] == ["queued", "->", "cancelled", "cancel", user]
    assert main(["commands", "show", str(command_id), "--json", *db]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(e["from"], e["to"], e["event"]) for e in data["history"]] == [
        (None, "queued", "create"), ("queued", "cancelled", "cancel")]
