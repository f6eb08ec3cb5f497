"""mdm-console end to end against a real mutual-TLS stand-in for the proxy on loopback."""

# The fixtures come from console_fixtures (not a conftest the proxy's tests would share).
# ruff: noqa: F811

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from console_proxy.console.main import Exit, Terminal, main
from tests.console_proxy.console_fixtures import (  # noqa: F401 - fixtures
    PASSPHRASE,
    FakeApi,
    FakeProxy,
    TestPki,
    fake_api,
    pki,
    proxy,
    proxy_factory,
)


@dataclass
class Run:
    code: int
    out: str
    err: str
    asked: list[str]

    @property
    def json(self) -> object:
        return json.loads(self.out)


class Console:
    """Runs mdm-console in-process as one admin against the fake proxy."""

    def __init__(self, pki: TestPki, proxy: FakeProxy, tmp: Path) -> None:
        self.pki, self.proxy, self.tmp = pki, proxy, tmp
        self.identities: dict[tuple[str, str], Path] = {}

    def identity(self, name: str, role: str) -> Path:
        if (name, role) not in self.identities:
            self.identities[(name, role)] = self.pki.pkcs12(
                self.pki.issue(name, role, stem=f"{name}-{role}"))
        return self.identities[(name, role)]

    def env(self) -> dict[str, str]:
        return {"MDM_CONSOLE_PASSPHRASE": PASSPHRASE, "HOME": str(self.tmp),
                "XDG_CONFIG_HOME": str(self.tmp / "xdg")}

    def __call__(self, *argv: str, name: str = "alice", role: str = "admin",
                 answers: list[str] | None = None, env: dict[str, str] | None = None,
                 connection: bool = True) -> Run:
        asked: list[str] = []
        stdin = io.StringIO("".join(a + "\n" for a in answers or []))
        term = Terminal(stdin, io.StringIO(), io.StringIO(), interactive=answers is not None,
                        read_secret=lambda prompt: asked.append(prompt) or "")
        prefix = ["--proxy", self.proxy.url, "--identity", str(self.identity(name, role)),
                  "--ca", str(self.pki.ca.cert_file)] if connection else []
        original_ask = term.ask

        def ask(prompt: str) -> str | None:
            asked.append(prompt)
            return original_ask(prompt)

        term.ask = ask  # type: ignore[method-assign]
        code = main([*prefix, *argv], terminal=term, env=self.env() if env is None else env)
        err = term.stderr.getvalue()  # type: ignore[attr-defined]
        assert "Traceback" not in err
        return Run(code, term.stdout.getvalue(), err, asked)  # type: ignore[attr-defined]


def fields(out: str) -> dict[str, str]:
    """The ``name: value`` lines of a record, spacing ignored."""
    found = {}
    for line in out.splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            found[name] = value.strip()
    return found


@pytest.fixture
def console(pki: TestPki, proxy: FakeProxy, tmp_path: Path) -> Console:
    return Console(pki, proxy, tmp_path)


# -- reading ------------------------------------------------------------------------------------


def test_whoami_prints_the_admin_as_the_proxy_sees_them(console: Console) -> None:
    run = console("whoami", name="olga", role="operator")
    assert run.code == Exit.OK
    assert fields(run.out)["name"] == "olga" and fields(run.out)["role"] == "operator"
    assert fields(run.out)["deployment"] == "Test Fleet"
    data = console("whoami", "--json", name="olga", role="operator").json
    assert isinstance(data, dict) and data["role"] == "operator"
    assert len(data["fingerprint"]) == 64


def test_devices_find_by_phone_number_prints_the_device_and_its_identity_history(
        console: Console, fake_api: FakeApi) -> None:
    run = console("devices", "find", "+44 7700 900123", role="viewer")
    assert run.code == Exit.OK, run.err
    assert fields(run.out)["imei"] == "356938035643809"
    assert fields(run.out)["groups"] == "north"
    assert fields(run.out)["last seen"] == "2026-05-01T10:00:00+00:00"
    assert "  imsi: 234150888888888 -> 234150999999999" in run.out
    assert fake_api.requests[-1].path == "/v1/devices/%2B44%207700%20900123"
    data = console("devices", "find", "+44 7700 900123", "--json", role="viewer").json
    assert isinstance(data, dict) and data["imei"] == "356938035643809"


