"""Prometheus metrics of one MEPL process, served on their own loopback listener.

The counters live where the work happens (the dispatcher's ``stats``, the
inbound processor's ``counts``, each bind's ``stats``); a collector reads them
at scrape time, so the hot paths do no metrics work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.web.resource import Resource


@dataclass(frozen=True)
class MetricsConfig:
    """The ``[metrics]`` section: where ``/metrics`` is served (``port = 0``: not served)."""

    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError("port must be between 0 (off) and 65535")


class LoopCollector(Collector):
    """Exports the loop's own counters at scrape time."""

    def __init__(self, dispatch: Callable[[], Mapping[str, int]],
                 inbound: Callable[[], Mapping[str, int]],
                 binds: Callable[[], Mapping[str, tuple[bool, Mapping[str, int]]]]) -> None:
        self._dispatch = dispatch
        self._inbound = inbound
        self._binds = binds

    def collect(self) -> Iterator[Any]:
        """One family per source."""
        dispatch = CounterMetricFamily("mepl_dispatch", "Commands by dispatch outcome",
                                       labels=["outcome"])
        for outcome, value in self._dispatch().items():
            dispatch.add_metric([outcome], value)
        yield dispatch
        inbound = CounterMetricFamily("mepl_inbound", "Inbound parts, replies, alerts, "
                                      "receipts and rejections", labels=["event"])
        for event, value in sorted(self._inbound().items()):
            inbound.add_metric([event], value)
        yield inbound
        up = GaugeMetricFamily("mepl_smpp_link_up", "1 when the SMPP link is bound",
                               labels=["link"])
        pdus = CounterMetricFamily("mepl_smpp_link", "SMPP link counters",
                                   labels=["link", "counter"])
        for link, (is_up, stats) in sorted(self._binds().items()):
            up.add_metric([link], 1.0 if is_up else 0.0)
            for name, value in sorted(stats.items()):
                pdus.add_metric([link, name], value)
        yield up
        yield pdus


class MetricsResource(Resource):
    """``GET /metrics`` in the Prometheus text format."""

    isLeaf = True  # noqa: N815 - Twisted API

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._registry = registry

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - Twisted API
        """The current values of every metric."""
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self._registry)
