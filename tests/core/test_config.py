from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from mepl.config import ConfigError, apply_env_overrides, build, load_toml


@dataclass(frozen=True)
class Link:
    host: str
    port: int = 2775
    tls: bool = False
    mode: Literal["transceiver", "transmitter"] = "transceiver"
    password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")


@dataclass(frozen=True)
class Section:
    links: dict[str, Link] = field(default_factory=dict)
    tps: float = 0.0
    prefixes: tuple[str, ...] = ()
    state: Path | None = None


def test_build_converts_nested_tables_and_defaults() -> None:
    cfg = build(Section, {"links": {"a": {"host": "h", "port": 1}}, "tps": 5, "prefixes": ["+44"]},
                "smpp")
    assert cfg.links["a"] == Link(host="h", port=1)
    assert cfg.tps == 5.0 and cfg.prefixes == ("+44",) and cfg.state is None


def test_wrong_type_error_names_the_full_key() -> None:
    with pytest.raises(ConfigError) as err:
        build(Section, {"links": {"carrier_a": {"host": "h", "port": "abc"}}}, "smpp")
    assert err.value.key == "smpp.links.carrier_a.port"
    assert "expected an integer" in str(err.value)


def test_unknown_key_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigError) as err:
        build(Link, {"host": "h", "prot": 1}, "link")
    assert err.value.key == "link.prot"


def test_missing_required_key_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        build(Section, {"links": {"x": {}}}, "smpp")
    assert err.value.key == "smpp.links.x.host"


def test_post_init_validation_error_is_reported_with_the_section_key() -> None:
    with pytest.raises(ConfigError) as err:
        build(Link, {"host": "h", "port": 0}, "smpp.links.a")
    assert "smpp.links.a" in str(err.value) and "port must be" in str(err.value)


def test_literal_rejects_values_outside_the_choices() -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        build(Link, {"host": "h", "mode": "receiver"}, "l")


def test_env_overrides_use_double_underscore_paths_and_aliases() -> None:
    env = {
        "MEPL_SMPP__LINKS__A__PORT": "2776",
        "MEPL_SMPP__LINKS__A__TLS": "true",
        "MEPL_DATABASE_URL": "postgresql://x",
        "OTHER": "ignored",
    }
    raw = apply_env_overrides({"smpp": {"links": {"a": {"host": "h"}}}}, env)
    cfg = build(Section, raw["smpp"], "smpp")
    assert cfg.links["a"].port == 2776 and cfg.links["a"].tls is True
    assert raw["database"]["url"] == "postgresql://x"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[smpp\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)


def test_secret_fields_stay_out_of_repr() -> None:
    assert "s3cret" not in repr(Link(host="h", password="s3cret"))


@dataclass(frozen=True)
class Checked:
    region: str = "GB"

    def __post_init__(self) -> None:
        if self.region != "GB":
            raise ValueError(f"region: {self.region!r} is not served here")


def test_a_post_init_error_that_names_its_field_is_reported_with_the_full_key() -> None:
    with pytest.raises(ConfigError) as err:
        build(Checked, {"region": "FR"}, "mepl")
    assert err.value.key == "mepl.region"
    assert str(err.value) == "mepl.region: 'FR' is not served here"
