"""End to end through ``mepl.cli.main.main``: keys init -> export-provisioning ->
handset init -> keys seal -> handset receive -> (server) verify-reply, plus
duplicates, rejections, alerts, rotation and encrypted keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mepl.cli.main import main

IMEI = "490154203237518"
NUMBER = "+447700900123"
NOW = "2026-03-01T12:00:00+00:00"


class Cli:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.server = tmp_path / "server"
        self.handset = tmp_path / "handset"
        self.tmp = tmp_path
        self.capsys = capsys
        self.transcript: list[str] = []
        self.warnings: list[str] = []
        self.counter = 0

    def run(self, *argv: str) -> tuple[int, str, str]:
        """Run ``mepl argv``; stderr without its key-file warnings (kept in ``warnings``)."""
        status = main(list(argv))
        out, err = self.capsys.readouterr()
        self.transcript += [out, err]
        lines = err.strip().splitlines()
        self.warnings += [line for line in lines if line.startswith("mepl: warning: ")]
        err = "\n".join(line for line in lines if not line.startswith("mepl: warning: "))
        return status, out.strip(), err.strip()

    def ok(self, *argv: str) -> str:
        status, out, err = self.run(*argv)
        assert status == 0, err
        return out

    def keys(self, action: str, *argv: str) -> str:
        return self.ok("keys", action, "--state-dir", str(self.server), *argv)

    def phone(self, action: str, *argv: str) -> tuple[int, str, str]:
        return self.run("handset", action, "--state", str(self.handset), *argv)

    def provision(self, fmt: str = "json") -> str:
        self.keys("init", "--trusted-number", NUMBER)
        bundle = self.tmp / f"bundle.{fmt}"
        self.keys("export-provisioning", "--imei", IMEI, "--format", fmt, "--output",
                  str(bundle))
        status, device_key, err = self.phone("init", "--bundle", str(bundle), "--imei", IMEI)
        assert status == 0, err
        return device_key

    def seal(self, opcode: str, *argv: str) -> str:
        """Seal under this test's own counter (the server's counters are in its database)."""
        self.counter += 1
        return self.keys("seal", "--imei", IMEI, "--opcode", opcode, "--now", NOW,
                         "--counter", str(self.counter), *argv)

    def receive(self, frame: str, sender: str = NUMBER) -> tuple[int, str, str]:
        return self.phone("receive", "--from", sender, "--hex", frame, "--now", NOW)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("MEPL_KEY_PASSPHRASE", "MEPL_CONFIG", "MEPL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return Cli(tmp_path, capsys)


def test_cli_round_trip_from_key_init_to_verified_reply(cli: Cli) -> None:
    device_key = cli.provision()
    assert len(bytes.fromhex(device_key)) == 32
    frame = cli.seal("lock", "--args", '{"emergency_dialer": false}')
    status, out, err = cli.receive(frame)
    assert status == 0, err
    result = json.loads(out)
    assert result["command"] == {"opcode": "lock", "args": {"emergency_dialer": False}}
    assert result["duplicate"] is False
    verified = json.loads(cli.keys("verify-reply", "--imei", IMEI, "--device-key", device_key,
                                   "--command", frame, "--reply", result["reply"]))
    assert verified["status"] == "ok" and verified["command_counter"] == result["counter"]
    status, out, _ = cli.receive(frame)
    assert status == 0 and json.loads(out)["duplicate"] is True
    assert json.loads(out)["reply"] == result["reply"]
    state = json.loads(cli.phone("show")[1])
    assert state["device"]["locked"] is True and state["windows"]["1"]["high"] == 1


def test_cli_rejections_exit_1_with_the_reason_and_no_reply(cli: Cli) -> None:
    device_key = cli.provision()
    frame = cli.seal("wake")
    tampered = frame[:-2] + ("00" if frame[-2:] != "00" else "01")
    assert cli.receive(tampered) == (1, "", "mepl: rejected: bad_signature")
    assert cli.receive(frame, sender="+447700900999") == (1, "", "mepl: rejected: untrusted_sender")
    status, out, _ = cli.receive(frame)
    assert status == 0
    status, _, err = cli.run("keys", "verify-reply", "--state-dir", str(cli.server), "--imei",
                             IMEI, "--device-key", device_key, "--command", cli.seal("wake"),
                             "--reply", json.loads(out)["reply"])
    assert status == 1 and "wrong_command" in err
    state = json.loads(cli.phone("show")[1])
    assert state["rejected"] == {"bad_signature": 1, "untrusted_sender": 1}
    device_key_file = str(cli.handset / "device.key.pem")
    assert any(device_key_file in w and "unencrypted" in w for w in cli.warnings)


def test_cli_alert_from_handset_verifies_on_the_server(cli: Cli) -> None:
    device_key = cli.provision(fmt="qr")
    status, alert, err = cli.phone("alert", "sim-changed", "--imsi", "234150999999999",
                                   "--now", NOW)
    assert status == 0, err
    opened = json.loads(cli.keys("verify-alert", "--imei", IMEI, "--device-key", device_key,
                                 "--alert", alert))
    assert opened["alert"] == "sim_changed" and opened["counter"] == 1
    assert opened["args"] == {"imsi": "234150999999999"}
    for kind, extra in (("invalid-sim", ()), ("provisioning-defect", ("--defect", "2")),
                        ("left-territory", ("--fence-id", "1", "--lat-e7", "1", "--lon-e7", "2")),
                        ("lost", ())):
        assert cli.phone("alert", kind, *extra)[0] == 0
    assert json.loads(cli.phone("show")[1])["alert_counter"] == 5


def test_cli_sim_changed_alert_signs_the_new_number_and_the_handset_keeps_it(cli: Cli) -> None:
    device_key = cli.provision()
    status, alert, err = cli.phone("alert", "sim-changed", "--imsi", "234150999999999",
                                   "--msisdn", "+447700900456", "--now", NOW)
    assert status == 0, err
    opened = json.loads(cli.keys("verify-alert", "--imei", IMEI, "--device-key", device_key,
                                 "--alert", alert))
    assert opened["args"] == {"imsi": "234150999999999", "msisdn": "+447700900456"}
    assert json.loads(cli.phone("show")[1])["msisdn"] == "+447700900456"
    status, out, err = cli.phone("alert", "sim-changed", "--imsi", "234150999999999",
                                 "--msisdn", "447700900456")
    assert (status, out) == (2, "") and "msisdn" in err and "E.164" in err


def test_cli_handset_init_records_its_own_number(cli: Cli) -> None:
    cli.keys("init", "--trusted-number", NUMBER)
    bundle = cli.tmp / "bundle.json"
    cli.keys("export-provisioning", "--imei", IMEI, "--output", str(bundle))
    status, _, err = cli.phone("init", "--bundle", str(bundle), "--imei", IMEI,
                               "--msisdn", "+447700900789")
    assert status == 0, err
    assert json.loads(cli.phone("show")[1])["msisdn"] == "+447700900789"


def test_cli_rotation_delivers_the_next_key_and_retires_the_old(cli: Cli) -> None:
    cli.provision()
    assert json.loads(cli.keys("rotate", "--no-queue"))["key_id"] == 2
    rotate = cli.seal("rotate_key")
    status, out, err = cli.receive(rotate)
    assert status == 0, err
    assert json.loads(out)["key_id"] == 1
    assert json.loads(out)["command"]["args"]["next_key_id"] == 2
    status, out, _ = cli.receive(cli.seal("lock_status"))
    assert status == 0 and json.loads(out)["key_id"] == 2
    status, _, err = cli.receive(cli.seal("lock_status", "--key-id", "1"))
    assert (status, err) == (1, "mepl: rejected: unknown_key")


def test_cli_encrypts_keys_with_the_passphrase_and_never_prints_secrets(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEPL_KEY_PASSPHRASE", "pass-phrase-123")
    cli.provision()
    key_file = cli.server / "keys" / "server-0001.key.pem"
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in (cli.handset / "device.key.pem").read_bytes()
    assert cli.receive(cli.seal("unlock"))[0] == 0
    cli.keys("show")
    monkeypatch.delenv("MEPL_KEY_PASSPHRASE")
    status, _, err = cli.run("keys", "seal", "--state-dir", str(cli.server), "--imei", IMEI,
                             "--opcode", "wake", "--counter", "9")
    assert status == 2 and "encrypted" in err
    everything = "\n".join(cli.transcript)
    assert "PRIVATE KEY" not in everything and "pass-phrase-123" not in everything


def test_cli_refuses_a_bundle_for_another_imei(cli: Cli) -> None:
    cli.keys("init")
    bundle = cli.tmp / "bundle.json"
    cli.keys("export-provisioning", "--imei", IMEI, "--output", str(bundle))
    status, _, err = cli.phone("init", "--bundle", str(bundle), "--imei", "356938035643809")
    assert status == 2 and "not 356938035643809" in err


def test_cli_text_armoured_frame_is_received_like_the_binary_one(cli: Cli) -> None:
    cli.provision()
    text = cli.seal("notify", "--args", '{"text": "Return to depot"}', "--armour")
    assert text.startswith("M1:") and len(text) <= 160
    status, out, err = cli.phone("receive", "--from", NUMBER, "--text", text, "--now", NOW)
    assert status == 0, err
    assert json.loads(out)["command"]["args"] == {"text": "Return to depot", "encoding": "gsm7"}


def test_cli_seal_with_bad_arguments_fails_with_a_clear_message(cli: Cli) -> None:
    cli.provision()
    status, out, err = cli.run("keys", "seal", "--state-dir", str(cli.server), "--imei", IMEI,
                               "--opcode", "sleep", "--args", '{"minutes": -1}', "--counter", "1")
    assert (status, out) == (2, "")
    assert "minutes" in err and "0..65535" in err


def test_cli_seal_needs_an_explicit_counter_and_keeps_no_counter_file(cli: Cli) -> None:
    cli.provision()
    before = sorted(p.name for p in (cli.server / "keys").iterdir())
    status, out, err = cli.run("keys", "seal", "--state-dir", str(cli.server), "--imei", IMEI,
                               "--opcode", "wake")
    assert (status, out) == (2, "")
    assert "--counter" in err and "database" in err and "testing" in err
    frame = cli.seal("wake", "--counter", "41")
    status, out, err = cli.receive(frame)
    assert status == 0, err
    assert json.loads(out)["counter"] == 41
    assert cli.receive(cli.seal("wake", "--counter", "41"))[0] == 0, "same counter, same frame"
    assert sorted(p.name for p in (cli.server / "keys").iterdir()) == before
    status, _, err = cli.run("keys", "seal", "--state-dir", str(cli.server), "--imei", IMEI,
                             "--opcode", "wake", "--counter", "0")
    assert status == 2 and "counter" in err


def test_cli_keys_seal_help_says_the_counter_is_required(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["keys", "seal", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--counter N" in text and "required" in text and "database" in text


def test_cli_keys_dir_and_passphrase_file_come_from_the_signing_config(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = cli.tmp / "passphrase"
    secret.write_text("from a config file\n")
    monkeypatch.setenv("MEPL_SIGNING__KEYS_DIR", str(cli.tmp / "elsewhere"))
    monkeypatch.setenv("MEPL_SIGNING__PASSPHRASE_FILE", str(secret))
    cli.keys("init")
    key_file = cli.tmp / "elsewhere" / "server-0001.key.pem"
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    assert not (cli.server / "keys").exists()
    assert len(bytes.fromhex(cli.seal("wake"))) == 78