def test_an_unknown_device_says_so_and_exits_6(console: Console) -> None:
    run = console("devices", "find", "12345", role="viewer")
    assert run.code == Exit.NOT_FOUND == 6
    assert "unknown device 12345: no device has this IMEI, IMSI or phone number" in run.err
    assert "hint:" in run.err and "request id:" in run.err
    assert run.out == ""


def test_devices_list_prints_a_table_and_json(console: Console, fake_api: FakeApi) -> None:
    run = console("devices", "list", "--state", "lost", role="viewer")
    assert run.code == Exit.OK
    lines = run.out.splitlines()
    assert lines[0].split() == ["IMEI", "IMSI", "PHONE", "STATE", "GROUPS", "LAST", "SEEN"]
    assert lines[1].split() == ["490154203237518", "-", "+447700900456", "lost", "-", "-"]
    assert fake_api.requests[-1].query == {"state": ["lost"]}
    paged = console("devices", "list", "--limit", "1", role="viewer")
    assert "(more: add --after c2)" in paged.out
    data = console("devices", "list", "--json", role="viewer").json
    assert isinstance(data, dict) and [d["imei"] for d in data["items"]] == [
        "356938035643809", "490154203237518"]


def test_history_prints_decoded_messages_both_ways(console: Console) -> None:
    run = console("history", "356938035643809", role="viewer")
    assert run.code == Exit.OK
    lines = run.out.splitlines()
    assert lines[0].split() == ["AT", "DIR", "CHANNEL", "KIND", "COMMAND", "VERDICT", "SUMMARY"]
    assert lines[1].split()[:6] == ["2026-05-01T10:00:05+00:00", "<-", "smpp", "reply", "42",
                                    "verified"]
    assert lines[1].endswith("reply to lock: ok")
    assert lines[2].split()[1] == "->" and lines[2].endswith("lock emergency_dialer=yes")
    data = console("history", "356938035643809", "--json", role="viewer").json
    assert isinstance(data, dict) and data["items"][0]["verdict"] == "verified"


def test_commands_list_show_and_cancel(console: Console, fake_api: FakeApi) -> None:
    listed = console("commands", "list", "--device", "356938035643809", role="viewer")
    assert listed.out.splitlines()[1].split()[:5] == ["42", "lock", "1", "done", "1"]
    shown = console("commands", "show", "42", role="viewer")
    assert fields(shown.out)["state"] == "done"
    assert fields(shown.out)["device"] == "356938035643809"
    assert any(line.split()[1:5] == ["queued", "sent", "submitted", "dispatcher"]
               for line in shown.out.splitlines())
    assert console("commands", "show", "42", "--json", role="viewer").json["history"][2][
        "to"] == "done"  # type: ignore[index]
    cancelled = console("commands", "cancel", "42", role="operator")
    assert cancelled.code == Exit.OK and cancelled.out == "cancelled command 42\n"
    late = console("commands", "cancel", "41", role="operator")
    assert late.code == Exit.FAILED
    assert "command 41 was already sent (conflict)" in late.err
    missing = console("commands", "show", "7", role="viewer")
    assert missing.code == Exit.NOT_FOUND and "not found: command 7: no command 7" in missing.err


def test_pdus_lists_a_links_pdus_oldest_first_with_the_next_cursor(
        console: Console, fake_api: FakeApi) -> None:
    run = console("pdus", "--link", "carrier-a", "--smsc-id", "0a1b2c", role="viewer")
    assert run.code == Exit.OK, run.err
    lines = run.out.splitlines()
    assert lines[1].split()[:6] == ["2026-05-01", "09:00:00.000000", "out", "submit_sm",
                                    "12", "0x00000000"]
    assert lines[2].startswith("2026-05-01 09:00:00.012000  in ")
    assert "0A1B2C" in lines[2] and "cmd-42" in lines[2]
    assert "more: add --after 1746090000000000.7.1" in run.out
    assert fake_api.requests[-1].query == {"link": ["carrier-a"], "smsc_id": ["0a1b2c"]}
    by_message = console("pdus", "--message", "4711", "--json", role="viewer")
    assert by_message.json["items"][1]["smsc_message_id"] == "0A1B2C"  # type: ignore[index]
    assert fake_api.requests[-1].query == {"message": ["4711"]}
    typo = console("pdus", "--link", "carier-a", role="viewer")
    assert typo.out.splitlines() == [
        "no PDUs stored for link carier-a at any time; links with PDUs: carrier-a", "(none)"]
    refused = console("pdus", role="viewer")
    assert refused.code == Exit.FAILED and "give a link or a message" in refused.err


