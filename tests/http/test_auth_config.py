"""Authentication checks, secret redaction and configuration validation (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from mepl.config import ConfigError, build
from sms_gateway.http.auth import (
    GatewayAuth,
    redact_form,
    redact_target,
    relevant_headers,
    sign_body,
)
from sms_gateway.http.callback import CallbackRequest
from sms_gateway.http.config import HttpConfig, HttpGatewayConfig

SECRET = "0123456789abcdef0123"


def json_gw(**kw: object) -> HttpGatewayConfig:
    return HttpGatewayConfig(name="j", format="json", auth="hmac", secret=SECRET, **kw)  # type: ignore[arg-type]


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    header = sign_body(SECRET, b'{"a":1}', 1795330800)
    mac = hmac.new(SECRET.encode(), b'1795330800.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1795330800,v1={mac}"


def test_signature_window_and_tampering() -> None:
    auth = GatewayAuth(json_gw(replay_window_seconds=60))
    body = b'{"id":"1"}'
    req = CallbackRequest("POST", "/", {"x-mepl-signature": sign_body(SECRET, body, 1000)},
                          body)
    assert auth.check(req, 1059) is None
    assert auth.check(req, 941) is None
    stale = auth.check(req, 1061)
    assert stale is not None and (stale.status, stale.reason) == (401, "stale_timestamp")
    tampered = CallbackRequest("POST", "/", req.headers, body + b" ")
    failure = auth.check(tampered, 1000)
    assert failure is not None and failure.reason == "bad_signature"
    garbage = CallbackRequest("POST", "/", {"x-mepl-signature": "v1=abc"}, body)
    failure = auth.check(garbage, 1000)
    assert failure is not None and failure.reason == "bad_signature"


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 4000, "\u0661\u0662", "1e5",
                                       "+1000", "1_000"])
def test_a_signature_timestamp_not_plain_unix_digits_is_a_bad_signature(timestamp: str) -> None:
    auth = GatewayAuth(json_gw())
    body = b'{"id":"1"}'
    mac = sign_body(SECRET, body, 1000).split("v1=")[1]
    request = CallbackRequest("POST", "/", {"x-mepl-signature": f"t={timestamp},v1={mac}"}, body)
    failure = auth.check(request, 1000)
    assert failure is not None and (failure.status, failure.reason) == (401, "bad_signature")


def test_basic_auth_and_allow_list() -> None:
    auth = GatewayAuth(HttpGatewayConfig(name="k", format="jasmin", auth="basic",
                                         username="u", password=SECRET,
                                         allowed_sources=("192.0.2.0/24", "2001:db8::/32")))
    good = "Basic " + base64.b64encode(f"u:{SECRET}".encode()).decode()
    assert auth.check(CallbackRequest("GET", "/", {"authorization": good}), 0) is None
    for header in ("Basic " + base64.b64encode(b"u:q").decode(), "Basic !!!", "Bearer x", ""):
        failure = auth.check(CallbackRequest("GET", "/", {"authorization": header}), 0)
        assert failure is not None and failure.status == 401
    assert auth.check_source("192.0.2.7") is None
    assert auth.check_source("2001:db8::1") is None
    for remote in ("198.51.100.1", "", "not-an-ip"):
        failure = auth.check_source(remote)
        assert failure is not None and (failure.status, failure.reason) == (403, "source")


def test_token_from_query_header_or_bearer() -> None:
    auth = GatewayAuth(HttpGatewayConfig(name="k", format="kannel", auth="token", secret=SECRET))
    assert auth.check(CallbackRequest("GET", f"/?token={SECRET}"), 0) is None
    assert auth.check(CallbackRequest("GET", "/", {"x-mepl-token": SECRET}), 0) is None
    assert auth.check(CallbackRequest("GET", "/", {"authorization": f"Bearer {SECRET}"}), 0) \
        is None
    failure = auth.check(CallbackRequest("GET", f"/?token={SECRET}x"), 0)
    assert failure is not None and failure.reason == "bad_credentials"


def test_secrets_are_redacted_and_sensitive_headers_dropped() -> None:
    assert redact_target("/g/k/inbound?token=abc&id=1&password=x") == \
        "/g/k/inbound?token=REDACTED&id=1&password=REDACTED"
    assert redact_target("/g/k/inbound?tokenish=1") == "/g/k/inbound?tokenish=1"
    kept = dict(relevant_headers({"authorization": "Basic x", "cookie": "c",
                                  "x-mepl-token": "t", "x-kannel-password": "p",
                                  "x-kannel-from": "+44", "content-type": "text/plain"}))
    assert kept == {"x-kannel-from": "+44", "content-type": "text/plain"}


@pytest.mark.parametrize("name", [
    "token", "TOKEN", "%74oken", "%74%6F%6B%65%6E", "to%6Ben", "%2574oken", "token+", "%20token",
    "pass%77ord", "Secret", "%6Bey",
])
def test_redaction_matches_parameter_names_after_percent_decoding(name: str) -> None:
    target = f"/g/k/inbound?id=1&{name}=s3cr3t-value&text=%01%FF+x"
    redacted = redact_target(target)
    assert "s3cr3t-value" not in redacted
    assert redacted == f"/g/k/inbound?id=1&{name}=REDACTED&text=%01%FF+x"


def test_a_token_in_an_encoded_parameter_name_authenticates_and_is_redacted() -> None:
    auth = GatewayAuth(HttpGatewayConfig(name="k", format="kannel", auth="token", secret=SECRET))
    target = f"/g/k/inbound?%74oken={SECRET}&id=1"
    assert auth.check(CallbackRequest("GET", target), 0) is None
    assert SECRET not in redact_target(target)


def test_secret_fields_of_a_form_body_are_redacted_and_the_rest_kept_byte_for_byte() -> None:
    body = b"id=j-1&%74oken=" + SECRET.encode() + b"&content=%00%FF+x&password=p"
    assert redact_form(body) == b"id=j-1&%74oken=REDACTED&content=%00%FF+x&password=REDACTED"
    assert redact_form(b"\x00\x01binary") == b"\x00\x01binary"


def test_secrets_are_not_in_repr() -> None:
    gw = HttpGatewayConfig(name="k", format="kannel", auth="token", secret=SECRET,
                           send_url="http://k/cgi-bin/sendsms", send_password="sendpw",
                           dlr_url_base="http://me")
    assert SECRET not in repr(gw) and "sendpw" not in repr(gw)


def test_config_is_built_from_toml_data_and_names_take_the_table_key() -> None:
    raw = {"host": "0.0.0.0", "port": "9000", "gateways": {
        "kannel1": {"format": "kannel", "auth": "token", "secret": SECRET,
                    "allowed_sources": "10.0.0.0/8, 192.0.2.1"},
        "hosted": {"format": "json", "auth": "hmac", "secret": SECRET,
                   "max_body_bytes": "4096"}}}
    config = build(HttpConfig, raw, "http")
    assert config.port == 9000
    assert config.gateways["kannel1"].name == "kannel1"
    assert config.gateways["kannel1"].allowed_sources == ("10.0.0.0/8", "192.0.2.1")
    assert config.max_body_bytes == 64 * 1024


@pytest.mark.parametrize("fields, message", [
    ({"format": "kannel", "auth": "hmac", "secret": SECRET}, "needs format 'json'"),
    ({"format": "json", "auth": "token", "secret": SECRET}, "always signed"),
    ({"format": "kannel", "auth": "token", "secret": "short"}, "secret must be at least 16"),
    ({"format": "json", "auth": "hmac", "secret": "x" * 15}, "secret must be at least 16"),
    ({"format": "jasmin", "auth": "basic", "username": "u", "password": "p" * 15},
     "password must be at least 16"),
    ({"format": "jasmin", "auth": "basic", "username": "u"}, "username and password"),
    ({"format": "kannel", "auth": "token", "secret": SECRET, "allowed_sources": ["x"]},
     "not an address"),
    ({"format": "kannel", "auth": "token", "secret": SECRET, "max_body_bytes": 0},
     "max_body_bytes"),
    ({"format": "kannel", "auth": "token", "secret": SECRET, "send_url": "http://k/s"},
     "dlr_url_base"),
    ({"format": "json", "auth": "hmac", "secret": SECRET, "send_url": "http://k/s",
      "dlr_url_base": "http://me"}, "no send API"),
    ({"format": "smpp", "auth": "token", "secret": SECRET}, "expected one of"),
])
def test_invalid_gateway_config_names_the_key(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build(HttpConfig, {"gateways": {"gw": fields}}, "http")
    assert caught.value.key.startswith("http.gateways.gw")


def test_a_short_basic_password_is_a_config_error_naming_the_gateway_and_key() -> None:
    raw = {"gateways": {"jasmin1": {"format": "jasmin", "auth": "basic", "username": "jasmin",
                                    "password": "only-15-chars!!"}}}
    with pytest.raises(ConfigError) as caught:
        build(HttpConfig, raw, "http")
    assert str(caught.value) == ("http.gateways.jasmin1: password must be at least 16 "
                                 "characters for auth 'basic' (got 15)")
    raw["gateways"]["jasmin1"]["password"] = "sixteen-chars!!!"
    assert build(HttpConfig, raw, "http").gateways["jasmin1"].password == "sixteen-chars!!!"


def test_gateway_name_must_fit_in_a_url_and_match_its_key() -> None:
    with pytest.raises(ConfigError, match="gateway name"):
        build(HttpConfig, {"gateways": {"a b": {"format": "kannel", "auth": "token",
                                                 "secret": SECRET}}}, "http")
    with pytest.raises(ConfigError, match="differs from its key"):
        build(HttpConfig, {"gateways": {"a": {"name": "b", "format": "kannel",
                                               "auth": "token", "secret": SECRET}}}, "http")
