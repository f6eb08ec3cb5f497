"""Private key files: passphrase policy, KDF strength, warnings (issue 8, item 12).

The KDF parameters of new files are read back with ``openssl asn1parse``, not
with our own parser, and the files are opened with ``openssl pkey`` to prove
they are standard PKCS#8.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from mepl.cli.main import main
from signing import pkcs8
from signing.errors import KeyFileError
from signing.keyfiles import read_private_key, write_private_key
from signing.keys import SigningKey, check_passphrase
from signing.keystore import ServerKeyStore

STRONG = b"correct horse battery"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@contextmanager
def key_warnings() -> Iterator[list[str]]:
    """Collect the text of warnings logged by :mod:`signing.keyfiles`."""
    seen: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "signing.keyfiles" and event.get(
                "log_level") is LogLevel.warn:
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observer)


def _write_old_format(path: Path, key: SigningKey) -> None:
    """A key file as earlier releases wrote it: 2,048 iterations, passphrase "x"."""
    path.write_bytes(key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"x")))


def _asn1(path: Path) -> str:
    result = subprocess.run(["openssl", "asn1parse", "-i", "-in", str(path)],
                            capture_output=True, text=True, check=True)
    return result.stdout


@pytest.mark.parametrize("weak", [b"Z", b"Sh0rt-pass!", b"aaaaaaaaaaaaaaaa",
                                  b"correcthorsebattery", b"123456789012345",
                                  b"CORRECTHORSEBATTERY", b"!!!!!!!!!!!!!!!!"])
def test_weak_passphrase_is_refused_and_no_key_file_is_written(tmp_path: Path,
                                                               weak: bytes) -> None:
    path = tmp_path / "k.pem"
    with pytest.raises(KeyFileError, match="at least 12 characters") as info:
        write_private_key(path, SigningKey.generate(1), weak)
    assert weak.decode() not in str(info.value)
    assert not path.exists()


@pytest.mark.parametrize("good", [STRONG, b"Correcthorsebattery", b"zebra-2026-quartz",
                                  "pässwörter123".encode()])
def test_passphrases_of_twelve_characters_and_two_classes_are_accepted(good: bytes) -> None:
    check_passphrase(good)


def test_key_store_refuses_a_weak_passphrase_before_creating_anything(tmp_path: Path) -> None:
    store = ServerKeyStore(tmp_path / "keys")
    with pytest.raises(KeyFileError, match="at least 12 characters"):
        store.init(now=NOW, passphrase=b"s3cret")
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())


def test_new_key_file_is_pbes2_pbkdf2_sha256_with_at_least_600k_iterations(
        tmp_path: Path) -> None:
    key = SigningKey.generate(5)
    path = tmp_path / "k.pem"
    write_private_key(path, key, STRONG)
    parsed = _asn1(path)
    for name in ("PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"):
        assert f":{name}" in parsed, parsed
    (iterations,) = re.findall(r"prim:\s+INTEGER\s+:([0-9A-F]+)", parsed)
    assert int(iterations, 16) >= 600_000
    salts = re.findall(r"OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)", parsed)
    assert len(salts[0]) == 32 and len(salts[1]) == 32, "16-octet salt and IV"
    secret = tmp_path / "pass"
    secret.write_bytes(STRONG)
    opened = subprocess.run(["openssl", "pkey", "-in", str(path), "-passin", f"file:{secret}",
                             "-pubout"], capture_output=True, text=True, check=False)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.encode() == key.public.to_pem()
    with key_warnings() as warnings:
        assert read_private_key(path, 5, STRONG).public == key.public
    assert warnings == []
    with pytest.raises(KeyFileError):
        read_private_key(path, 5, b"correct horse batterY")


def test_two_files_with_the_same_passphrase_get_different_salts(tmp_path: Path) -> None:
    key = SigningKey.generate(1)
    write_private_key(tmp_path / "a.pem", key, STRONG)
    write_private_key(tmp_path / "b.pem", key, STRONG)
    assert (tmp_path / "a.pem").read_bytes() != (tmp_path / "b.pem").read_bytes()


def test_old_2048_iteration_file_with_a_short_passphrase_still_loads_with_a_warning(
        tmp_path: Path) -> None:
    key = SigningKey.generate(2)
    path = tmp_path / "server-0002.key.pem"
    _write_old_format(path, key)
    assert re.search(r"INTEGER\s+:0800\b", _asn1(path)), "the old format: 2048 iterations"
    with key_warnings() as warnings:
        assert read_private_key(path, 2, b"x").public == key.public
    (text,) = warnings
    assert str(path) in text
    text = text.replace(str(path), "")
    assert "2048" in text and "re-encrypt" in text


def test_file_re_encrypted_with_the_documented_openssl_command_loads_quietly(
        tmp_path: Path) -> None:
    key = SigningKey.generate(2)
    old = tmp_path / "old.pem"
    _write_old_format(old, key)
    secret = tmp_path / "pass"
    secret.write_bytes(STRONG)
    new = tmp_path / "new.pem"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(old), "-passin", "pass:x",
                    "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-iter", "600000",
                    "-passout", f"file:{secret}", "-out", str(new)], check=True)
    with key_warnings() as warnings:
        assert read_private_key(new, 2, STRONG).public == key.public
    assert warnings == []


def test_unencrypted_key_warns_when_written_and_when_read(tmp_path: Path) -> None:
    key = SigningKey.generate(3)
    path = tmp_path / "k.pem"
    with key_warnings() as warnings:
        write_private_key(path, key, None)
        read_private_key(path, 3, None)
    assert len(warnings) == 2
    for text in warnings:
        assert str(path) in text and "unencrypted" in text.replace(str(path), "")
        assert "PRIVATE KEY" not in text


def test_cli_prints_key_warnings_on_stderr_and_refuses_a_weak_passphrase(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEPL_KEY_PASSPHRASE", "MEPL_CONFIG", "MEPL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert main(["keys", "init", "--state-dir", str(tmp_path / "plain")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mepl: warning: ")]
    assert len(lines) == 2 and all("unencrypted" in line for line in lines), err
    monkeypatch.setenv("MEPL_KEY_PASSPHRASE", "hunter2")
    assert main(["keys", "init", "--state-dir", str(tmp_path / "weak")]) == 2
    out, err = capsys.readouterr()
    assert "at least 12 characters" in err and "hunter2" not in out + err
    assert not list((tmp_path / "weak").glob("**/*.key.pem"))


@pytest.mark.parametrize(("options", "weak"), [
    (["-scrypt"], False),
    (["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-iter", "100000"], True),
    (["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA1", "-iter", "600000"], True),
    (["-v1", "PBE-SHA1-3DES"], True),
])
def test_key_derivation_of_files_written_by_openssl_is_judged(tmp_path: Path, options: list[str],
                                                             weak: bool) -> None:
    plain = tmp_path / "plain.pem"
    plain.write_bytes(SigningKey.generate(1).to_pem(None))
    out = tmp_path / "enc.pem"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(plain), *options,
                    "-passout", "pass:correct horse battery", "-out", str(out)], check=True,
                   capture_output=True)
    assert pkcs8.kdf_of(out.read_bytes()).weak is weak
    assert pkcs8.kdf_of(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n").weak
