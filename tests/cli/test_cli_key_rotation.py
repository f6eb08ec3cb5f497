"""``mepl keys rotate|show`` and ``mepl devices enrol`` pinning, against the real PostgreSQL."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from blobstore.devices import device_by_imei_txn, set_device_key_txn
from mepl.cli.db import cli_actor
from mepl.cli.main import main
from signing.keys import SigningKey, device_key_id
from tests.support.pg import migrated_database

IMEIS = ("490154203237518", "356938035643809", "353918058450939")


@pytest.fixture(autouse=True)
def _no_mepl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MEPL_")]:
        monkeypatch.delenv(name)


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], state: Path,
                 url: str | None) -> None:
        self.capsys = capsys
        self.url = url
        self.options = ["--state-dir", str(state), "--region", "GB"]
        if url is not None:
            self.options += ["--database-url", url]

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, *self.options])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert code == 0, err
        return out

    def sql(self, query: str, **params: Any) -> Any:
        assert self.url is not None
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                return conn.execute(text(query), params).scalar()
        finally:
            engine.dispose()

    def pins(self) -> dict[str, int]:
        assert self.url is not None
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT d.imei, k.key_id FROM device_server_keys k "
                    "JOIN devices d ON d.id = k.device_id"))
                return {str(imei): int(key) for imei, key in rows}
        finally:
            engine.dispose()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    cli = Cli(capsys, tmp_path / "state", migrated_database("keys"))
    cli.ok("keys", "init", "--trusted-number", "+447700900000")
    for i, imei in enumerate(IMEIS):
        cli.ok("devices", "add", "--imei", imei, "--phone", f"0770090010{i}")
    return cli


def public_key() -> str:
    return SigningKey.generate(1).public.raw.hex()


def test_enrol_pins_the_device_to_the_active_server_key(cli: Cli) -> None:
    out = cli.ok("devices", "enrol", IMEIS[0], "--public-key", public_key())
    assert "server key 1" in out
    assert cli.pins() == {IMEIS[0]: 1}
    assert cli.sql("SELECT (details->>'server_key_id')::int FROM audit "
                   "WHERE action = 'device.enrol'") == 1


def test_enrolling_the_same_handset_again_keeps_its_key_and_a_new_handset_gets_the_active(
        cli: Cli) -> None:
    key = public_key()
    cli.ok("devices", "enrol", IMEIS[0], "--public-key", key)
    cli.ok("keys", "rotate", "--no-queue")
    cli.ok("devices", "enrol", IMEIS[0], "--public-key", key)
    assert cli.pins() == {IMEIS[0]: 1}  # it has not acknowledged key 2: stays on 1
    cli.ok("devices", "enrol", IMEIS[0], "--public-key", public_key())  # re-provisioned
    assert cli.pins() == {IMEIS[0]: 2}
    cli.ok("devices", "enrol", IMEIS[1], "--public-key", public_key(), "--server-key", "1")
    assert cli.pins()[IMEIS[1]] == 1
    code, _, err = cli.run("devices", "enrol", IMEIS[2], "--public-key", public_key(),
                           "--server-key", "9")
    assert code == 1 and "no server key with id 9" in err
    code, _, err = cli.run("devices", "enrol", IMEIS[2], "--public-key", public_key(),
                           "--server-key", "0")
    assert code == 1 and "--server-key: server key ids are 1..65535" in err
    assert IMEIS[2] not in cli.pins()


def test_rotate_queues_rotate_key_for_every_enrolled_device_and_show_counts_them(
        cli: Cli) -> None:
    cli.ok("devices", "enrol", IMEIS[0], "--public-key", public_key())
    cli.ok("devices", "enrol", IMEIS[1], "--public-key", public_key())
    legacy = SigningKey.generate(1).public.raw  # enrolled before enrolment pinned
    engine = create_engine(cli.url or "")
    try:
        with engine.begin() as conn:
            record = device_by_imei_txn(conn, IMEIS[2])
            assert record is not None
            set_device_key_txn(conn, record.id, device_key_id(legacy), legacy)
    finally:
        engine.dispose()

    shown = json.loads(cli.ok("keys", "show"))
    assert shown["devices_per_key"] == {"1": 2}
    assert shown["devices_unpinned"] == 1

    started = datetime.now(UTC)
    rotated = json.loads(cli.ok("keys", "rotate"))
    assert rotated["key_id"] == 2 and rotated["previous_key_id"] == 1
    assert (rotated["pinned"], rotated["queued"]) == (1, 3)
    not_after = datetime.fromisoformat(rotated["not_after"])
    assert started + timedelta(days=7) <= not_after <= datetime.now(UTC) + timedelta(days=7)

    shown = json.loads(cli.ok("keys", "show"))
    assert shown["active_key_id"] == 2
    assert shown["devices_per_key"] == {"1": 3}  # until each handset answers
    assert shown["devices_unpinned"] == 0
    new_key = next(k["public_key"] for k in shown["keys"] if k["key_id"] == 2)
    requested_by = f"keys rotate ({cli_actor()})"
    assert cli.sql(
        "SELECT count(*) FROM commands WHERE opcode = 'rotate_key' AND priority = 10 "
        "AND state = 'queued' AND requested_by = :by AND (arguments->>'next_key_id')::int = 2 "
        "AND arguments->>'next_public_key' = :key", by=requested_by, key=new_key) == 3
    assert cli.sql("SELECT count(*) FROM audit WHERE action = 'keys.rotate' "
                   "AND target = 'server-key:2'") == 1


def test_rotate_takes_the_validity_of_the_commands_in_days(cli: Cli) -> None:
    cli.ok("devices", "enrol", IMEIS[0], "--public-key", public_key())
    rotated = json.loads(cli.ok("keys", "rotate", "--valid-days", "2"))
    not_after = datetime.fromisoformat(rotated["not_after"])
    assert timedelta(days=2) - timedelta(minutes=5) < not_after - datetime.now(UTC) \
        <= timedelta(days=2)
    with pytest.raises(SystemExit) as exited:  # argparse refuses it
        cli.run("keys", "rotate", "--valid-days", "0")
    assert exited.value.code == 2
    assert "--valid-days" in cli.capsys.readouterr().err
    assert json.loads(cli.ok("keys", "show"))["active_key_id"] == 2


@pytest.fixture
def offline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    cli = Cli(capsys, tmp_path / "state", None)
    cli.ok("keys", "init")
    return cli


def test_rotate_without_a_database_refuses_unless_told_not_to_queue(offline: Cli) -> None:
    code, out, err = offline.run("keys", "rotate")
    assert code == 2 and out == ""
    assert "no database is configured" in err and "--no-queue" in err
    assert json.loads(offline.ok("keys", "show"))["active_key_id"] == 1  # no key made
    rotated = json.loads(offline.ok("keys", "rotate", "--no-queue"))
    assert (rotated["key_id"], rotated["queued"]) == (2, None)


def test_show_without_a_database_prints_the_index_and_says_so(offline: Cli) -> None:
    code, out, err = offline.run("keys", "show")
    assert code == 0
    shown = json.loads(out)
    assert shown["active_key_id"] == 1 and shown["devices_per_key"] is None
    assert "devices per key: database not configured" in err


def test_enrol_without_a_key_store_here_records_no_server_key(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = Cli(capsys, tmp_path / "state", migrated_database("keys"))
    cli.ok("devices", "add", "--imei", IMEIS[0], "--phone", "07700900100")
    out = cli.ok("devices", "enrol", IMEIS[0], "--public-key", public_key())
    assert "server key not recorded" in out
    assert cli.pins() == {}
