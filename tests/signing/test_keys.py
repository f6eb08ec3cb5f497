"""Key files, the server key store, certificates and provisioning bundles."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from signing.certs import cert_to_pem, issue_signing_cert, make_ca, server_id_of
from signing.errors import BundleError, KeyFileError
from signing.keyfiles import passphrase_from, read_private_key, write_private_key
from signing.keys import SigningKey, device_key_id
from signing.keystore import ServerKeyStore
from signing.provisioning import QR_PREFIX, ProvisioningBundle, parse_bundle

NOW = datetime(2026, 1, 1, tzinfo=UTC)
IMEI = "490154203237518"


def test_private_key_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k.pem", SigningKey.generate(1), None)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    with pytest.raises(KeyFileError):
        write_private_key(tmp_path / "k.pem", SigningKey.generate(1), None)


def test_unencrypted_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = SigningKey.generate(3)
    path = tmp_path / "k.pem"
    write_private_key(path, key, None)
    assert read_private_key(path, 3, None).public == key.public
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="readable by group or others"):
        read_private_key(path, 3, None)


def test_encrypted_key_needs_the_right_passphrase(tmp_path: Path) -> None:
    key = SigningKey.generate(4)
    path = tmp_path / "k.pem"
    write_private_key(path, key, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    path.chmod(0o644)
    assert read_private_key(path, 4, b"correct horse").public == key.public
    for wrong in (None, b"wrong"):
        with pytest.raises(KeyFileError):
            read_private_key(path, 4, wrong)


def test_passphrase_comes_from_the_file_then_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("from-file\nignored\n")
    env = {"MEPL_KEY_PASSPHRASE": "from-env"}
    assert passphrase_from(env, secret) == b"from-file"
    assert passphrase_from(env) == b"from-env"
    assert passphrase_from({}) is None


def test_store_init_rotate_and_bundle(tmp_path: Path) -> None:
    store = ServerKeyStore(tmp_path / "keys")
    index = store.init(now=NOW, passphrase=None, trusted_numbers=("+447700900123",))
    assert index.active_key_id == 1 and index.server_id == server_id_of(store.ca_cert())
    for name in ("ca.key.pem", "server-0001.key.pem"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    with pytest.raises(KeyFileError):
        store.init(now=NOW, passphrase=None)
    second = store.rotate(now=NOW, passphrase=None)
    assert second.key_id == 2 and store.load().active_key_id == 2
    assert store.signing_key(1, None).public == store.load().key(1)
    bundle = store.bundle(IMEI)
    assert [k.key_id for k in bundle.keys] == [1, 2]
    bundle.verify(NOW)
    assert parse_bundle(json.dumps(bundle.to_json())) == bundle


def test_encrypted_store_refuses_to_load_without_passphrase(tmp_path: Path) -> None:
    store = ServerKeyStore(tmp_path / "keys")
    store.init(now=NOW, passphrase=b"s3cret passphrase")
    assert b"ENCRYPTED" in (tmp_path / "keys" / "server-0001.key.pem").read_bytes()
    with pytest.raises(KeyFileError):
        store.signing_key(None, None)
    assert store.signing_key(None, b"s3cret passphrase").key_id == 1


def test_store_accepts_an_external_ca(tmp_path: Path) -> None:
    ca_key = SigningKey.generate(1)
    ca = make_ca(ca_key, "Corp CA", NOW)
    write_private_key(tmp_path / "ca.key", ca_key, None)
    (tmp_path / "ca.pem").write_text(cert_to_pem(ca))
    store = ServerKeyStore(tmp_path / "keys")
    index = store.init(now=NOW, passphrase=None, ca_cert_path=tmp_path / "ca.pem",
                       ca_key_path=tmp_path / "ca.key")
    assert index.server_id == server_id_of(ca)
    store.bundle(IMEI).verify(NOW)
    assert not (tmp_path / "keys" / "ca.key.pem").exists()


def test_bundle_with_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    store = ServerKeyStore(tmp_path / "keys")
    store.init(now=NOW, passphrase=None)
    bundle = store.bundle(IMEI)
    rogue_key = SigningKey.generate(1)
    rogue_ca = make_ca(rogue_key, "MEPL deployment CA", NOW)
    rogue = cert_to_pem(issue_signing_cert(rogue_key, rogue_ca, bundle.keys[0], NOW))
    tampered = ProvisioningBundle(bundle.server_id, IMEI, bundle.keys, (),
                                  bundle.ca_cert_pem, {1: rogue})
    with pytest.raises(BundleError, match="bad CA signature"):
        tampered.verify(NOW)
    other_key = SigningKey.generate(1).public
    swapped = ProvisioningBundle(bundle.server_id, IMEI, (other_key,), (),
                                 bundle.ca_cert_pem, bundle.key_certs_pem)
    with pytest.raises(BundleError, match="another key"):
        swapped.verify(NOW)
    wrong_id = ProvisioningBundle(bytes(32), IMEI, bundle.keys, (), bundle.ca_cert_pem,
                                  bundle.key_certs_pem)
    with pytest.raises(BundleError, match="server_id"):
        wrong_id.verify(NOW)


def test_qr_bundle_round_trips_in_qr_alphanumeric_characters(tmp_path: Path) -> None:
    store = ServerKeyStore(tmp_path / "keys")
    store.init(now=NOW, passphrase=None, trusted_numbers=("+447700900123", "+12025550123"))
    bundle = store.bundle(IMEI)
    text = bundle.to_qr()
    assert text.startswith(QR_PREFIX)
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    back = parse_bundle(text)
    assert (back.server_id, back.imei, back.keys, back.trusted_numbers) == (
        bundle.server_id, IMEI, bundle.keys, bundle.trusted_numbers)
    with pytest.raises(BundleError):
        parse_bundle(text[:-10])


def test_device_key_id_is_derived_from_the_public_key() -> None:
    key = SigningKey.generate(1)
    assert 1 <= device_key_id(key.public.raw) <= 0xFFFF
    assert device_key_id(key.public.raw) == device_key_id(key.public.raw)


def test_signing_config_is_checked_and_names_the_key() -> None:
    from mepl.config import ConfigError, build
    from signing.config import SigningConfig

    config = build(SigningConfig, {"keys_dir": "/srv/keys", "command_validity_minutes": "90"},
                   "signing")
    assert config.keys_path(Path("/state")) == Path("/srv/keys")
    assert SigningConfig().keys_path(Path("/state")) == Path("/state/keys")
    with pytest.raises(ConfigError, match="signing: command_validity_minutes"):
        build(SigningConfig, {"command_validity_minutes": 0}, "signing")
