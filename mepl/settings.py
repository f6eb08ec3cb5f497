"""The whole typed configuration of a MEPL process, one section per package.

```toml
[mepl]        # mepl.cli.common.GeneralConfig: state_dir, default_region, log_level
[database]    # blobstore.config.DatabaseConfig: url (none = embedded), pool...
[signing]     # signing.config.SigningConfig: keys_dir, passphrase_file, command validity
[dispatch]    # DispatchConfig below: server number, pacing, retries
[smpp.links.NAME]  # sms_gateway.smpp.config.SmppLinkConfig, and [[smpp.routes]]
[http]        # sms_gateway.http.config.HttpConfig, with [http.gateways.NAME]
[metrics]     # mepl.metrics.MetricsConfig: host, port of /metrics, /healthz, /readyz (0: off)
[admin]       # mepl.admin.config.AdminConfig: the admin API's socket or TLS listener, proxy keys
[approvals]   # mepl.app.approvals.ApprovalsConfig: which actions need two-person approval
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blobstore.config import DatabaseConfig
from mepl.admin.config import AdminConfig
from mepl.app.approvals import ApprovalsConfig
from mepl.cli.common import GeneralConfig
from mepl.config import ConfigError, build
from mepl.metrics import MetricsConfig
from signing.config import SigningConfig
from sms_gateway.addresses import to_e164
from sms_gateway.errors import AddressError
from sms_gateway.http.config import HttpConfig
from sms_gateway.smpp.config import SmppConfig

SHORT_CODE = re.compile(r"[0-9]{3,8}")
"""A server number without ``+``: a short code of 3 to 8 digits."""


@dataclass(frozen=True)
class DispatchConfig:
    """How commands go out and replies come back.

    ``server_number`` (required) is the sender address of every command: an
    E.164 number (``+447700900000``, written with or without spaces) or a
    short code (3 to 8 digits); devices accept commands only from the trusted
    numbers of their provisioning bundle, so it must be one of them (see
    :func:`check_deployment`).  A submit that fails for a
    temporary reason, or a part reported undeliverable, is retried with the
    same bytes (same counter) after ``retry_delay_s``, doubling per attempt
    up to 32 times that, until the command's not-after.  Every
    ``housekeeping_interval_s`` expired commands are closed, claims older than
    ``stale_claim_s`` that were never sent are put back (their process died),
    and commands without a reply ``resend_after_s`` after they were sent are
    resent with the same bytes, up to ``max_attempts`` attempts.  Gateway
    callbacks stored but left unprocessed for ``callback_grace_s`` (their
    process stopped) are processed from their stored bytes.

    Inbound items (callbacks, MO parts, receipts) are applied by a worker
    that claims up to ``inbound_batch`` at a time; an item claimed by a
    process that stopped is taken over after ``callback_grace_s``; an item
    that failed ``max_inbound_attempts`` times is parked for an operator.  A
    receipt for a submit never recorded is dropped after ``receipt_wait_s``.
    ``dispatch_lanes`` dispatch rounds (claim, seal, submit, record) and
    ``inbound_lanes`` worker rounds run at once in each process, so one
    round's claim overlaps another's wait for the SMSC or the store.  A
    worker woken by newly stored items waits ``inbound_linger_ms`` before
    claiming, so that one round applies what arrives meanwhile (the
    SMSC's answer never waits for it: items are acknowledged once stored).
    An alert raised more than ``alert_max_age_s`` ago or more than
    ``alert_max_skew_s`` in the future is refused.
    """

    server_number: str
    poll_interval_s: float = 0.2
    claim_batch: int = 200
    retry_delay_s: float = 30.0
    reassembly_timeout_s: float = 3600.0
    housekeeping_interval_s: float = 30.0
    callback_grace_s: float = 60.0
    stale_claim_s: float = 300.0
    resend_after_s: float = 900.0
    max_attempts: int = 5
    inbound_batch: int = 100
    max_inbound_attempts: int = 10
    receipt_wait_s: float = 86400.0
    alert_max_age_s: float = 259200.0
    alert_max_skew_s: float = 600.0
    dispatch_lanes: int = 2
    inbound_lanes: int = 2
    inbound_linger_ms: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_number", _sender_address(self.server_number))
        if self.inbound_batch < 1 or self.max_inbound_attempts < 1:
            raise ValueError("inbound_batch and max_inbound_attempts must be at least 1")
        if min(self.receipt_wait_s, self.alert_max_age_s, self.alert_max_skew_s) <= 0:
            raise ValueError("receipt_wait_s, alert_max_age_s and alert_max_skew_s must be > 0")
        if self.poll_interval_s <= 0 or self.claim_batch < 1:
            raise ValueError("poll_interval_s must be > 0 and claim_batch >= 1")
        if min(self.retry_delay_s, self.reassembly_timeout_s, self.housekeeping_interval_s,
               self.stale_claim_s, self.resend_after_s, self.callback_grace_s) <= 0:
            raise ValueError("every interval and timeout must be > 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.inbound_linger_ms <= 1000:
            raise ValueError("inbound_linger_ms must be between 0 and 1000")
        if not (1 <= self.dispatch_lanes <= 16 and 1 <= self.inbound_lanes <= 16):
            raise ValueError("dispatch_lanes and inbound_lanes must be between 1 and 16")


def _sender_address(written: str) -> str:
    """``written`` as E.164 or a short code (raises ValueError naming server_number)."""
    text = written.strip()
    if SHORT_CODE.fullmatch(text):
        return text
    if text.startswith("+"):
        try:
            return to_e164(text)
        except AddressError:
            pass
    raise ValueError(f"server_number: {written!r} is neither an E.164 number (+, country "
                     "code and number, e.g. +447700900000) nor a short code (3 to 8 digits)")


@dataclass(frozen=True)
class Settings:
    """Every section, parsed and checked (``dispatch.server_number`` is required)."""

    dispatch: DispatchConfig
    mepl: GeneralConfig = field(default_factory=GeneralConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    signing: SigningConfig = field(default_factory=SigningConfig)
    smpp: SmppConfig = field(default_factory=SmppConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    approvals: ApprovalsConfig = field(default_factory=ApprovalsConfig)


def load_settings(raw: Mapping[str, Any]) -> Settings:
    """Build :class:`Settings` from merged TOML/environment data (errors name the key)."""
    return build(Settings, {"dispatch": {}, **raw})


def check_deployment(settings: Settings, trusted_numbers: Sequence[str]) -> None:
    """Refuse settings that cannot work with the devices' provisioning.

    ``trusted_numbers`` are the numbers the devices are provisioned to accept
    commands from (``mepl keys init --trusted-number``, kept in the key index).
    Raises :class:`ConfigError` naming the key: no trusted numbers at all
    (devices would accept any sender), a ``dispatch.server_number`` that is not
    one of them (devices would reject every command), or no way to send (no
    SMPP link and no HTTP gateway with ``send_url``), and ``metrics.port``
    equal to the callback listener's ``http.port``, and an ``admin.listen``
    on the callback listener's or the metrics port.
    """
    server = settings.dispatch.server_number
    if not trusted_numbers:
        raise ConfigError("keys.trusted_numbers", (
            "the server keys list no trusted numbers, so devices would accept commands "
            "from any sender; create the keys with `mepl keys init --trusted-number "
            f"{server}` before provisioning devices"))
    if _digits(server) not in {_digits(n) for n in trusted_numbers}:
        raise ConfigError("dispatch.server_number", (
            f"{server} is not among the trusted numbers the devices are provisioned with "
            f"({', '.join(trusted_numbers)}); they would reject every command"))
    senders = [name for name, gw in settings.http.gateways.items() if gw.can_send]
    if not settings.smpp.links and not senders:
        raise ConfigError("smpp.links", (
            "no SMPP link and no HTTP gateway with send_url: commands could never be sent; "
            "configure [smpp.links.NAME] or send_url in [http.gateways.NAME]"))
    http, metrics = settings.http, settings.metrics
    if (http.gateways and metrics.port and metrics.port == http.port
            and _overlap(http.host, metrics.host)):
        raise ConfigError("metrics.port", (
            f"{metrics.port} is also http.port (the gateway callback listener); "
            "give /metrics its own port"))
    admin = settings.admin.tcp
    if admin is not None:
        taken = [(metrics.port, metrics.host, "metrics.port")]
        if http.gateways:
            taken.append((http.port, http.host, "http.port"))
        for port, host, name in taken:
            if port and admin[1] == port and _overlap(admin[0], host):
                raise ConfigError("admin.listen", (
                    f"{settings.admin.listen} is also {name}; the admin API never shares "
                    "the gateway or metrics port"))


def _overlap(host_a: str, host_b: str) -> bool:
    wildcard = ("0.0.0.0", "::", "")  # noqa: S104 - compared with, never bound
    return host_a == host_b or host_a in wildcard or host_b in wildcard


def _digits(number: str) -> str:
    # How devices compare sender numbers: digits only, "+" and "00" dropped.
    digits = "".join(ch for ch in number if ch.isdigit())
    return digits[2:] if number.strip().startswith("00") else digits
