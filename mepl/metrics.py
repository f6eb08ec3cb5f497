"""Prometheus metrics of one MEPL process, served on their own loopback listener.

The counters live where the work happens (the dispatcher's ``stats``, the
inbound processor's ``counts``, each bind's ``stats``); a collector reads them
at scrape time, so the hot paths do no metrics work.  What needs timing is
measured by thin wrappers here (:class:`TimedRunner` around the database
pool, :class:`TimedChannel` around each outbound channel, :class:`ReactorLag`),
and what lives in the database (commands by state, the inbound queue) is
read by :class:`StateGauges` every ``refresh_interval_s``.  Every metric is
registered on the service's own :class:`CollectorRegistry`: nothing global.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource

from blobstore.operations import OperationalCounts, operational_counts_txn
from blobstore.pool import InteractionRunner
from sms_gateway.channel import OutboundChannel, OutboundMessage, SubmitResult

log = Logger()

P = ParamSpec("P")
T = TypeVar("T")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_SUFFIX = re.compile(r"\[[0-9]+\]$")


@dataclass(frozen=True)
class MetricsConfig:
    """The ``[metrics]`` section: where ``/metrics``, ``/healthz`` and ``/readyz`` are
    served (``port = 0``: not served).

    ``refresh_interval_s``: how often the database gauges (commands by state,
    inbound queue) are read; ``lag_interval_s``: how often the reactor lag is
    measured; ``ready_timeout_s``: the bound on ``/readyz``'s database check;
    ``max_lag_s``: ``/healthz`` fails while the last measured lag is above it.
    """

    host: str = "127.0.0.1"
    port: int = 0
    refresh_interval_s: float = 15.0
    lag_interval_s: float = 0.5
    ready_timeout_s: float = 2.0
    max_lag_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError("port must be between 0 (off) and 65535")
        if min(self.refresh_interval_s, self.lag_interval_s, self.ready_timeout_s,
               self.max_lag_s) <= 0:
            raise ValueError("refresh_interval_s, lag_interval_s, ready_timeout_s and "
                             "max_lag_s must be > 0")


@dataclass(frozen=True)
class BindSample:
    """One SMPP bind at scrape time."""

    up: bool
    stats: Mapping[str, int]
    window_in_use: int
    window_size: int


def bind_sample(bind: Any) -> BindSample:
    """Read a :class:`~sms_gateway.smpp.bind.SmppBind`'s state (no side effect)."""
    proto = getattr(bind, "proto", None)
    session = getattr(proto, "session", None)
    size = int(bind.config.window)
    in_use = size - int(session.window_free) if session is not None else 0
    return BindSample(bool(bind.is_up), dict(bind.stats), max(in_use, 0), size)


