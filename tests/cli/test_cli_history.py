"""``mepl messages``, ``mepl audit list`` and ``mepl db shell`` against the test database."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from blobstore.pdu_batches import insert_pdu_batches_txn, pack_pdu
from mepl.cli import db as cli_db
from mepl.cli.db import connection_line
from mepl.cli.main import main
from tests.app.history_scenario import IMEI, NUMBER, History, stored_history

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("MEPL_") or name.startswith("PG"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="module")
def history() -> Iterator[History]:
    with stored_history() as made:
        yield made


@pytest.fixture
def url(history: History) -> str:
    return history.world.engine.url.render_as_string(hide_password=False)


@pytest.fixture
def run(capfd: pytest.CaptureFixture[str], tmp_path: Path, url: str) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        capfd.readouterr()
        code = main([*argv, "--state-dir", str(tmp_path / "state"), "--database-url", url])
        out, err = capfd.readouterr()
        return code, out, err
    return run


def test_messages_list_prints_one_decoded_line_per_message_newest_first(
        run: Run, history: History) -> None:
    code, out, err = run("messages", "list", "--device", "07700 900101", "--region", "GB")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"device {IMEI} (id {history.device_id}), phone {NUMBER}, state lost"
    ids = [int(line.split()[0]) for line in lines[1:]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 7
    by_id = {int(line.split()[0]): line for line in lines[1:]}
    assert by_id[history.mt].endswith(
        "out  smpp  mt      command lock_status (key 1, counter 1, part 1/1)  "
        "[receipt: delivered]")
    assert by_id[history.reply].endswith(
        "in   smpp  mo      reply to lock_status (key 1, counter 1): ok; state=unlocked  "
        "[verified]")
    assert "  mo 2/2  alert lost detail=" in by_id[history.parts[1]]
    assert by_id[history.stale].endswith("[rejected: stale_alert]")
    assert by_id[history.dlr].endswith("receipt delivered for SMSC id m1  [applied]")
    assert not any(line.startswith("more:") for line in lines)


def test_messages_list_pages_with_before(run: Run, history: History) -> None:
    code, out, _ = run("messages", "list", "--device", IMEI, "--limit", "3")
    assert code == 0
    *rows, more = out.splitlines()[1:]
    assert len(rows) == 3
    last = int(rows[-1].split()[0])
    assert more == f"more: --before {last}"
    code, out, _ = run("messages", "list", "--device", IMEI, "--before", str(last), "--json")
    data = json.loads(out)
    assert [m["id"] for m in data["messages"]] == [history.alert, history.reply,
                                                   history.dlr, history.mt]
    assert data["next_before_id"] is None
    assert data["messages"][1]["details"]["frame"]["items"] == [
        {"tag": 1, "name": "state", "value": "unlocked"}]


def test_messages_list_refuses_unknown_devices_and_bad_limits(run: Run) -> None:
    code, out, err = run("messages", "list", "--device", "+447700900999")
    assert (code, out) == (1, "")
    assert err.startswith("mepl: error: ") and "+447700900999" in err
    with pytest.raises(SystemExit) as bad:
        run("messages", "list", "--device", IMEI, "--limit", "0")
    assert bad.value.code == 2


def test_messages_show_prints_every_decoded_field_command_and_verdict(
        run: Run, history: History) -> None:
    code, out, err = run("messages", "show", str(history.reply))
    assert (code, err) == (0, "")
    assert f"device:    {IMEI} (id {history.device_id})" in out
    assert f"command:   {history.command_id} (lock_status, done)" in out
    assert "verdict:   verified" in out
    assert "  frame.type: reply" in out
    assert f"  frame.imei: {IMEI}" in out
    assert "  frame.status: ok" in out
    assert "  frame.items[0].value: unlocked" in out
    assert "stored bytes" not in out
    code, out, _ = run("messages", "show", str(history.mt))
    assert "  frame.opcode: lock_status\n  frame.args: {}\n" in out
    assert "  smsc_message_id: m1\n  receipt: delivered\n" in out


def test_messages_show_raw_of_a_forged_reply_has_the_rejection_and_the_hex_dump(
        run: Run, history: History) -> None:
    code, out, _ = run("messages", "show", str(history.forged), "--raw")
    assert code == 0
    assert "verdict:   rejected: bad_signature" in out
    assert "device:    -" in out
    assert "stored bytes (" in out
    assert "  00000000  06 05 04 40 1b 40 1a 12 " in out  # the UDH (ports), then 0x12: a reply


def test_messages_show_of_an_alert_lists_its_security_events(run: Run, history: History) -> None:
    code, out, _ = run("messages", "show", str(history.alert))
    assert code == 0
    assert "security events:" in out and "alert:sim_changed" in out
    assert "  frame.args.msisdn: +447700900101" in out
    code, out, _ = run("messages", "show", str(history.garbage), "--json")
    data = json.loads(out)
    assert data["summary"].startswith("undecodable: ")
    assert data["verdict"] == "rejected: wrong_frame_type"
    code, _, err = run("messages", "show", "999999")
    assert (code, err.strip()) == (1, "mepl: error: no message with id 999999")


def test_messages_security_lists_a_devices_events(run: Run) -> None:
    code, out, _ = run("messages", "security", "--device", NUMBER)
    assert code == 0
    assert "alert:sim_changed" in out and "stale_alert" in out
    code, out, _ = run("messages", "security", "--device", NUMBER, "--json", "--limit", "1")
    assert len(json.loads(out)["events"]) == 1


def test_audit_list_filters_by_actor_action_and_since(run: Run) -> None:
    code, out, err = run("audit", "list")
    assert (code, err) == (0, "")
    assert [line.split()[3] for line in out.splitlines()] == [
        "alice", "bob", "alice", "alice"]
    code, out, _ = run("audit", "list", "--actor", "alice", "--action", "command.send")
    (line,) = out.splitlines()
    assert line.split()[3:6] == ["alice", "cli", "command.send"]
    assert line.endswith(f'{IMEI}  {{"opcode": "unlock"}}')
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    code, out, _ = run("audit", "list", "--actor", "alice", "--since", yesterday, "--json")
    assert [r["action"] for r in json.loads(out)] == ["command.send", "device.add"]
    code, out, _ = run("audit", "list", "--actor", "nobody")
    assert (code, out) == (0, "no audit rows\n")
    with pytest.raises(SystemExit) as bad:
        run("audit", "list", "--since", "last tuesday")
    assert bad.value.code == 2


def test_connection_line_keeps_the_password_apart_and_quotes_values() -> None:
    line, password = connection_line(
        "postgresql+psycopg2://mepl:s3cr%27t@db.internal:5433/mepl?sslmode=require")
    assert line == "host=db.internal port=5433 dbname=mepl user=mepl sslmode=require"
    assert password == "s3cr't"
    line, password = connection_line("postgresql://postgres@/my%20db?host=/tmp/a%20b&port=5432")
    assert line == "host='/tmp/a b' port=5432 dbname='my db' user=postgres"
    assert password is None


def test_db_shell_print_gives_the_connection_line_without_the_password(
        capfd: pytest.CaptureFixture[str], tmp_path: Path, url: str) -> None:
    secret_url = url.replace("postgres@", "postgres:hunter22@")
    assert main(["db", "shell", "--print", "--database-url", secret_url,
                 "--state-dir", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    host = url.split("host=", 1)[1].replace("%2F", "/")
    dbname = url.split("@/", 1)[1].split("?", 1)[0]
    assert out == f"host={host} dbname={dbname} user=postgres\n"
    assert "hunter22" not in out + err
    assert "password is not printed" in err


def test_db_shell_runs_psql_with_the_arguments_after_the_double_dash(
        capfd: pytest.CaptureFixture[str], tmp_path: Path, url: str) -> None:
    code = main(["db", "shell", "--database-url", url, "--state-dir", str(tmp_path), "--",
                 "-tAc", "SELECT count(*) FROM messages WHERE kind = 'mo'"])
    out, _ = capfd.readouterr()
    assert (code, out) == (0, "7\n")
    code = main(["db", "shell", "--database-url", url, "--state-dir", str(tmp_path), "--",
                 "-tAc", "SELECT * FROM no_such_table"])
    assert code != 0  # psql's own exit status


def test_db_shell_without_psql_prints_the_line_and_exits_0(
        capfd: pytest.CaptureFixture[str], tmp_path: Path, url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_db, "find_psql", lambda embedded: None)
    assert main(["db", "shell", "--database-url", url, "--state-dir", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("host=") and "user=postgres" in out
    assert "psql is not installed" in err
    assert main(["db", "shell", "--print", "--database-url", url, "--state-dir",
                 str(tmp_path), "--", "-c", "SELECT 1"]) == 1


def test_db_shell_opens_the_embedded_database_by_default(
        capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["db", "shell", "--state-dir", str(tmp_path / "state"), "--",
                 "-tAc", "SELECT current_database() || ' as ' || current_user"])
    out, _ = capfd.readouterr()
    assert (code, out) == (0, "mepl as postgres\n")


def test_messages_show_of_a_pdu_batch_prints_one_line_per_pdu(run: Run, history: History) -> None:
    submit = bytes.fromhex("00000010" "00000004" "00000000" "00000007")
    resp = bytes.fromhex("00000017" "80000004" "00000000" "00000007") + b"abc123\0"
    at = datetime(2026, 12, 4, 12, 0, 0, 250000, tzinfo=UTC).timestamp()
    with history.world.engine.begin() as conn:
        insert_pdu_batches_txn(conn, [("out", "carrier", pack_pdu(at, "c9", submit)),
                                      ("out", "carrier", pack_pdu(at + 1, "c9", resp))])
        batch_id = conn.execute(text(
            "SELECT max(id) FROM messages WHERE kind = 'pdu_batch'")).scalar_one()
    code, out, err = run("messages", "show", str(batch_id))
    assert (code, err) == (0, "")
    assert "summary:   2 PDUs: submit_sm 1, submit_sm_resp 1" in out
    assert "PDUs (2):\n" in out
    assert ("  2026-12-04T12:00:00.250000+00:00  submit_sm  seq 7  0x00000000 ESME_ROK "
            "(no error)  ref c9  16 octets\n") in out
    assert "submit_sm_resp  seq 7  0x00000000 ESME_ROK (no error)  ref c9  smsc id abc123" in out
    code, out, _ = run("messages", "show", str(batch_id), "--json")
    assert [p["command"] for p in json.loads(out)["details"]["pdus"]] == [
        "submit_sm", "submit_sm_resp"]


def test_messages_pdus_finds_the_pdus_of_a_stored_sms_and_lists_a_links_window(
        run: Run, history: History) -> None:
    with history.world.engine.begin() as conn:
        link, at = conn.execute(text("SELECT link, created_at FROM messages WHERE id = :id"),
                                {"id": history.mt}).one()
        sent = at.timestamp() - 0.05
        submit = bytes.fromhex("00000010" "00000004" "00000000" "00000031")
        resp = bytes.fromhex("00000013" "80000004" "00000000" "00000031") + b"M1\0"
        other = bytes.fromhex("00000013" "80000004" "00000000" "00000032") + b"m2\0"
        ref = f"cmd-{history.command_id}"
        insert_pdu_batches_txn(conn, [("out", link, pack_pdu(sent, ref, submit)),
                                      ("in", link, pack_pdu(sent + 0.01, ref, resp)),
                                      ("in", link, pack_pdu(sent + 0.02, "cmd-0", other))])
        stored = conn.execute(text("SELECT now()")).scalar_one()
    code, out, err = run("messages", "pdus", "--message", str(history.mt))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"link {link}, ") and lines[0].endswith(
        "2 PDUs from 2 stored rows")
    assert "  out  submit_sm  seq 49  0x00000000 ESME_ROK (no error)  ref " + ref in lines[1]
    assert f"ref {ref}  smsc id M1  19 octets  [message " in lines[2]
    # The scenario's clock is not the database's: start before both.
    since = (min(at, stored) - timedelta(seconds=1)).isoformat()
    code, out, _ = run("messages", "pdus", "--link", link, "--since", since, "--limit", "2")
    assert code == 0 and out.splitlines()[-1].startswith("more: --after ")
    after = out.splitlines()[-1].split()[-1]
    code, out, _ = run("messages", "pdus", "--link", link, "--since", since, "--after", after,
                       "--json")
    data = json.loads(out)
    assert [(p["command"], p["smsc_message_id"]) for p in data["items"]] == [
        ("submit_sm_resp", "m2")]
    assert data["items"][0]["hex"] == other.hex() and data["next"] is None


def test_messages_pdus_refuses_missing_links_bad_cursors_and_non_sms_rows(
        run: Run, history: History) -> None:
    code, _, err = run("messages", "pdus")
    assert code == 2 and "give a link or a message (--link)" in err
    with pytest.raises(SystemExit) as bad:
        run("messages", "pdus", "--link", "x", "--after", "12")
    assert bad.value.code == 2
    code, _, err = run("messages", "pdus", "--link", "x", "--since", "2026-12-04T10:00",
                       "--until", "2026-12-04T09:00")
    assert code == 2 and "the window is empty: until must be after since (--until)" in err
    code, _, err = run("messages", "pdus", "--message", "999999999")
    assert code == 1 and "no message with id 999999999" in err
    code, out, _ = run("messages", "pdus", "--link", "nosuch")
    assert code == 0 and "no PDUs stored for link nosuch at any time; links with PDUs: " in out