def test_alerts_and_fanout_progress(console: Console) -> None:
    alerts = console("alerts", role="viewer")
    assert alerts.out.splitlines()[1].split()[:3] == ["2026-05-01T09:00:00+00:00",
                                                      "356938035643809", "sim_swap"]
    progress = console("fanout", "9", role="viewer")
    assert fields(progress.out)["total"] == "10" and fields(progress.out)["failed"] == "1"


def test_the_audit_is_for_admins_and_a_viewer_is_told_to_ask_one(console: Console) -> None:
    run = console("audit", "--actor", "alice")
    assert run.code == Exit.OK
    assert run.out.splitlines()[1].split() == ["2026-05-01T10:00:00+00:00", "alice", "admin",
                                               "command.send", "356938035643809", "ok"]
    refused = console("audit", name="vera", role="viewer")
    assert refused.code == Exit.FORBIDDEN == 5
    assert "your role viewer may not read the audit: ask an admin" in refused.err


# -- sending ------------------------------------------------------------------------------------


def test_send_queues_a_command_for_a_device_with_its_arguments(
        console: Console, fake_api: FakeApi) -> None:
    run = console("send", "sleep", "--device", "+447700900123", "minutes=30",
                  "--valid-for", "2h", "--priority", "bulk", role="operator")
    assert run.code == Exit.OK, run.err
    assert run.out == "queued sleep for 1 device(s) (command 42)\n"
    assert run.asked == []
    assert fake_api.of("POST", "/v1/commands")[0].body == {
        "command": "sleep", "args": {"minutes": "30"}, "target": {"device": "+447700900123"},
        "priority": "bulk", "valid_for_s": 7200}


def test_a_viewer_is_told_their_role_may_not_send(console: Console) -> None:
    run = console("send", "lock", "--device", "356938035643809", name="vera", role="viewer")
    assert run.code == Exit.FORBIDDEN
    assert ("your role viewer may not send lock to device 356938035643809: ask an admin"
            in run.err)


def test_a_destructive_send_asks_for_confirmation_and_a_no_sends_nothing(
        console: Console, fake_api: FakeApi) -> None:
    run = console("send", "wipe", "--device", "356938035643809", answers=["no"])
    assert run.code == Exit.NOT_CONFIRMED == 8
    assert run.asked and "wipe erases device 356938035643809" in run.asked[0]
    assert fake_api.of("POST", "/v1/commands") == []


def test_a_destructive_send_without_a_terminal_needs_yes(
        console: Console, fake_api: FakeApi) -> None:
    run = console("send", "lock", "--all")
    assert run.code == Exit.NOT_CONFIRMED
    assert "add --yes" in run.err
    assert fake_api.of("POST", "/v1/commands") == []


def test_a_confirmed_wipe_waits_for_a_second_admin(console: Console, fake_api: FakeApi) -> None:
    run = console("send", "wipe", "--device", "356938035643809", answers=["yes"])
    assert run.code == Exit.PENDING == 7
    assert run.out.splitlines()[0] == ("pending approval ap1, a second admin must approve "
                                       "(command.wipe); it expires at "
                                       "2026-05-01T11:00:00+00:00")
    assert "mdm-console approvals approve ap1" in run.out
    assert fake_api.of("POST", "/v1/commands")[0].body["confirm"] is True


def test_yes_skips_the_question_for_a_group_lock(console: Console, fake_api: FakeApi) -> None:
    run = console("send", "lock", "--group", "north", "--yes", "--json", answers=[])
    assert run.code == Exit.PENDING
    assert run.asked == []
    data = run.json
    assert isinstance(data, dict) and data["approval"]["action"] == "command.lock.group"
    assert fake_api.of("POST", "/v1/commands")[0].body["target"] == {"group": "north"}


def test_sending_to_an_unknown_device_says_so(console: Console) -> None:
    run = console("send", "locate", "--device", "12345", role="operator")
    assert run.code == Exit.NOT_FOUND
    assert "unknown device 12345" in run.err


def test_a_malformed_argument_is_a_usage_error(console: Console, fake_api: FakeApi) -> None:
    run = console("send", "sleep", "--device", "356938035643809", "thirty", role="operator")
    assert run.code == Exit.USAGE
    assert "'thirty' is not NAME=VALUE" in run.err
    assert fake_api.requests == []


