"""Configuration of the HTTP gateway side: callback listener, gateways, send API.

Built from the ``[http]`` TOML section with :func:`mepl.config.build`::

    [http]
    host = "127.0.0.1"
    port = 8088

    [http.gateways.kannel1]
    format = "kannel"
    auth = "token"
    secret = "a-long-random-token"
    allowed_sources = ["10.0.0.0/24"]
    send_url = "http://kannel:13013/cgi-bin/sendsms"
    send_username = "mepl"
    send_password = "..."
    dlr_url_base = "http://mepl.internal:8088"

The table key is the gateway name (it appears in the callback URLs
``/gateways/<name>/inbound`` and ``/gateways/<name>/receipt``).  Secrets are
kept out of ``repr()``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

GatewayFormat = Literal["kannel", "jasmin", "json"]
AuthMode = Literal["hmac", "basic", "token"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024
HARD_MAX_BODY_BYTES = 16 * 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MIN_SECRET_LEN = 16
"""The shortest token, HMAC secret or basic-auth password accepted (characters)."""


@dataclass(frozen=True)
class HttpGatewayConfig:
    """One SMS gateway: how its callbacks are parsed and authenticated, how we send."""

    name: str = ""
    format: GatewayFormat = "json"
    auth: AuthMode = "hmac"
    secret: str = field(default="", repr=False)
    username: str = ""
    password: str = field(default="", repr=False)
    allowed_sources: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    replay_window_seconds: int = 300
    default_region: str | None = None
    send_url: str | None = None
    send_username: str = ""
    send_password: str = field(default="", repr=False)
    dlr_url_base: str | None = None
    send_timeout_seconds: float = 30.0
    max_parts: int = 10
    down_after_failure_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.name and not _NAME_RE.match(self.name):
            raise ValueError("gateway name must be 1-64 characters of A-Z a-z 0-9 _ -")
        if self.auth == "hmac" and self.format != "json":
            raise ValueError("auth 'hmac' needs format 'json' (Kannel and Jasmin cannot sign)")
        if self.format == "json" and self.auth != "hmac":
            raise ValueError("format 'json' is always signed: use auth 'hmac'")
        if self.auth in ("hmac", "token") and len(self.secret) < MIN_SECRET_LEN:
            raise ValueError(f"secret must be at least {MIN_SECRET_LEN} characters for auth "
                             f"'{self.auth}' (got {len(self.secret)})")
        if self.auth == "basic" and (not self.username or not self.password):
            raise ValueError("auth 'basic' needs username and password")
        if self.auth == "basic" and len(self.password) < MIN_SECRET_LEN:
            raise ValueError(f"password must be at least {MIN_SECRET_LEN} characters for auth "
                             f"'basic' (got {len(self.password)})")
        for cidr in self.allowed_sources:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"allowed_sources: {cidr!r} is not an address or CIDR") from None
        if not 0 < self.max_body_bytes <= HARD_MAX_BODY_BYTES:
            raise ValueError(f"max_body_bytes must be between 1 and {HARD_MAX_BODY_BYTES}")
        if self.replay_window_seconds <= 0:
            raise ValueError("replay_window_seconds must be positive")
        if self.default_region is not None and (
                len(self.default_region) != 2 or not self.default_region.isalpha()):
            raise ValueError("default_region must be an ISO 3166 two-letter code")
        if self.send_url is not None:
            if self.format == "json":
                raise ValueError("send_url: format 'json' has no send API (use kannel or jasmin)")
            if not self.send_url.startswith(("http://", "https://")):
                raise ValueError("send_url must be an http:// or https:// URL")
            if not self.dlr_url_base:
                raise ValueError("send_url needs dlr_url_base (where the gateway sends receipts)")
        if self.dlr_url_base is not None and not self.dlr_url_base.startswith(
                ("http://", "https://")):
            raise ValueError("dlr_url_base must be an http:// or https:// URL")
        if self.send_timeout_seconds <= 0 or self.down_after_failure_seconds < 0:
            raise ValueError("send_timeout_seconds must be positive, "
                             "down_after_failure_seconds not negative")
        if not 1 <= self.max_parts <= 255:
            raise ValueError("max_parts must be between 1 and 255")

    @property
    def can_send(self) -> bool:
        """True when a send API is configured for this gateway."""
        return self.send_url is not None


@dataclass(frozen=True)
class HttpConfig:
    """The ``[http]`` section: where the callback listener binds and the gateways.

    ``reuse_port`` lets several MEPL processes on one host share ``port``
    (``SO_REUSEPORT``), to carry more callbacks than one reactor thread can.

    A request's line and headers must arrive within ``header_timeout_seconds``
    (from the connection or the request's first byte) and its body within
    ``body_timeout_seconds`` after the headers, or the connection is closed
    (408); idle kept-alive connections close after Twisted's 60 s idle timeout.

    Failed authentications are limited (:mod:`sms_gateway.http.ratelimit`):
    ``auth_failures_per_source`` failures from one source address to one
    gateway within ``auth_failure_window_seconds`` lock that source out of that
    gateway for ``auth_lockout_seconds`` (answered 429 without checking its
    credentials); ``auth_failures_per_gateway`` failures from any sources put
    the gateway on alert for as long, refusing every source with a recent failure.
    """

    host: str = "127.0.0.1"
    port: int = 8088
    reuse_port: bool = False
    gateways: Mapping[str, HttpGatewayConfig] = field(
        default_factory=lambda: MappingProxyType({}))
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    auth_failures_per_source: int = 10
    auth_failures_per_gateway: int = 100
    auth_failure_window_seconds: float = 60.0
    auth_lockout_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        for name in ("header_timeout_seconds", "body_timeout_seconds",
                     "auth_failures_per_source", "auth_failures_per_gateway",
                     "auth_failure_window_seconds", "auth_lockout_seconds"):
            if not getattr(self, name) > 0:  # NaN too
                raise ValueError(f"{name} must be positive")
        named: dict[str, HttpGatewayConfig] = {}
        for key, gateway in self.gateways.items():
            if gateway.name and gateway.name != key:
                raise ValueError(f"gateways.{key}: name {gateway.name!r} differs from its key")
            named[key] = gateway if gateway.name else dataclasses.replace(gateway, name=key)
        object.__setattr__(self, "gateways", MappingProxyType(named))

    @property
    def max_body_bytes(self) -> int:
        """The largest body any gateway accepts (the listener's read cap)."""
        return max((g.max_body_bytes for g in self.gateways.values()),
                   default=DEFAULT_MAX_BODY_BYTES)
