"""The ``[mepl]`` section and the whole settings: regions, required keys."""

from __future__ import annotations

import pytest

from mepl.cli.common import general_config
from mepl.config import ConfigError
from mepl.settings import Settings, check_deployment, load_settings


@pytest.mark.parametrize(("written", "region"), [("GB", "GB"), ("us", "US"), (" de ", "DE"),
                                                 ("Fr", "FR")])
def test_default_region_is_checked_and_upper_cased(written: str, region: str) -> None:
    assert general_config({"mepl": {"default_region": written}}).default_region == region


@pytest.mark.parametrize("written", ["XX", "UK", "GBR", "", "12"])
def test_an_unknown_default_region_is_refused_naming_the_key(written: str) -> None:
    with pytest.raises(ConfigError) as err:
        general_config({"mepl": {"default_region": written}})
    assert err.value.key == "mepl.default_region"
    assert str(err.value).startswith("mepl.default_region: unknown region")


LINK = {"carrier": {"host": "127.0.0.1", "port": 2775, "system_id": "s", "password": "p"}}
SERVER = "+447700900000"


def settings(**dispatch: object) -> Settings:
    return load_settings({"dispatch": dispatch, "smpp": {"links": LINK}})


def test_server_number_is_required_and_named() -> None:
    for raw in ({}, {"dispatch": {"max_attempts": 3}}):
        with pytest.raises(ConfigError) as err:
            load_settings(raw)
        assert err.value.key == "dispatch.server_number"
        assert "required key is missing" in str(err.value)


@pytest.mark.parametrize("written", ["banana", "+12", "+44 7700 banana", "12",
                                     "123456789", "", "+447700900000000000"])
def test_a_server_number_that_is_neither_e164_nor_a_short_code_is_refused(
        written: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(server_number=written)
    assert err.value.key == "dispatch.server_number"
    assert "E.164" in str(err.value) and "short code" in str(err.value)


@pytest.mark.parametrize(("written", "number"), [
    ("+447700900000", "+447700900000"), ("+44 7700 900000", "+447700900000"),
    ("84433", "84433"), ("123", "123")])
def test_e164_numbers_and_short_codes_are_accepted(written: str, number: str) -> None:
    assert settings(server_number=written).dispatch.server_number == number


def test_a_server_number_the_devices_do_not_trust_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        check_deployment(settings(server_number="+447700900999"), (SERVER, "+447700900001"))
    assert err.value.key == "dispatch.server_number"
    assert "+447700900999 is not among the trusted numbers" in str(err.value)
    assert SERVER in str(err.value)
    check_deployment(settings(server_number=SERVER), ("+447700900001", SERVER))


def test_empty_trusted_numbers_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        check_deployment(settings(server_number=SERVER), ())
    assert err.value.key == "keys.trusted_numbers"
    assert "any sender" in str(err.value) and "--trusted-number" in str(err.value)


def test_no_smpp_link_and_no_http_send_channel_is_refused() -> None:
    callbacks_only = {"gateways": {"hosted": {"format": "json", "auth": "hmac",
                                              "secret": "s" * 16}}}
    for raw in ({}, {"http": callbacks_only}):
        with pytest.raises(ConfigError) as err:
            check_deployment(load_settings({"dispatch": {"server_number": SERVER}, **raw}),
                             (SERVER,))
        assert err.value.key == "smpp.links"
        assert "send_url" in str(err.value)
    kannel = {"gateways": {"k": {"format": "kannel", "auth": "token", "secret": "t" * 16,
                                 "send_url": "http://kannel:13013/cgi-bin/sendsms",
                                 "dlr_url_base": "http://mepl:8088"}}}
    check_deployment(load_settings({"dispatch": {"server_number": SERVER}, "http": kannel}),
                     (SERVER,))


def test_the_metrics_port_may_not_be_the_callback_port() -> None:
    raw = {"dispatch": {"server_number": SERVER}, "smpp": {"links": LINK},
           "metrics": {"host": "127.0.0.1", "port": 8088},
           "http": {"host": "0.0.0.0", "port": 8088, "gateways": {"hosted": {
               "format": "json", "auth": "hmac", "secret": "s" * 16}}}}
    with pytest.raises(ConfigError) as err:
        check_deployment(load_settings(raw), (SERVER,))
    assert err.value.key == "metrics.port"
    assert "http.port" in str(err.value)
    raw["metrics"] = {"host": "127.0.0.1", "port": 9108}
    check_deployment(load_settings(raw), (SERVER,))