def test_approvals_list_approve_and_reject(console: Console, fake_api: FakeApi) -> None:
    console("send", "wipe", "--device", "356938035643809", "--yes")
    console("send", "lock", "--all", "--yes")
    listed = console("approvals", "list", name="bob")
    rows = [line.split()[:4] for line in listed.out.splitlines()[1:]]
    assert rows == [["ap1", "command.wipe", "pending", "alice"],
                    ["ap2", "command.lock.fleet", "pending", "alice"]]
    own = console("approvals", "approve", "ap1")
    assert own.code == Exit.FAILED
    assert "you requested this yourself: a different admin must approve it" in own.err
    assert "ask another admin" in own.err
    approved = console("approvals", "approve", "ap1", name="bob")
    assert approved.code == Exit.OK
    assert approved.out.splitlines() == ["approved approval ap1 (command.wipe): now approved",
                                         "  queued wipe for 3 device(s) (fan-out 9)"]
    rejected = console("approvals", "reject", "ap2", "--reason", "not today", name="bob")
    assert rejected.out.startswith("rejected approval ap2")
    assert fake_api.of("POST", "/v1/approvals/ap2/reject")[0].body == {"reason": "not today"}
    viewer = console("approvals", "approve", "ap2", name="vera", role="viewer")
    assert viewer.code == Exit.FORBIDDEN
    assert "your role viewer may not approve requests: ask an admin" in viewer.err


# -- watching -----------------------------------------------------------------------------------


def _feed(api: FakeApi) -> None:
    api.add_event("c1,s0", "command", {"command_id": 42, "imei": "356938035643809",
                                       "opcode": "lock", "from": "queued", "to": "sent",
                                       "event": "submitted", "at": "2026-05-01T10:00:01+00:00",
                                       "note": None})
    api.add_event("c1,s1", "alert", {"id": 1, "imei": "356938035643809", "kind": "sim_swap",
                                     "at": "2026-05-01T10:00:02+00:00",
                                     "details": {"old_imsi": "1"}})
    api.add_event("c2,s1", "command", {"command_id": 42, "imei": "356938035643809",
                                       "opcode": "lock", "from": "sent", "to": "done",
                                       "event": "replied", "at": "2026-05-01T10:00:03+00:00",
                                       "note": "ok"})


def test_watch_prints_events_and_resumes_after_the_server_drops_the_stream(
        console: Console, fake_api: FakeApi) -> None:
    _feed(fake_api)
    fake_api.drop_stream_after = 1
    run = console("watch", "--count", "3", role="viewer")
    assert run.code == Exit.OK
    assert run.out.splitlines() == [
        "2026-05-01T10:00:01+00:00  command 42  lock  device 356938035643809  queued -> sent  "
        "(submitted)",
        '2026-05-01T10:00:02+00:00  ALERT sim_swap  device 356938035643809  {"old_imsi":"1"}',
        "2026-05-01T10:00:03+00:00  command 42  lock  device 356938035643809  sent -> done  "
        "(replied)  ok"]
    assert "event stream disconnected" in run.err and "resumed after c1,s0" in run.err
    first, second = fake_api.of("GET", "/v1/events")
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "c1,s0"


def test_watch_json_prints_one_event_per_line(console: Console, fake_api: FakeApi) -> None:
    _feed(fake_api)
    run = console("watch", "--json", "--count", "2", "--last-event-id", "c0,s0", role="viewer")
    events = [json.loads(line) for line in run.out.splitlines()]
    assert [(e["id"], e["event"]) for e in events] == [("c1,s0", "command"), ("c1,s1", "alert")]
    assert fake_api.of("GET", "/v1/events")[0].headers["last-event-id"] == "c0,s0"


def test_watch_stops_cleanly_on_ctrl_c(console: Console, fake_api: FakeApi,
                                       proxy: FakeProxy) -> None:
    _feed(fake_api)
    identity = console.identity("vera", "viewer")
    env = {**os.environ, **console.env()}
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from console_proxy.console.main import main; "
         "sys.exit(main())", "--proxy", proxy.url, "--identity", str(identity), "--ca",
         str(console.pki.ca.cert_file), "watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    lines = [child.stdout.readline() for _ in range(3)]
    assert "ALERT sim_swap" in lines[1]
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0
    assert out == ""
    assert "Traceback" not in err
    assert "stopped; resume with --last-event-id c2,s1" in err


