"""The MEPL service: every part wired together, started and stopped in order.

Start: database pool (and the check of the message partitions) -> SMPP binds,
the HTTP callback listener and the metrics listener (``/metrics``, ``/healthz``,
``/readyz``) -> dispatcher and inbound worker -> state gauges.  Stop: readiness
withdrawn -> dispatcher (no new round) -> binds (drain, unbind, fail what
waits for a link that is down) and listeners -> the dispatcher's last round
records its outcomes -> inbound items flushed -> inbound worker (applies every item due,
including those the binds stored while stopping, then stops) -> PDU log
flushed -> pool.  So a stopped process leaves in the inbound queue only what
cannot be applied yet (receipts waiting for their submit, items retried later),
never an item it acknowledged and could have applied.
The reactor is passed in; this module never imports the global one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Engine
from twisted.application.internet import TCPServer
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.logger import Logger
from twisted.web.server import Site

from blobstore.pdu_batches import insert_pdu_batches_txn, pack_pdu
from blobstore.pdu_log import PduLog, pdu_line
from blobstore.pool import DatabasePool
from mepl.admin.handlers import KeyRotator
from mepl.admin.server import AdminListener, build_admin
from mepl.health import HealthChecks, operations_root
from mepl.http_store import blobstore_callback_store
from mepl.inbound import InboundReceiver
from mepl.metrics import (
    LoopCollector,
    ReactorLag,
    StateGauges,
    SubmitLatency,
    TimedRunner,
    bind_sample,
)
from mepl.outbound import Dispatcher
from mepl.runtime.inbound_worker import InboundWorker
from mepl.runtime.notify import NotificationListener
from mepl.runtime.partitions import PartitionKeeper
from mepl.settings import Settings
from mepl.signer import ServerSigner
from sms_gateway.channel import OutboundChannel
from sms_gateway.http import CallbackHandler, HttpMetrics, HttpSendChannel, build_site
from sms_gateway.http.listen import CallbackListener
from sms_gateway.routing import Route, Router
from sms_gateway.smpp.bind import SmppBind
from sms_gateway.smpp.links import build_binds, records_bound
from sms_gateway.smpp.records import PduRecord

log = Logger()

EventSink = Callable[[str, dict[str, Any]], None]

FINISH_TIMEOUT_S = 10.0
"""At stop, how long the inbound worker goes on applying what is due (then it stops)."""


class MeplService(MultiService):
    """The main event-processing loop of one MEPL process."""

    def __init__(self, settings: Settings, *, reactor: Any, engine: Engine,
                 signer: ServerSigner, on_event: EventSink | None = None,
                 worker: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        self.reactor = reactor
        self.registry = CollectorRegistry()
        self.pdu_errors = Counter("mepl_pdu_store_errors", "PDUs that could not be stored",
                                  registry=self.registry)
        self.pool = DatabasePool.from_config(engine, reactor, settings.database)
        # Every transaction goes through the timing wrapper (mepl_db_transaction_seconds).
        self.runner = TimedRunner(self.pool, reactor, self.registry)
        sink, write_txn = {"all": (self._store_pdu, None),
                           "batched": (self._store_packed_pdu, insert_pdu_batches_txn),
                           "none": (None, None)}[settings.smpp.pdu_log]
        self.pdu_log: PduLog[Any] = PduLog(
            self.runner, reactor, max_rows=settings.database.batch_max_rows,
            max_delay_s=settings.database.pdu_batch_max_delay_ms / 1000,
            # at least what the binds can hold unsettled, so it never refuses a PDU record
            max_backlog=max(50_000, records_bound(settings.smpp)),
            on_lost=self.pdu_errors.inc,
            write_txn=write_txn)
        worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.worker = InboundWorker(
            runner=self.runner, clock=reactor, server_id=signer.server_id,
            config=settings.dispatch, worker=worker,
            policy_ttl=timedelta(minutes=settings.signing.command_validity_minutes),
            on_event=on_event, group=True)
        self.inbound = InboundReceiver(runner=self.runner, clock=reactor, wake=self.worker.wake,
                                      hand_over=self.worker)
        self.binds: dict[str, SmppBind] = build_binds(
            settings.smpp, reactor=reactor, on_inbound=self.inbound.on_inbound,
            on_receipt=self.inbound.on_receipt,
            pdu_sink=sink)
        for bind in self.binds.values():
            bind.setServiceParent(self)  # type: ignore[no-untyped-call]
        channels: dict[str, OutboundChannel] = dict(self.binds)
        self.http_port: Any = None
        if settings.http.gateways:
            self._add_http(channels)
        self.http_senders = [name for name in channels if name not in self.binds]
        latency = SubmitLatency(self.registry)
        channels = {name: latency.wrap(channel, reactor) for name, channel in channels.items()}
        default = (Route(links=tuple(channels)),) if channels else ()
        routes = settings.smpp.routes or default
        self.router = Router(routes, channels)
        self.registry.register(LoopCollector(
            dispatch=lambda: {"claimed": self.dispatcher.stats.claimed,
                              "sent": self.dispatcher.stats.sent,
                              "retried": self.dispatcher.stats.retried,
                              "failed": self.dispatcher.stats.failed,
                              "expired": self.dispatcher.stats.expired,
                              "released": self.dispatcher.stats.released,
                              "resent": self.dispatcher.stats.resent},
            inbound=lambda: dict(self.inbound.counts + self.worker.counts),
            binds=lambda: {name: bind_sample(b) for name, b in self.binds.items()}))
        self.lag = ReactorLag(reactor, self.registry, settings.metrics.lag_interval_s)
        self.state_gauges = StateGauges(self.runner, reactor, self.registry,
                                        settings.metrics.refresh_interval_s)
        self.partitions = PartitionKeeper(self.runner, reactor)
        self.loops = {"dispatcher": False, "inbound_worker": False}
        self.health: HealthChecks | None = None
        if settings.metrics.port:
            self.health = HealthChecks(
                reactor=reactor, engine=engine, config=settings.metrics, lag=self.lag,
                channels=lambda: {name: b.is_up for name, b in self.binds.items()},
                http_senders=lambda: list(self.http_senders), loops=lambda: dict(self.loops))
            self.metrics_service = TCPServer(
                settings.metrics.port, Site(operations_root(self.registry, self.health)),
                interface=settings.metrics.host, reactor=reactor)
            self.metrics_service.setServiceParent(self)  # type: ignore[no-untyped-call]
        self.dispatcher = Dispatcher(
            runner=self.runner, clock=reactor, submitter=self.router, seal=signer.seal,
            key_id=lambda: signer.key_id, config=settings.dispatch,
            worker=worker,
            channel_of=lambda link: "smpp" if link in self.binds else "http",
            ready=lambda: any(c.is_up for c in channels.values()))

        wakes = {"mepl_commands": self.dispatcher.wake, "mepl_inbound": self.worker.wake}
        self.admin: AdminListener | None = None
        if settings.admin.enabled:
            wakes["mepl_events"] = self._add_admin(signer)
        self.listener = NotificationListener(engine, reactor, wakes)

    def _add_admin(self, signer: ServerSigner) -> Callable[[], None]:
        """The admin API on its own socket (never the gateway or metrics port)."""
        settings = self.settings
        store = getattr(signer, "_store", None)
        keys = (KeyRotator(store, getattr(signer, "_passphrase", None))
                if store is not None else None)
        self.admin_api, hub, site = build_admin(
            settings.admin, runner=self.runner, reactor=self.reactor,
            approvals=settings.approvals, region=settings.mepl.default_region, keys=keys)
        self.admin = AdminListener(settings.admin, site, reactor=self.reactor,
                                   state_dir=settings.mepl.state_dir)
        self.admin.setServiceParent(self)  # type: ignore[no-untyped-call]
        return hub.wake

    def _add_http(self, channels: dict[str, OutboundChannel]) -> None:
        http = self.settings.http
        store = blobstore_callback_store(self.runner)
        self.http_handler = CallbackHandler(
            http, store, clock=self.reactor, metrics=HttpMetrics(self.registry),
            on_inbound=self.inbound.on_callback, on_receipt=self.inbound.on_callback)
        self.worker.reparse = self.http_handler.reparse
        cap = max(gw.max_body_bytes for gw in http.gateways.values())
        site = build_site(self.http_handler, max_body_bytes=cap, reactor=self.reactor)
        self.http_service = CallbackListener(self.reactor, site, host=http.host,
                                             port=http.port, reuse_port=http.reuse_port)
        self.http_service.setServiceParent(self)  # type: ignore[no-untyped-call]
        for name, gw in http.gateways.items():
            if gw.can_send and gw.format in ("kannel", "jasmin"):
                channels[name] = HttpSendChannel(gw, reactor=self.reactor)

    def _store_pdu(self, record: PduRecord) -> Deferred[None]:
        # The bind counts the record as buffered until this fires (back-pressure).
        return self.pdu_log.add(pdu_line(
            direction=record.direction, link=record.link, command=record.command,
            sequence=record.sequence, status=record.status, reference=record.reference,
            message_id=record.message_id, raw=record.raw))

    def _store_packed_pdu(self, record: PduRecord) -> Deferred[None]:
        # pdu_log = "batched": the batch is stored as one row per (direction, link).
        return self.pdu_log.add((record.direction, record.link,
                                 pack_pdu(record.at, record.reference, record.raw)))

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the callback listener is bound (after start), or None."""
        if not hasattr(self, "http_service") or self.http_service.port is None:
            return None
        host = self.http_service.port.getHost()
        return host.host, host.port

    def startService(self) -> None:  # noqa: N802 - Twisted API
        """Start the pool, the links and listeners, then the dispatcher."""
        self.pool.start()
        self.partitions.start()
        super().startService()  # type: ignore[no-untyped-call]
        self.lag.start()
        self.dispatcher.start()
        self.worker.start()
        self.loops.update(dispatcher=True, inbound_worker=True)
        self.listener.start()
        self.state_gauges.start()
        log.info("MEPL started: {binds} SMPP link(s), {gateways} HTTP gateway(s)",
                 binds=len(self.binds), gateways=len(self.settings.http.gateways))

    @inlineCallbacks
    def stopService(self) -> Any:  # noqa: N802 - Twisted API
        """Stop in reverse order, flushing stored PDUs before the pool goes."""
        self.loops.update(dispatcher=False, inbound_worker=False)  # /readyz: not ready
        self.listener.stop()
        self.state_gauges.stop()
        self.partitions.stop()
        # No new rounds.  The round in progress may wait on submits a link holds
        # for its reconnection (down_timeout): the links are stopped without
        # waiting for it, they drain what is in flight and fail what waits for
        # them, and the round then records those outcomes (the pool still runs).
        dispatcher_stopped = self.dispatcher.stop()
        # The links and listeners still store what they receive while they stop
        # (deliver_sm read before the unbind, the early receipts a bind releases,
        # callbacks in progress), all of it acknowledged: the worker outlives
        # them and applies what is due before it stops.
        yield super().stopService()  # type: ignore[no-untyped-call]
        yield dispatcher_stopped
        yield self.inbound.flush()
        yield self.worker.finish(FINISH_TIMEOUT_S)
        yield self.pdu_log.flush()
        self.lag.stop()
        self.pool.stop()
        if self.health is not None:
            self.health.close()
        log.info("MEPL stopped")

    def when_bound(self) -> Deferred[Any]:
        """Fires once every SMPP link is bound."""
        return gatherResults([b.when_up() for b in self.binds.values()])
