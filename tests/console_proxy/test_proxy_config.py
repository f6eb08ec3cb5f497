"""The proxy's configuration, assertion format, policy and rate limiter (no network)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.task import Clock

from console_proxy.assertion import AssertionSigner, Subject
from console_proxy.config import ConfigError, load_config
from console_proxy.main import main
from console_proxy.policy import Policy, PolicyError
from console_proxy.ratelimit import RateLimiter
from tests.console_proxy.fake_api import OPENAPI

MINIMAL = """
[proxy]
server_cert = "s.pem"
server_key = "s.key"
client_ca = "ca.pem"
crl = "crl.pem"
assertion_key = "assertion.key"
[upstream]
socket = "admin.sock"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return path


def test_defaults_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 8443)
    assert config.client_ca == tmp_path / "ca.pem"
    assert config.upstream.socket == tmp_path / "admin.sock"
    assert (config.rate_per_s, config.burst, config.name) == (10.0, 20, "proxy-1")


@pytest.mark.parametrize(("extra", "key"), [
    ('[rate_limit]\nburst = "x"\n', "rate_limit.burst"),
    ('[rate_limit]\nrate_per_s = 0\n', "rate_limit.rate_per_s"),
    ('[rate_limit]\nbursts = 3\n', "rate_limit.bursts: unknown key"),
    ('[logging]\nx = 1\n', "logging: unknown section"),
])
def test_errors_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, MINIMAL + extra))


def test_listen_crl_and_upstream_errors_name_their_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"proxy\.listen"):
        load_config(write(tmp_path, MINIMAL.replace("[proxy]", '[proxy]\nlisten = "nope"')))
    with pytest.raises(ConfigError, match=r"proxy\.crl: required"):
        load_config(write(tmp_path, MINIMAL.replace('crl = "crl.pem"\n', "")))
    with pytest.raises(ConfigError, match=r"upstream\.cert: required"):
        load_config(write(tmp_path, MINIMAL.replace(
            'socket = "admin.sock"', 'url = "https://api:9443"\nca = "c.pem"')))


def test_mdm_proxy_reports_a_configuration_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(write(tmp_path, "[proxy]\n"))]) == 2
    assert "upstream.socket: give exactly one" in capsys.readouterr().err


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_assertion_is_compact_sorted_json_signed_over_the_payload() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signer = AssertionSigner(key, "proxy-1", lambda: 1796300000.125, lambda n: b"\x01" * n)
    signed = signer.sign(Subject("alice", "operator", "ab" * 32), "POST", "/v1/commands?x=1",
                         b"{}", "127.0.0.1:53412")
    payload, signature = signed.header.split(".")
    assert "=" not in payload and "=" not in signature
    key.public_key().verify(unb64(signature), payload.encode("ascii"))
    raw = unb64(payload)
    claims = json.loads(raw)
    assert raw == json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    assert claims == {
        "v": 1, "iss": "proxy-1", "sub": "alice", "fp": "ab" * 32, "role": "operator",
        "rid": signed.request_id, "iat": 1796300000.125, "nonce": "AQEBAQEBAQEBAQEBAQEBAQ",
        "m": "POST", "p": "/v1/commands?x=1", "bh": hashlib.sha256(b"{}").hexdigest(),
        "src": "127.0.0.1:53412"}
    assert len(signed.request_id) == 32
    again = signer.sign(Subject("alice", "operator"), "GET", "/", b"", "")
    assert again.request_id != signed.request_id


def test_policy_roles_by_body_and_templates() -> None:
    policy = Policy.from_openapi(OPENAPI)
    op = policy.find("POST", "/v1/commands")
    assert op is not None
    assert op.role_for(b'{"command": "lock"}') == "operator"
    assert op.role_for(b'{"command": "rotate_key"}') == "admin"
    assert op.role_for(b"not json") == "operator"
    found = policy.find("GET", "/v1/devices/%2B44%2F7700")
    assert found is not None and found.template == "/v1/devices/{identifier}"
    assert policy.find("GET", "/v1/devices/a/b/c") is None
    with pytest.raises(PolicyError, match="no x-mepl-role"):
        Policy.from_openapi({"paths": {"/x": {"get": {}}}})


def test_rate_limiter_refills_with_the_injected_clock() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 2, clock.seconds)
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")
    clock.advance(0.5)
    assert limiter.allow("a") and not limiter.allow("a")
