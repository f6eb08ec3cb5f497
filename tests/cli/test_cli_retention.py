"""``mepl db partitions`` and ``mepl messages archive`` through the command line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from blobstore.messages import NewMessage, insert_message_txn
from mepl.cli.main import main
from tests.support.pg import migrated_database

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("MEPL_") or name.startswith("PG"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def url() -> str:
    return migrated_database("ret")


@pytest.fixture
def run(capfd: pytest.CaptureFixture[str], tmp_path: Path, url: str) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        capfd.readouterr()
        code = main([*argv, "--state-dir", str(tmp_path / "state"), "--database-url", url])
        out, err = capfd.readouterr()
        return code, out, err
    return run


def _old_messages(url: str, count: int) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for n in range(count):
                insert_message_txn(conn, NewMessage(
                    direction="in", channel="smpp", kind="pdu", payload=bytes([n]) * 10,
                    link="smsc", created_at=datetime(2024, 6, 1 + n, tzinfo=UTC)))
    finally:
        engine.dispose()


def test_db_partitions_lists_the_months_and_ensure_adds_more_ahead(run: Run) -> None:
    code, out, err = run("db", "partitions")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["partition", "range", "(UTC)"]
    assert lines[1].startswith("messages_part_until_")
    assert lines[-1].startswith("messages_part_default ") and " default " in lines[-1]
    assert len(lines) == 1 + 1 + 4 + 1
    code, out, err = run("db", "partitions", "--ensure", "--months-ahead", "5", "--json")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert len(listed["created"]) == 2 and len(listed["partitions"]) == 1 + 6 + 1
    code, out, err = run("db", "partitions", "--ensure", "--months-ahead", "500")
    assert code == 1 and "months ahead must be 0 to 120" in err


def test_messages_archive_dry_run_then_drop_writes_a_verified_export(
        run: Run, url: str, tmp_path: Path) -> None:
    _old_messages(url, 3)
    out_dir = tmp_path / "archive"
    code, out, err = run("messages", "archive", "--before", "2099-01", "--to", str(out_dir),
                         "--drop", "--dry-run")
    assert (code, err) == (0, "")
    assert out.startswith("would archive messages_part_until_") and "and drop it" in out
    assert not out_dir.exists()
    code, out, err = run("messages", "archive", "--before", "2099-01", "--to", str(out_dir),
                         "--drop", "--json")
    assert (code, err) == (0, "")
    [result] = json.loads(out)
    assert (result["rows"], result["dropped"]) == (3, True)
    assert Path(result["file"]).parent == out_dir and Path(result["manifest"]).is_file()
    assert oct(out_dir.stat().st_mode & 0o777) == "0o700"
    code, out, err = run("messages", "archive", "--before", "2099-01", "--to", str(out_dir))
    assert (code, err) == (0, "")
    assert out.startswith("no partition ends on or before 2099-01-01")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 0
    finally:
        engine.dispose()
    code, out, _ = run("db", "partitions")
    assert " dropped " in out.splitlines()[1] and "(3 rows)" in out.splitlines()[1]


def test_messages_archive_refuses_a_bad_date(run: Run, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run("messages", "archive", "--before", "last month", "--to", str(tmp_path))
    assert info.value.code == 2
