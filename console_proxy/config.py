"""The proxy's configuration (``mdm-proxy --config proxy.toml``).

Every error names the key at fault (``proxy.listen: ...``).  Relative paths are
resolved against the configuration file's directory.  Example::

    [proxy]
    name = "proxy-1"                 # the assertion's "iss"
    listen = "127.0.0.1:8443"
    server_cert = "pki/issued/server-proxy.example.pem"
    server_key = "pki/issued/server-proxy.example.key"
    client_ca = "pki/ca.pem"         # the admin CA
    crl = "pki/crl.pem"
    assertion_key = "pki/assertion.key"
    max_body_bytes = 1048576
    reload_check_s = 5.0

    [upstream]
    socket = "mepl-state/admin/admin.sock"   # or url = "https://api.internal:9443"
    # ca, cert, key: for a https url (the API's CA, the proxy's client certificate)

    [rate_limit]
    rate_per_s = 10.0
    burst = 20
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names its key."""


@dataclass(frozen=True)
class Listen:
    """A host and TCP port."""

    host: str
    port: int


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the admin API is: a UNIX socket, or an https URL with the proxy's client cert."""

    socket: Path | None = None
    url: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    connect_timeout_s: float = 5.0
    response_timeout_s: float = 60.0


@dataclass(frozen=True)
class ProxyConfig:
    """The whole configuration."""

    server_cert: Path
    server_key: Path
    client_ca: Path
    crl: Path
    assertion_key: Path
    upstream: UpstreamConfig
    name: str = "proxy-1"
    listen: Listen = Listen("127.0.0.1", 8443)
    max_body_bytes: int = 1024 * 1024
    reload_check_s: float = 5.0
    rate_per_s: float = 10.0
    burst: int = 20


def parse_listen(text: str, key: str) -> Listen:
    """``host:port`` (``[v6]:port`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: expected host:port, got {text!r}")
    host = host.removeprefix("[").removesuffix("]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: invalid port {port!r} (0 to 65535)")
    return Listen(host, int(port))


class _Section:
    """Typed reads from one TOML table, with errors naming ``section.key``."""

    def __init__(self, raw: dict[str, Any], name: str, base: Path) -> None:
        self.raw, self.name, self.base = dict(raw), name, base

    def _value(self, key: str, kinds: tuple[type, ...], what: str, required: bool) -> Any:
        if key not in self.raw:
            if required:
                raise ConfigError(f"{self.name}.{key}: required")
            return None
        value = self.raw.pop(key)
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ConfigError(f"{self.name}.{key}: expected {what}, got {value!r}")
        return value

    def text(self, key: str, required: bool = False) -> str | None:
        value = self._value(key, (str,), "a string", required)
        if value is not None and not value:
            raise ConfigError(f"{self.name}.{key}: must not be empty")
        return value  # type: ignore[no-any-return]

    def path(self, key: str, required: bool = False) -> Path | None:
        value = self.text(key, required)
        return None if value is None else self.base / Path(value).expanduser()

    def number(self, key: str, default: float, minimum: float) -> float:
        value = self._value(key, (int, float), "a number", False)
        value = default if value is None else float(value)
        if value < minimum:
            raise ConfigError(f"{self.name}.{key}: must be at least {minimum:g}")
        return value

    def done(self) -> None:
        if self.raw:
            raise ConfigError(f"{self.name}.{sorted(self.raw)[0]}: unknown key")


def _section(raw: dict[str, Any], name: str, base: Path) -> _Section:
    table = raw.pop(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: expected a table")
    return _Section(table, name, base)


def _upstream(section: _Section) -> UpstreamConfig:
    socket, url = section.path("socket"), section.text("url")
    if (socket is None) == (url is None):
        raise ConfigError("upstream.socket: give exactly one of upstream.socket or upstream.url")
    ca, cert, key = section.path("ca"), section.path("cert"), section.path("key")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(f"upstream.url: expected https://host:port, got {url!r}")
        for name, value in (("ca", ca), ("cert", cert), ("key", key)):
            if value is None:
                raise ConfigError(f"upstream.{name}: required with upstream.url (the API is "
                                  "reached over TLS with the proxy's client certificate)")
    config = UpstreamConfig(
        socket=socket, url=url, ca=ca, cert=cert, key=key,
        connect_timeout_s=section.number("connect_timeout_s", 5.0, 0.1),
        response_timeout_s=section.number("response_timeout_s", 60.0, 0.1))
    section.done()
    return config


def load_config(path: Path) -> ProxyConfig:
    """Read and check ``path``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(raw, path.parent)


def config_from_dict(raw: dict[str, Any], base: Path) -> ProxyConfig:
    """Build the configuration from parsed TOML; paths relative to ``base``."""
    raw = dict(raw)
    proxy = _section(raw, "proxy", base)
    upstream = _upstream(_section(raw, "upstream", base))
    limits = _section(raw, "rate_limit", base)
    if raw:
        raise ConfigError(f"{sorted(raw)[0]}: unknown section")
    listen_text = proxy.text("listen")
    config = ProxyConfig(
        name=proxy.text("name") or "proxy-1",
        listen=parse_listen(listen_text, "proxy.listen") if listen_text else Listen(
            "127.0.0.1", 8443),
        server_cert=_required(proxy.path("server_cert", True)),
        server_key=_required(proxy.path("server_key", True)),
        client_ca=_required(proxy.path("client_ca", True)),
        crl=_required(proxy.path("crl", True)),
        assertion_key=_required(proxy.path("assertion_key", True)),
        max_body_bytes=int(proxy.number("max_body_bytes", 1024 * 1024, 1)),
        reload_check_s=proxy.number("reload_check_s", 5.0, 0.1),
        upstream=upstream,
        rate_per_s=limits.number("rate_per_s", 10.0, 0.001),
        burst=int(limits.number("burst", 20, 1)),
    )
    proxy.done()
    limits.done()
    return config


def _required(value: Path | None) -> Path:
    assert value is not None  # _Section.path(..., required=True) raised otherwise
    return value
