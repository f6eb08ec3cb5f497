"""A bind to one SMSC: an :class:`OutboundChannel` kept up by ``ClientService``.

:class:`SmppBind` owns the outbound queue (window, TPS bucket, link-wide
adaptive pause, in-order resends), hands deliver_sm to the injected
callbacks and answers them only when the callback's Deferred fires, and
reports every raw PDU to ``pdu_sink``.  What it buffers (records not yet
settled, deliver_sm not yet answered) is capped by ``max_buffered``: over
it, the bind stops reading (see :mod:`sms_gateway.smpp.backlog`).
Reconnects use exponential backoff with jitter; ``stopService`` drains,
answers what it received, unbinds and fails what is left.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.errors import (
    ChannelUnavailableError,
    MessageTooLongError,
    RemoteError,
    SubmitError,
)
from sms_gateway.events import DeliveryReceipt, InboundMessage
from sms_gateway.smpp import codec
from sms_gateway.smpp.backlog import Backlog
from sms_gateway.smpp.clock import Clock, DelayedCall
from sms_gateway.smpp.config import SmppLinkConfig
from sms_gateway.smpp.inbound_handler import InboundHandler
from sms_gateway.smpp.outbound import (
    THROTTLE_STATUSES,
    Job,
    Part,
    SubmitQueue,
    submit_bodies,
    submit_error,
)
from sms_gateway.smpp.protocol import SmppProtocol
from sms_gateway.smpp.receipts import ReceiptHold, normalise_id
from sms_gateway.smpp.records import PduRecord, PduSink, record_trace
from sms_gateway.smpp.segmentation import ReferenceCounter, segment
from sms_gateway.smpp.session import (
    BindFailed,
    BindSucceeded,
    Event,
    Outstanding,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Role,
    SmppSession,
    Unbound,
)
from sms_gateway.smpp.throttle import MIN_WAIT, AdaptivePause, TokenBucket, backoff

log = Logger()
BIND_COMMANDS = {"transceiver": codec.BIND_TRANSCEIVER, "transmitter": codec.BIND_TRANSMITTER,
                 "receiver": codec.BIND_RECEIVER}
InboundCallback = Callable[[InboundMessage], "Deferred[None]"]
ReceiptCallback = Callable[[DeliveryReceipt], "Deferred[None]"]


class BindRefusedError(RemoteError):
    """The SMSC answered our bind with an error ``status`` (a wrong password, say)."""

    def __init__(self, link: str, status: int) -> None:
        super().__init__(f"bind {link} refused by the SMSC: {codec.describe_status(status)}")
        self.link = link
        self.status = status


class SmppBind(Service):
    """One SMPP bind (ESME side), usable as an OutboundChannel."""

    def __init__(self, name: str, config: SmppLinkConfig, *, reactor: Clock,
                 endpoint: IStreamClientEndpoint,
                 on_inbound: InboundCallback, on_receipt: ReceiptCallback,
                 pdu_sink: PduSink | None = None, rng: random.Random | None = None) -> None:
        self._name = name
        self.config = config
        self.clock = reactor
        self.endpoint = endpoint
        self.pdu_sink = pdu_sink
        self.rng = rng or random.Random()  # noqa: S311 - jitter and references, not secrets
        self.references = ReferenceCounter(self.rng.randrange(1 << 16))
        self.queue = SubmitQueue()
        self.bucket = TokenBucket(config.tps, now=reactor.seconds())
        self.pause = AdaptivePause(config.throttle_pause_min, config.throttle_pause_max)
        # Held receipts count as buffered; a quarter of the cap at most, so that
        # they alone can never keep the gate shut (it opens at half the cap).
        self.hold: ReceiptHold[Any] = ReceiptHold(max_age=config.receipt_hold,
                                                  max_held=config.max_buffered // 4)
        self.backlog = Backlog(config.max_buffered, on_open=self._gate_opened,
                               on_close=self._gate_closed)
        self.inbound = InboundHandler(self, on_inbound, on_receipt)
        self.proto: SmppProtocol | None = None
        self._conn: SmppProtocol | None = None  # the live connection, bound or not
        self.stats = {"submitted": 0, "accepted": 0, "throttled": 0, "resent": 0,
                      "failed": 0, "binds": 0, "deliver_sm": 0, "read_pauses": 0}
        self._in_flight = 0
        self._stopping = False
        self._wake: DelayedCall | None = None
        self._reopen_call: DelayedCall | None = None
        self._up_waiters: list[Deferred[None]] = []
        self._refusal_waiters: list[Deferred[None]] = []  # also in _up_waiters
        self._drain_waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []
        self._unbind_waiters: list[Deferred[None]] = []
        self._down_timer: DelayedCall | None = None
        self.failed_binds = 0  # consecutive connections that never got bound
        self._backoff = backoff(config.reconnect_min, config.reconnect_max, self.rng)
        self._client: ClientService | None = None
        self.setName(name)  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------ channel API
    @property
    def name(self) -> str:  # type: ignore[override]
        """The configured link name."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def is_up(self) -> bool:
        """True while bound for sending (not a receiver bind) and not shutting down."""
        return self.is_bound and not self._stopping and self.config.bind_mode != "receiver"

    @property
    def is_bound(self) -> bool:
        """True while a bind (of any mode) is established."""
        return self.proto is not None and self.proto.session.is_bound

    def when_up(self, *, refusal_fails: bool = False) -> Deferred[None]:
        """A Deferred that fires once the link is bound (now if it already is).

        With ``refusal_fails``, it fails with :class:`BindRefusedError` as soon
        as the SMSC refuses a bind, instead of waiting for a later one.
        """
        if self.is_bound:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._up_waiters.append(d)
        if refusal_fails:
            self._refusal_waiters.append(d)
        return d

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        """Segment and submit ``message``; fires with one message id per part."""
        if self._stopping or not self.running:
            return defer.fail(ChannelUnavailableError("link is not running", link=self.name))
        cfg = self.config
        try:
            parts = segment(message, mode=cfg.long_message, max_parts=cfg.max_parts,
                            references=self.references, ref_bits=cfg.concat_ref_bits)
            bodies = submit_bodies(message, parts, cfg)
        except MessageTooLongError as exc:
            return defer.fail(exc)
        except ValueError as exc:
            return defer.fail(SubmitError(f"cannot encode message: {exc}", temporary=False,
                                          link=self.name))
        d: Deferred[SubmitResult] = Deferred()
        self.queue.add_job(Job(message, d, [None] * len(bodies), len(bodies)), bodies)
        if self.proto is None:  # queued until the link is back, for down_timeout at most
            self._arm_down_timer()
        self.pump()
        return d

    # ---------------------------------------------------------------- service
    def startService(self) -> None:  # noqa: N802 - Twisted API
        """Start connecting (and reconnecting, with backoff and jitter)."""
        super().startService()  # type: ignore[no-untyped-call]
        self._stopping = False
        factory: Any = Factory.forProtocol(self._build_protocol)  # type: ignore[arg-type]
        self._client = ClientService(
            self.endpoint, factory,
            retryPolicy=self._retry_delay, clock=cast(Any, self.clock))
        self._client.startService()

    def _build_protocol(self) -> SmppProtocol:
        cfg = self.config
        session = SmppSession(Role.ESME, window=cfg.window, response_timeout=cfg.response_timeout,
                              enquire_link_interval=cfg.enquire_link_interval,
                              now=self.clock.seconds(), trace=self.pdu_sink is not None)
        return SmppProtocol(session, self, self.clock, on_flush=self._trace,
                            gate=self.backlog.allowance)

    def _retry_delay(self, attempt: int) -> float:
        # ClientService counts failed TCP connects only; a refused bind is a
        # connection that "succeeded", so count those here to keep backing off.
        return self._backoff(max(attempt, self.failed_binds))

    def stopService(self) -> Deferred[None]:  # type: ignore[override]  # noqa: N802
        """Drain outstanding submits (bounded by drain_timeout), unbind, stop."""
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.proto is not None:
            until = self.clock.seconds() + self.config.drain_timeout
            if not await self._drained(self._submits_done, until):
                log.warn("bind {link}: drain timed out, {n} submits left", link=self.name,
                         n=len(self.queue) + self._in_flight)
            for held in self.hold.release_all():  # answered before the unbind
                self.inbound.deliver_held(held.item)
            if not await self._drained(self._received_done, until):
                log.warn("bind {link}: drain timed out, {n} deliver_sm unanswered",
                         link=self.name, n=self.backlog.inbound)
        proto = self.proto
        if proto is not None and proto.session.unbind(self.clock.seconds()) is not None:
            unbound: Deferred[None] = Deferred()
            self._unbind_waiters.append(unbound)
            proto.flush()
            unbound.addTimeout(self.config.response_timeout, cast(Any, self.clock))
            with contextlib.suppress(defer.TimeoutError):
                await unbound
        self._fail_queued("link stopped")
        for held in self.hold.release_all():
            self.inbound.deliver_held(held.item)
        self.inbound.stop()
        for timer in (self._wake, self._down_timer, self._reopen_call):
            if timer is not None and timer.active():
                timer.cancel()
        if self._client is not None:
            stopped = self._client.stopService()
            stopped.addTimeout(self.config.response_timeout, cast(Any, self.clock))
            with contextlib.suppress(defer.TimeoutError):
                await stopped

    async def _drained(self, done: Callable[[], bool], until: float) -> bool:
        """Wait (until the clock reads ``until``) for ``done()``; False on timeout."""
        if done():
            return True
        waiter: Deferred[None] = Deferred()
        self._drain_waiters.append((done, waiter))
        waiter.addTimeout(max(0.0, until - self.clock.seconds()), cast(Any, self.clock))
        try:
            await waiter
        except defer.TimeoutError:
            return False
        return True

    def _submits_done(self) -> bool:
        return self.proto is None or (not len(self.queue) and not self._in_flight)

    def _received_done(self) -> bool:
        return self.proto is None or self.backlog.inbound == 0

    def _fail_queued(self, reason: str) -> None:
        for job in self.queue.jobs():
            self._fail(job, SubmitError(reason, temporary=True, link=self.name))
        self.queue = SubmitQueue(counter=self.queue.counter)

    # ------------------------------------------------------------------ pump
    def pump(self) -> None:
        """Send queued parts while the window, the bucket and the pause allow."""
        proto = self.proto
        if proto is None or not proto.session.is_bound or not len(self.queue):
            self.check_drained()
            return
        session = proto.session
        now = self.clock.seconds()
        wait = self.pause.remaining(now)
        sent = False
        budget = self.backlog.room()  # each submit_sm is one more record; reopening pumps
        while not wait and session.window_free > 0 and budget > 0:
            budget -= 1
            if not self.bucket.try_take(now):
                wait = self.bucket.delay(now)
                break
            part = self.queue.pop()
            if part is None:
                break
            part.attempts += 1
            session.send_request(codec.SUBMIT_SM, part.body, now, part)
            self._in_flight += 1
            self.stats["submitted"] += 1
            sent = True
        if sent:
            proto.flush()
        if wait and len(self.queue) and (self._wake is None or not self._wake.active()):
            self._wake = self.clock.callLater(max(wait, MIN_WAIT), self._woken)

    def _woken(self) -> None:
        self._wake = None
        self.pump()

    def check_drained(self) -> None:
        """Fire the stop's drain waiters whose condition now holds."""
        if not self._drain_waiters:
            return
        waiters, self._drain_waiters = self._drain_waiters, []
        for done, d in waiters:
            if d.called:
                continue  # timed out
            if done():
                d.callback(None)
            else:
                self._drain_waiters.append((done, d))

    # ------------------------------------------------------- session handler
    def session_started(self, proto: SmppProtocol) -> None:
        """Connected: send our bind."""
        self._conn = proto
        cfg = self.config
        proto.session.bind(BIND_COMMANDS[cfg.bind_mode], cfg.system_id, cfg.password,
                           cfg.system_type, self.clock.seconds())

    def session_events(self, proto: SmppProtocol, events: list[Event]) -> None:
        """Handle one batch of session events, then send what the window allows."""
        for event in events:
            if isinstance(event, ResponseReceived):
                if event.request.command_id == codec.SUBMIT_SM:
                    self._on_submit_resp(event.pdu, event.request)
            elif isinstance(event, RequestReceived):
                self.inbound.on_request(proto, event.pdu)
            elif isinstance(event, ResponseTimedOut):
                if event.request.command_id == codec.SUBMIT_SM:
                    self._unanswered(event.request, "no submit_sm_resp in time")
            elif isinstance(event, BindSucceeded):
                self._on_bound(proto)
            elif isinstance(event, BindFailed):
                self._on_bind_failed(proto, event.status)
            elif isinstance(event, ProtocolError | Unbound):
                self._on_problem(event)
        self.pump()

    def session_ended(self, proto: SmppProtocol, lost: list[Outstanding],
                      reason: Failure) -> None:
        """Connection lost: resend or fail every submit that got no answer."""
        if self._conn is proto:
            self._conn = None
        if self.proto is proto:
            self.proto = None
            unanswered = sum(1 for r in lost if r.command_id == codec.SUBMIT_SM)
            emit = log.info if self._stopping else log.warn
            emit("bind {link}: connection {how} ({n} submits unanswered)", link=self.name,
                 how="closed" if self._stopping else "lost", n=unanswered)
            self._arm_down_timer()
        else:  # never bound on this connection: back off further before the next try
            self.failed_binds += 1
        for request in lost:
            if request.command_id == codec.SUBMIT_SM:
                self._unanswered(request, "connection lost before submit_sm_resp")
        waiters, self._unbind_waiters = self._unbind_waiters, []
        for w in waiters:
            w.callback(None)
        self.check_drained()

    def _arm_down_timer(self) -> None:
        if self._stopping:
            return
        if self._down_timer is None or not self._down_timer.active():
            self._down_timer = self.clock.callLater(self.config.down_timeout, self._down_too_long)

    def _down_too_long(self) -> None:
        self._down_timer = None
        if self.proto is None and len(self.queue):
            log.warn("bind {link}: down for {s} s, failing {n} queued message(s)",
                     link=self.name, s=self.config.down_timeout, n=len(self.queue.jobs()))
            self._fail_queued(f"link down for over {self.config.down_timeout} s")

    def _on_bound(self, proto: SmppProtocol) -> None:
        if self._down_timer is not None and self._down_timer.active():
            self._down_timer.cancel()
        self._down_timer = None
        self.proto = proto
        self.stats["binds"] += 1
        log.info("bind {link} up ({mode})", link=self.name, mode=self.config.bind_mode)
        self.failed_binds = 0
        waiters, self._up_waiters = self._up_waiters, []
        self._refusal_waiters = []
        for w in waiters:
            w.callback(None)

    def _on_bind_failed(self, proto: SmppProtocol, status: int) -> None:
        log.error("bind {link} refused by the SMSC: {status}", link=self.name,
                  status=codec.describe_status(status))
        proto.session.should_close = True  # ClientService reconnects after a backoff
        refused, self._refusal_waiters = self._refusal_waiters, []
        self._up_waiters = [w for w in self._up_waiters if w not in refused]
        for w in refused:
            w.errback(BindRefusedError(self.name, status))

    def _on_problem(self, event: ProtocolError | Unbound) -> None:
        if isinstance(event, Unbound):
            waiters, self._unbind_waiters = self._unbind_waiters, []
            for d in waiters:
                d.callback(None)
            log.info("bind {link}: unbound (by peer: {peer})", link=self.name, peer=event.by_peer)
        else:
            log.warn("bind {link}: protocol error: {reason}", link=self.name,
                     reason=event.reason)

    # ------------------------------------------------------------- submits
    def _on_submit_resp(self, pdu: codec.Pdu, request: Outstanding) -> None:
        part = request.context
        assert isinstance(part, Part)
        self._in_flight -= 1
        job = part.job
        status = pdu.status
        if status == codec.ESME_ROK and pdu.command_id == codec.SUBMIT_SM_RESP:
            try:
                raw_id = codec.decode_message_id_body(pdu.body)
            except codec.CodecError:
                raw_id = None
            if not raw_id:
                self._fail(job, SubmitError("submit_sm_resp without a message id",
                                            temporary=True, link=self.name))
                return
            message_id = normalise_id(raw_id, self.config.message_id_mode)
            self.pause.succeeded()
            self.stats["accepted"] += 1
            if job.done:  # the message already failed: its receipts may go out
                self._release(message_id)
                return
            job.ids[part.index] = message_id
            job.remaining -= 1
            if job.remaining == 0:
                job.done = True
                ids = tuple(i for i in job.ids if i is not None)
                job.deferred.callback(SubmitResult(self.name, ids))
                for known in ids:  # receipts wait until the caller has every part id
                    self._release(known)
            return
        if status in THROTTLE_STATUSES:
            self.stats["throttled"] += 1
            self.pause.throttled(self.clock.seconds())
            if not job.done:
                self.stats["resent"] += 1
                self.queue.requeue(part)
            return
        self._fail(job, submit_error(status or codec.ESME_RSYSERR, self.name))

    def _unanswered(self, request: Outstanding, why: str) -> None:
        part = request.context
        assert isinstance(part, Part)
        self._in_flight -= 1
        if part.job.done:
            return
        if self.config.unacked_policy == "resubmit" and part.attempts < self.config.max_attempts:
            self.stats["resent"] += 1
            self.queue.requeue(part)
        else:
            self._fail(part.job, SubmitError(why, temporary=True, link=self.name))

    def _fail(self, job: Job, error: Exception) -> None:
        if job.done:
            return
        job.done = True
        self.stats["failed"] += 1
        job.deferred.errback(error)
        for known in job.ids:
            if known is not None:
                self._release(known)

    def _release(self, message_id: str) -> None:
        for held in self.hold.note_submitted(message_id):
            self.inbound.deliver_held(held.item)

    def _trace(self, session: SmppSession) -> None:
        if self.pdu_sink is not None:
            record_trace(session, self._record, self.name, self.clock.seconds())

    def _record(self, record: PduRecord) -> None:
        """Hand ``record`` to the sink; count it as buffered until its Deferred fires."""
        assert self.pdu_sink is not None
        stored = self.pdu_sink(record)
        if stored is None:
            return
        self.backlog.add_record()
        stored.addBoth(self._record_settled)

    def _record_settled(self, result: object) -> None:
        self.backlog.record_settled()
        if isinstance(result, Failure):
            log.warn("bind {link}: PDU record not stored: {error}", link=self.name,
                     error=result.getErrorMessage())

    def _gate_closed(self) -> None:
        self.stats["read_pauses"] += 1

    def _gate_opened(self) -> None:
        # Not from inside the sink's callback chain (a batcher delivering a batch):
        # read again on the next reactor turn.
        if self._conn is None:
            return  # nothing to resume; a new connection reads through the gate
        if self._reopen_call is None or not self._reopen_call.active():
            self._reopen_call = self.clock.callLater(0, self._reopen)

    def _reopen(self) -> None:
        self._reopen_call = None
        if self._conn is not None:
            self._conn.resume_reading()
        self.pump()

    @property
    def buffered(self) -> int:
        """Records not yet settled by ``pdu_sink`` plus deliver_sm not yet answered."""
        return self.backlog.total

    def submits_in_flight(self) -> bool:
        """True while some submit_sm awaits its response."""
        return self._in_flight > 0

    def now_utc(self) -> datetime:
        """The injected clock as an aware datetime."""
        return datetime.fromtimestamp(self.clock.seconds(), UTC)