# -- connection problems ------------------------------------------------------------------------


def test_a_wrong_passphrase_exits_4_with_what_to_do(console: Console) -> None:
    env = {**console.env(), "MDM_CONSOLE_PASSPHRASE": "wrong"}
    run = console("whoami", env=env)
    assert run.code == Exit.IDENTITY == 4
    assert "wrong passphrase" in run.err and "hint: check the passphrase" in run.err


def test_the_passphrase_is_asked_on_a_terminal_and_read_from_a_file(
        console: Console, tmp_path: Path) -> None:
    env = {k: v for k, v in console.env().items() if k != "MDM_CONSOLE_PASSPHRASE"}
    asked = console("whoami", env=env, answers=[])
    assert asked.code == Exit.IDENTITY  # the scripted terminal answers "" to the prompt
    assert asked.asked and asked.asked[0].startswith("passphrase for ")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE + "\n")
    run = console("--passphrase-file", str(secret), "whoami", env=env)
    assert run.code == Exit.OK, run.err
    silent = console("whoami", env=env)
    assert silent.code == Exit.IDENTITY
    assert "MDM_CONSOLE_PASSPHRASE" in silent.err


def test_an_expired_identity_exits_4_naming_the_expiry(console: Console, pki: TestPki) -> None:
    issued = pki.issue("old", "admin", not_before=pki.now - timedelta(days=60),
                       not_after=pki.now - timedelta(days=1))
    console.identities[("old", "admin")] = pki.pkcs12(issued)
    run = console("whoami", name="old")
    assert run.code == Exit.IDENTITY
    assert "your certificate (old, admin) expired on" in run.err
    assert "issue-admin" in run.err


def test_a_revoked_identity_exits_3_naming_the_revocation(
        pki: TestPki, proxy_factory: object, tmp_path: Path) -> None:
    issued = pki.issue("mallory", "admin", stem="mallory-admin")
    pki.revoke(issued)
    console = Console(pki, proxy_factory(), tmp_path)  # type: ignore[operator]
    console.identities[("mallory", "admin")] = pki.pkcs12(issued)
    run = console("whoami", name="mallory")
    assert run.code == Exit.CONNECTION == 3
    assert "the proxy refused your certificate: it has been revoked" in run.err


def test_a_foreign_server_ca_exits_3_and_points_at_ca(console: Console, pki: TestPki) -> None:
    run = console("--ca", str(pki.foreign_ca.cert_file), "whoami")
    assert run.code == Exit.CONNECTION
    assert "is not trusted" in run.err and "hint: --ca must be the deployment's CA" in run.err


def test_an_unreachable_proxy_exits_3(console: Console) -> None:
    run = console("--proxy", "https://127.0.0.1:1", "whoami")
    assert run.code == Exit.CONNECTION
    assert "cannot reach the proxy at https://127.0.0.1:1: connection refused" in run.err


def test_a_missing_proxy_is_a_usage_error_naming_the_three_ways(console: Console) -> None:
    run = console("whoami", connection=False)
    assert run.code == Exit.USAGE
    assert "no identity given" in run.err or "no proxy address given" in run.err


def test_settings_come_from_the_config_file_and_the_environment(
        console: Console, pki: TestPki, proxy: FakeProxy, tmp_path: Path) -> None:
    config = tmp_path / "xdg" / "mdm-console" / "config.toml"
    config.parent.mkdir(parents=True)
    identity = console.identity("olga", "operator")
    config.write_text(f'proxy = "{proxy.url}"\nidentity = "{identity}"\n')
    env = {**console.env(), "MDM_CONSOLE_CA": str(pki.ca.cert_file)}
    run = console("whoami", env=env, connection=False)
    assert run.code == Exit.OK, run.err
    assert fields(run.out)["name"] == "olga"
    config.write_text('proxy = "https://x"\nsecret = "no"\n')
    bad = console("whoami", env=env, connection=False)
    assert bad.code == Exit.USAGE and "unknown setting(s)" in bad.err


def test_json_errors_are_printed_for_scripts(console: Console) -> None:
    run = console("devices", "find", "12345", "--json", role="viewer")
    assert run.code == Exit.NOT_FOUND
    data = run.json
    assert isinstance(data, dict)
    assert data["error"]["code"] == "not_found" and data["error"]["exit"] == 6
