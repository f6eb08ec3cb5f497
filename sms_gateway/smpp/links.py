"""Building binds from configuration: endpoints (TCP or TLS) and one bind per link."""

from __future__ import annotations

import random
from typing import Any, cast

from twisted.internet import ssl
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint

from sms_gateway.smpp.bind import InboundCallback, ReceiptCallback, SmppBind
from sms_gateway.smpp.config import SmppConfig, SmppLinkConfig
from sms_gateway.smpp.records import PduSink

OWN_PDUS = 8  # what a bind may send on its own beyond its cap: bind, enquire_link, unbind


def endpoint_for(config: SmppLinkConfig, reactor: Any) -> IStreamClientEndpoint:
    """A client endpoint for ``config``: plain TCP, or TLS verified against the CA file."""
    endpoint: Any = HostnameEndpoint(reactor, config.host, config.port,
                                                       timeout=config.response_timeout)
    if config.tls:
        trust: Any = None
        if config.tls_ca_file is not None:
            trust = ssl.Certificate.loadPEM(config.tls_ca_file.read_bytes())
        options = ssl.optionsForClientTLS(config.host, trustRoot=trust)
        endpoint = wrapClientTLS(options, endpoint)
    return cast(IStreamClientEndpoint, endpoint)


def build_binds(config: SmppConfig, *, reactor: Any, on_inbound: InboundCallback,
                on_receipt: ReceiptCallback, pdu_sink: PduSink | None = None,
                rng: random.Random | None = None) -> dict[str, SmppBind]:
    """One :class:`SmppBind` per configured link (not started)."""
    return {name: SmppBind(name, link, reactor=reactor, endpoint=endpoint_for(link, reactor),
                           on_inbound=on_inbound, on_receipt=on_receipt, pdu_sink=pdu_sink,
                           rng=rng)
            for name, link in config.links.items()}


def records_bound(config: SmppConfig) -> int:
    """The most PDU records the binds of ``config`` can have unsettled at once.

    Each bind keeps at most ``max_buffered`` (plus the few PDUs it sends on
    its own), so a store that accepts this many never has to refuse a record.
    """
    return sum(link.max_buffered + OWN_PDUS for link in config.links.values())