class LoopCollector(Collector):
    """Exports the loop's own counters at scrape time."""

    def __init__(self, dispatch: Callable[[], Mapping[str, int]],
                 inbound: Callable[[], Mapping[str, int]],
                 binds: Callable[[], Mapping[str, BindSample]]) -> None:
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
        counts = self._inbound()
        inbound = CounterMetricFamily("mepl_inbound", "Inbound parts, replies, alerts, "
                                      "receipts and rejections", labels=["event"])
        failures = CounterMetricFamily(
            "mepl_verification_failures", "Inbound frames refused, by reason "
            "(bad_signature, unknown_device, replayed_counter, stale_alert...)",
            labels=["reason"])
        for event, value in sorted(counts.items()):
            inbound.add_metric([event], value)
            if event.startswith("rejected_"):
                failures.add_metric([event.removeprefix("rejected_")], value)
        yield inbound
        yield failures
        yield from self._bind_families(self._binds())

    @staticmethod
    def _bind_families(binds: Mapping[str, BindSample]) -> Iterator[Any]:
        up = GaugeMetricFamily("mepl_smpp_link_up", "1 when the SMPP link is bound",
                               labels=["link"])
        pdus = CounterMetricFamily("mepl_smpp_link", "SMPP link counters",
                                   labels=["link", "counter"])
        in_use = GaugeMetricFamily("mepl_smpp_window_in_use",
                                   "Requests awaiting their response on the bind",
                                   labels=["link"])
        size = GaugeMetricFamily("mepl_smpp_window_size", "The bind's window (configured)",
                                 labels=["link"])
        submits = CounterMetricFamily("mepl_smpp_submits", "submit_sm PDUs sent",
                                      labels=["link"])
        throttles = CounterMetricFamily("mepl_smpp_throttles",
                                        "submit_sm answered with a throttling status",
                                        labels=["link"])
        reconnects = CounterMetricFamily("mepl_smpp_reconnects",
                                         "Binds after the first (the link came back)",
                                         labels=["link"])
        for link, sample in sorted(binds.items()):
            up.add_metric([link], 1.0 if sample.up else 0.0)
            for name, value in sorted(sample.stats.items()):
                pdus.add_metric([link, name], value)
            in_use.add_metric([link], sample.window_in_use)
            size.add_metric([link], sample.window_size)
            submits.add_metric([link], sample.stats.get("submitted", 0))
            throttles.add_metric([link], sample.stats.get("throttled", 0))
            reconnects.add_metric([link], max(sample.stats.get("binds", 0) - 1, 0))
        yield from (up, pdus, in_use, size, submits, throttles, reconnects)


def transaction_label(desc: str) -> str:
    """The label of a transaction description: without its ``[N]`` batch-size suffix."""
    return _BATCH_SUFFIX.sub("", desc)


