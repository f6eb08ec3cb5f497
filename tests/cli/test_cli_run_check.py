"""``mepl run --check`` refuses a deployment that could not work, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mepl.cli.main import main
from tests.support.pg import migrated_database

SERVER = "+447700900000"
LINK = """
[smpp.links.carrier]
host = "127.0.0.1"
port = 2775
system_id = "op"
password = "pw"
"""


def run_check(tmp_path: Path, config: str, *extra: str) -> list[str]:
    path = tmp_path / "mepl.toml"
    path.write_text(config)
    return ["run", "--check", "--config", str(path), "--state-dir", str(tmp_path), *extra]


@pytest.fixture
def trusted(tmp_path: Path) -> Path:
    assert main(["keys", "init", "--state-dir", str(tmp_path), "--trusted-number", SERVER]) == 0
    return tmp_path


@pytest.mark.parametrize(("config", "message"), [
    (LINK, "dispatch.server_number: required key is missing"),
    ('[dispatch]\nserver_number = "banana"\n' + LINK, "dispatch.server_number: 'banana'"),
    ('[dispatch]\nserver_number = "+447700900999"\n' + LINK,
     "dispatch.server_number: +447700900999 is not among the trusted numbers"),
    (f'[dispatch]\nserver_number = "{SERVER}"\n', "smpp.links: no SMPP link"),
], ids=["server-number-missing", "server-number-banana", "server-number-untrusted",
        "no-send-channel"])
def test_check_refuses_a_deployment_that_cannot_work(
        trusted: Path, capsys: pytest.CaptureFixture[str], config: str, message: str) -> None:
    assert main(run_check(trusted, config)) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_check_refuses_keys_without_trusted_numbers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init", "--state-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(run_check(tmp_path, f'[dispatch]\nserver_number = "{SERVER}"\n' + LINK)) == 2
    assert "keys.trusted_numbers" in capsys.readouterr().err


def test_check_passes_a_complete_deployment(
        trusted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = migrated_database("check")
    config = f'[dispatch]\nserver_number = "{SERVER}"\n' + LINK
    assert main(run_check(trusted, config, "--database-url", url)) == 0
    assert "SMPP links: carrier" in capsys.readouterr().out
