"""Typed configuration of the SMPP links and routes (``[smpp]`` in the TOML file).

Built by :func:`mepl.config.build`, e.g.
``build(SmppConfig, raw.get("smpp", {}), "smpp")``.  Passwords never appear
in ``repr`` or logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from sms_gateway.routing import Route
from sms_gateway.smpp.backlog import MIN_CAP

BindMode = Literal["transceiver", "transmitter", "receiver"]
LongMessageMode = Literal["udh", "sar", "payload"]
IdMode = Literal["hex", "decimal", "as-is"]
UnackedPolicy = Literal["resubmit", "fail"]


@dataclass(frozen=True)
class SmppLinkConfig:
    """One SMSC link (a bind): where to connect, how to behave."""

    host: str
    port: int
    system_id: str
    password: str = field(default="", repr=False)
    system_type: str = ""
    bind_mode: BindMode = "transceiver"
    tls: bool = False
    tls_ca_file: Path | None = None
    window: int = 10
    tps: float = 0.0
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    long_message: LongMessageMode = "udh"
    max_parts: int = 6
    concat_ref_bits: int = 8
    source_addr: str = ""
    source_addr_ton: int = 1
    source_addr_npi: int = 1
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    message_id_mode: IdMode = "hex"
    receipt_text_id_mode: IdMode | None = None
    unacked_policy: UnackedPolicy = "resubmit"
    max_attempts: int = 3
    throttle_pause_min: float = 0.1
    throttle_pause_max: float = 5.0
    drain_timeout: float = 5.0
    down_timeout: float = 60.0
    receipt_hold: float = 30.0
    max_buffered: int = 2000

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        if not self.system_id or len(self.system_id) > 15:
            raise ValueError("system_id must be 1 to 15 characters")
        if len(self.password) > 8:
            raise ValueError("password must be at most 8 characters (SMPP 3.4)")
        if not 1 <= self.window <= 10000:
            raise ValueError("window must be between 1 and 10000")
        if self.tps < 0:
            raise ValueError("tps must be >= 0 (0 means unlimited)")
        if self.enquire_link_interval <= 0 or self.response_timeout <= 0:
            raise ValueError("enquire_link_interval and response_timeout must be > 0")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        if not 1 <= self.max_parts <= 255:
            raise ValueError("max_parts must be between 1 and 255")
        if self.concat_ref_bits not in (8, 16):
            raise ValueError("concat_ref_bits must be 8 or 16")
        if self.down_timeout <= 0 or self.drain_timeout < 0:
            raise ValueError("down_timeout must be > 0 and drain_timeout >= 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if not 0 < self.throttle_pause_min <= self.throttle_pause_max:
            raise ValueError("need 0 < throttle_pause_min <= throttle_pause_max")
        if self.max_buffered < MIN_CAP:
            raise ValueError(f"max_buffered must be at least {MIN_CAP}")


@dataclass(frozen=True)
class SmppConfig:
    """The ``[smpp]`` section: named links and the routes over them.

    Routes may name links of other channels (HTTP gateways) too, so their link
    names are checked when the :class:`sms_gateway.routing.Router` is built.
    ``pdu_log``: ``batched`` (the default) stores every raw PDU sent and
    received (binds, enquire_links, responses) besides the SMS themselves,
    many PDUs to a row (``pdu_batch`` rows, :mod:`blobstore.pdu_batches`);
    ``all`` stores the same PDUs one row each (``pdu`` rows, with the SMSC id
    of a submit_sm_resp in its indexed column); ``none`` stores the SMS
    (``mt``, ``mo``, ``dlr`` rows, raw user data included) only.
    """

    links: Mapping[str, SmppLinkConfig] = field(default_factory=lambda: MappingProxyType({}))
    routes: tuple[Route, ...] = ()
    pdu_log: Literal["batched", "all", "none"] = "batched"