class TimedRunner:
    """An :class:`~blobstore.pool.InteractionRunner` that times every transaction.

    ``mepl_db_transaction_seconds{desc}``: from the call to the result, on the
    reactor's clock (waiting for a worker thread, retries and COMMIT included).
    """

    def __init__(self, runner: InteractionRunner, clock: Any,
                 registry: CollectorRegistry) -> None:
        self._runner = runner
        self._clock = clock
        self.histogram = Histogram(
            "mepl_db_transaction_seconds", "Database transactions, by description: "
            "time to the result (queueing, retries, commit included)", ["desc"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self._children: dict[str, Any] = {}

    def run_interaction(self, desc: str, fn_txn: Callable[Concatenate[Connection, P], T],
                        /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Run the transaction on the wrapped runner, observing its duration."""
        started = self._clock.seconds()
        d = self._runner.run_interaction(desc, fn_txn, *args, **kwargs)

        def observed(result: Any) -> Any:
            label = transaction_label(desc)
            child = self._children.get(label)
            if child is None:
                child = self._children[label] = self.histogram.labels(label)
            child.observe(max(self._clock.seconds() - started, 0.0))
            return result

        return d.addBoth(observed)


class SubmitLatency:
    """``mepl_submit_latency_seconds{link}``: a submit to its answer (every part's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "mepl_submit_latency_seconds", "From a submit to the link's answer for every "
            "part (window, rate-limit queueing and SMSC response)", ["link"],
            buckets=LATENCY_BUCKETS, registry=registry)

    def wrap(self, channel: OutboundChannel, clock: Any) -> TimedChannel:
        """``channel`` with its submits timed."""
        return TimedChannel(channel, self.histogram.labels(channel.name), clock)


class TimedChannel:
    """An :class:`~sms_gateway.channel.OutboundChannel` whose submits are timed."""

    def __init__(self, channel: OutboundChannel, histogram: Any, clock: Any) -> None:
        self.channel = channel
        self._histogram = histogram
        self._clock = clock

    @property
    def name(self) -> str:
        """The wrapped channel's name."""
        return self.channel.name

    @property
    def is_up(self) -> bool:
        """Whether the wrapped channel can take a submit now."""
        return self.channel.is_up

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        """Submit through the wrapped channel; time the answer (success or failure)."""
        started = self._clock.seconds()

        def observed(result: Any) -> Any:
            self._histogram.observe(max(self._clock.seconds() - started, 0.0))
            return result

        return self.channel.submit(message).addBoth(observed)


class ReactorLag:
    """Measures how late the reactor runs a timer: a call every ``interval_s`` that
    notes how long after its due time it ran (``mepl_reactor_lag_seconds``)."""

    def __init__(self, clock: Any, registry: CollectorRegistry, interval_s: float) -> None:
        self._clock = clock
        self._interval = interval_s
        self.histogram = Histogram("mepl_reactor_lag_seconds", "How late a timer ran "
                                   "(the event loop was busy or blocked)",
                                   buckets=LAG_BUCKETS, registry=registry)
        self.gauge = Gauge("mepl_reactor_lag_last_seconds", "The last measured reactor lag",
                           registry=registry)
        self.last = 0.0
        self._due = 0.0
        self._call: Any = None

    def start(self) -> None:
        """Begin measuring."""
        if self._call is None:
            self._schedule()

    def stop(self) -> None:
        """Stop measuring."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self._clock.seconds() + self._interval
        self._call = self._clock.callLater(self._interval, self._tick)

    def _tick(self) -> None:
        self.last = max(self._clock.seconds() - self._due, 0.0)
        self.histogram.observe(self.last)
        self.gauge.set(self.last)
        self._schedule()


class StateGauges:
    """Commands by state and the inbound queue (depth, oldest item's age), read from
    the database every ``interval_s`` with one cheap transaction."""

    def __init__(self, runner: InteractionRunner, clock: Any, registry: CollectorRegistry,
                 interval_s: float) -> None:
        self._runner = runner
        self._clock = clock
        self._interval = interval_s
        self.commands = Gauge("mepl_commands", "Commands by state (every process sees the "
                              "whole database)", ["state"], registry=registry)
        self.inbound = Gauge("mepl_inbound_queue_depth", "Inbound queue items by state "
                             "(pending, waiting, failed = parked)", ["state"], registry=registry)
        self.oldest = Gauge("mepl_inbound_queue_oldest_age_seconds", "Age of the oldest "
                            "inbound queue item, by state (0: none)", ["state"],
                            registry=registry)
        self.partitions_ahead = Gauge(
            "mepl_messages_partition_months_ahead", "Whole months after the current one "
            "that have a messages partition (MEPL keeps 3; below 1 needs a look)",
            registry=registry)
        self.default_rows = Gauge(
            "mepl_messages_default_partition_rows", "Messages in the default partition "
            "(should be 0; counted up to 100000)", registry=registry)
        self.refreshed = Gauge("mepl_state_refreshed_timestamp_seconds", "When the database "
                               "gauges were last read (reactor clock)", registry=registry)
        self._call: Any = None
        self._running: Deferred[Any] | None = None
        self._stopped = True

    def start(self) -> None:
        """Read now, then every interval."""
        self._stopped = False
        self._refresh()

    def stop(self) -> None:
        """No more reads."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def refresh(self) -> Deferred[Any]:
        """Read the counts once; fires when the gauges are set (or the read failed)."""
        d = self._runner.run_interaction("metrics state", operational_counts_txn)
        return d.addCallbacks(self._set, self._failed)

    def _refresh(self) -> None:
        self._call = None
        if self._stopped:
            return
        self._running = self.refresh()

        def again(_: Any) -> None:
            self._running = None
            if not self._stopped:
                self._call = self._clock.callLater(self._interval, self._refresh)

        self._running.addBoth(again)

    def _set(self, counts: OperationalCounts) -> None:
        for state, n in counts.commands.items():
            self.commands.labels(state).set(n)
        for state, n in counts.inbound.items():
            self.inbound.labels(state).set(n)
            self.oldest.labels(state).set(counts.inbound_oldest_s.get(state, 0.0))
        self.partitions_ahead.set(counts.partition_months_ahead)
        self.default_rows.set(counts.default_partition_rows)
        self.refreshed.set(self._clock.seconds())

    def _failed(self, failure: Any) -> None:
        log.warn("metrics: could not read the state gauges: {error}",
                 error=failure.getErrorMessage())


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
