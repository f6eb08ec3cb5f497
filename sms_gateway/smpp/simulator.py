"""An SMSC simulator: a real SMPP 3.4 server for tests, the demo and benchmarks.

It checks credentials, answers submit_sm with hex message ids, sends
receipts after a delay with a configurable outcome mix, lets callers inject
mobile-originated messages (:meth:`SmscSimulator.inject_mo`), observe
submits (:meth:`SmscSimulator.add_submit_observer`) and every PDU
(:meth:`SmscSimulator.add_pdu_observer`), and injects faults:
throttling above a TPS or in bursts (:meth:`SmscSimulator.throttle_burst`),
disconnects every N submits or on demand, dropped or slow responses,
duplicated and jittered (reordered) receipts, garbage bytes.  ``stats``
counts what it did, including every deliver_sm sent and acknowledged.
It reuses the sans-I/O session core.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from sms_gateway.events import DeliveryStatus
from sms_gateway.smpp import codec
from sms_gateway.smpp.clock import Clock, DelayedCall
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.protocol import SmppProtocol
from sms_gateway.smpp.receipts import STATE_CODES, format_receipt_text
from sms_gateway.smpp.session import (
    BindRequested,
    Event,
    Outstanding,
    RequestReceived,
    ResponseReceived,
    ResponseTimedOut,
    Role,
    SmppSession,
)
from sms_gateway.smpp.throttle import TokenBucket
from sms_gateway.udh import Udh, encode_udh

log = Logger()
BAD_COMMAND_ID = 0x00000777  # not an SMPP 3.4 command


@dataclass(frozen=True)
class SimulatorConfig:
    """Behaviour of the simulated SMSC."""

    system_id: str = "sim"
    password: str = field(default="secret", repr=False)
    receipt_delay: float = 0.5
    outcomes: tuple[tuple[DeliveryStatus, float], ...] = ((DeliveryStatus.DELIVERED, 1.0),)
    receipt_tlvs: bool = True
    throttle_tps: float = 0.0
    disconnect_every: int = 0
    drop_responses: float = 0.0
    response_delay: float = 0.0
    bad_pdu_every: int = 0
    reject_prefixes: tuple[str, ...] = ()
    receipt_copies: int = 1
    receipt_jitter: float = 0.0
    window: int = 10
    response_timeout: float = 10.0
    log_pdus: bool = False

    def __post_init__(self) -> None:
        if not self.outcomes or any(w < 0 for _, w in self.outcomes):
            raise ValueError("outcomes need at least one non-negative weight")
        if not 0 <= self.drop_responses <= 1:
            raise ValueError("drop_responses is a probability between 0 and 1")
        if self.receipt_copies < 1 or self.receipt_jitter < 0:
            raise ValueError("receipt_copies is at least 1 and receipt_jitter not negative")


def parse_outcomes(text: str) -> tuple[tuple[DeliveryStatus, float], ...]:
    """Parse ``delivered=0.9,undeliverable=0.1`` into weighted outcomes."""
    out = []
    for item in text.split(","):
        name, _, weight = item.partition("=")
        try:
            out.append((DeliveryStatus(name.strip().lower()), float(weight)))
        except ValueError:
            raise ValueError(f"bad outcome {item!r}: use status=weight, "
                             "e.g. delivered=0.9") from None
    return tuple(out)


@dataclass(frozen=True)
class SubmittedMessage:
    """What an observer sees of each accepted submit_sm (an MT message)."""

    system_id: str
    message_id: str
    sm: ShortMessage
    at: float


ACK_SAMPLES = 500_000
"""How many deliver_sm acknowledgement times the simulator keeps (the latest)."""


class SimConnection:
    """One ESME connection to the simulator (the session handler)."""

    def __init__(self, sim: SmscSimulator) -> None:
        self.sim = sim
        self.proto: SmppProtocol | None = None
        self.system_id = ""
        self.pending: deque[tuple[bytes, Deferred[int] | None]] = deque()

    def session_started(self, proto: SmppProtocol) -> None:
        """A client connected."""
        self.proto = proto
        self.sim.connections.append(self)

    def session_events(self, proto: SmppProtocol, events: list[Event]) -> None:
        """Answer binds and submits, collect deliver_sm_resp."""
        for event in events:
            if isinstance(event, BindRequested):
                self._on_bind(proto, event.pdu)
            elif isinstance(event, RequestReceived):
                if event.pdu.command_id == codec.SUBMIT_SM:
                    self.sim.on_submit_sm(self, proto, event.pdu)
                else:
                    proto.session.send_response(event.pdu.command_id | codec.RESPONSE_BIT,
                                                event.pdu.sequence, codec.ESME_RINVCMDID)
            elif isinstance(event, ResponseReceived | ResponseTimedOut):
                self._on_deliver_done(event)
        self.send_pending()

    def session_ended(self, proto: SmppProtocol, lost: list[Outstanding],
                      reason: Failure) -> None:
        """A client went away; injected MOs in flight fail."""
        if self in self.sim.connections:
            self.sim.connections.remove(self)
        for request in lost:
            if isinstance(request.context, Deferred):
                request.context.errback(ConnectionError("ESME disconnected"))
        for _, d in self.pending:
            if d is not None:
                d.errback(ConnectionError("ESME disconnected"))
        self.pending.clear()

    def _on_bind(self, proto: SmppProtocol, pdu: codec.Pdu) -> None:
        try:
            bind = codec.decode_bind(pdu.body)
        except codec.CodecError:
            proto.session.reject_bind(pdu, codec.ESME_RBINDFAIL)
            return
        cfg = self.sim.config
        if bind.system_id != cfg.system_id:
            proto.session.reject_bind(pdu, codec.ESME_RINVSYSID)
        elif bind.password != cfg.password:
            proto.session.reject_bind(pdu, codec.ESME_RINVPASWD)
        else:
            self.system_id = bind.system_id
            proto.session.accept_bind(pdu, cfg.system_id)

    def _on_deliver_done(self, event: ResponseReceived | ResponseTimedOut) -> None:
        ok = isinstance(event, ResponseReceived) and event.pdu.status == codec.ESME_ROK
        self.sim.stats["deliver_ok" if ok else "deliver_error"] += 1
        if ok:
            self.sim.ack_seconds.append(self.sim.clock.seconds() - event.request.sent_at)
        d = event.request.context
        if not isinstance(d, Deferred):
            return
        if isinstance(event, ResponseReceived):
            d.callback(event.pdu.status)
        else:
            d.errback(TimeoutError("no deliver_sm_resp in time"))

    def deliver_in_flight(self) -> int:
        """deliver_sm sent on this connection and not answered yet."""
        if self.proto is None:
            return 0
        return sum(1 for r in self.proto.session.outstanding.values()
                   if r.command_id == codec.DELIVER_SM)

    @property
    def can_receive(self) -> bool:
        """True when bound as receiver or transceiver."""
        s = self.proto.session if self.proto else None
        return bool(s and s.is_bound and s.bind_command != codec.BIND_TRANSMITTER)

    def queue_deliver(self, body: bytes, d: Deferred[int] | None) -> None:
        """Send a deliver_sm as soon as the window allows."""
        self.pending.append((body, d))
        self.send_pending()
        if self.proto is not None:
            self.proto.flush()

    def send_pending(self) -> None:
        """Move queued deliver_sm into the window."""
        proto = self.proto
        if proto is None or not proto.session.is_bound:
            return
        now = self.sim.clock.seconds()
        while self.pending and proto.session.window_free > 0:
            body, d = self.pending.popleft()
            self.sim.stats["deliver_sm"] += 1
            proto.session.send_request(codec.DELIVER_SM, body, now, d)


class SmscSimulator:
    """The simulated SMSC: a factory for SMPP server connections plus control APIs."""

    def __init__(self, config: SimulatorConfig, *, clock: Clock,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - simulation, not secrets
        self.connections: list[SimConnection] = []
        self.bucket = TokenBucket(config.throttle_tps, now=clock.seconds())
        self.next_id = self.rng.randrange(1 << 28, 1 << 32)
        self.observers: list[Callable[[SubmittedMessage], None]] = []
        self.pdu_observers: list[Callable[[str, bytes], None]] = []
        self._timers: set[DelayedCall] = set()
        self.stats = {"submit_sm": 0, "accepted": 0, "throttled": 0, "dropped": 0,
                      "disconnects": 0, "receipts": 0, "mo": 0, "bad_pdus": 0, "rejected": 0,
                      "deliver_sm": 0, "deliver_ok": 0, "deliver_error": 0,
                      "dropped_binds": 0}
        self.ack_seconds: deque[float] = deque(maxlen=ACK_SAMPLES)
        """deliver_sm sent -> its deliver_sm_resp, the latest answered ones (callers clear it)."""
        self._storm = 0

    def factory(self) -> Factory:
        """The server factory to listen with."""
        def build() -> SmppProtocol:
            cfg = self.config
            session = SmppSession(Role.SMSC, window=cfg.window,
                                  response_timeout=cfg.response_timeout,
                                  enquire_link_interval=3600.0, now=self.clock.seconds(),
                                  trace=cfg.log_pdus or bool(self.pdu_observers))
            return SmppProtocol(session, SimConnection(self), self.clock,
                                on_flush=self._traced)
        return Factory.forProtocol(cast(Any, build))

    def add_submit_observer(self, observer: Callable[[SubmittedMessage], None]) -> None:
        """Call ``observer`` with every accepted submit_sm (the device simulator's MT feed)."""
        self.observers.append(observer)

    def add_pdu_observer(self, observer: Callable[[str, bytes], None]) -> None:
        """Call ``observer(direction, raw)`` for every PDU sent ("out") or read ("in").

        Only connections made after this call are observed.  Within one batch,
        the PDUs sent are reported before those read.
        """
        self.pdu_observers.append(observer)

    def _traced(self, session: SmppSession) -> None:
        tx, rx = session.pop_trace()
        for raw, _ in tx:
            if self.config.log_pdus:
                log.info("sim > {pdu} {hex}",
                         pdu=codec.command_name(codec.HEADER.unpack_from(raw)[1]), hex=raw.hex())
            for observer in self.pdu_observers:
                observer("out", raw)
        for pdu, _ in rx:
            if self.config.log_pdus:
                log.info("sim < {pdu} {hex}", pdu=pdu.name, hex=pdu.raw.hex())
            for observer in self.pdu_observers:
                observer("in", pdu.raw)

    # --------------------------------------------------------------- submits
    def on_submit_sm(self, conn: SimConnection, proto: SmppProtocol, pdu: codec.Pdu) -> None:
        """Answer one submit_sm, applying the configured faults."""
        cfg = self.config
        self.stats["submit_sm"] += 1
        if cfg.disconnect_every and self.stats["submit_sm"] % cfg.disconnect_every == 0:
            self.stats["disconnects"] += 1
            proto.session.should_close = True  # drop it, unanswered
            return
        if cfg.bad_pdu_every and self.stats["submit_sm"] % cfg.bad_pdu_every == 0:
            self.stats["bad_pdus"] += 1  # an unknown command the ESME must generic_nack
            proto.session.send_response(BAD_COMMAND_ID, pdu.sequence, 0, b"garbage")
        now = self.clock.seconds()
        if self._storm > 0 or not self.bucket.try_take(now):
            self._storm = max(self._storm - 1, 0)
            self.stats["throttled"] += 1
            proto.session.send_response(codec.SUBMIT_SM_RESP, pdu.sequence,
                                        codec.ESME_RTHROTTLED, b"\0")
            return
        if cfg.drop_responses and self.rng.random() < cfg.drop_responses:
            self.stats["dropped"] += 1
            return
        try:
            sm = codec.decode_short_message(pdu.body)
        except codec.CodecError:
            proto.session.send_response(codec.SUBMIT_SM_RESP, pdu.sequence,
                                        codec.ESME_RINVMSGLEN, b"\0")
            return
        if sm.destination_addr.startswith(self.config.reject_prefixes or ("\0",)):
            self.stats["rejected"] += 1
            proto.session.send_response(codec.SUBMIT_SM_RESP, pdu.sequence,
                                        codec.ESME_RINVDSTADR, b"\0")
            return
        self.next_id += 1
        message_id = format(self.next_id, "x")
        self.stats["accepted"] += 1
        body = codec.encode_message_id_body(message_id)
        if cfg.response_delay:
            self._later(cfg.response_delay, self._late_response, proto, pdu.sequence, body)
        else:
            proto.session.send_response(codec.SUBMIT_SM_RESP, pdu.sequence, 0, body)
        if self.observers:
            submitted = SubmittedMessage(conn.system_id, message_id, sm, now)
            for observer in self.observers:
                observer(submitted)
        if sm.registered_delivery & 0x03:
            for _ in range(cfg.receipt_copies):
                delay = cfg.receipt_delay + self.rng.uniform(0, cfg.receipt_jitter)
                self._later(delay, self._send_receipt, conn, message_id, sm, now)

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            self._timers.discard(call)
            fn(*args)
        call = self.clock.callLater(delay, run)
        self._timers.add(call)

    def stop(self) -> None:
        """Cancel pending receipts and late responses, and drop every connection."""
        for call in list(self._timers):
            if call.active():
                call.cancel()
        self._timers.clear()
        self.disconnect_all()

    def _late_response(self, proto: SmppProtocol, seq: int, body: bytes) -> None:
        proto.session.send_response(codec.SUBMIT_SM_RESP, seq, 0, body)
        proto.flush()

    def pick_outcome(self) -> DeliveryStatus:
        """Draw a final status from the outcome mix."""
        statuses = [s for s, _ in self.config.outcomes]
        weights = [w for _, w in self.config.outcomes]
        return self.rng.choices(statuses, weights)[0]

    def _send_receipt(self, conn: SimConnection, message_id: str, sm: ShortMessage,
                      submitted: float) -> None:
        target = conn if conn.can_receive else next(
            (c for c in self.connections if c.can_receive), None)
        if target is None:
            return
        status = self.pick_outcome()
        now = self.clock.seconds()
        text = format_receipt_text(message_id, status, datetime.fromtimestamp(submitted, UTC),
                                   datetime.fromtimestamp(now, UTC),
                                   "000" if status is DeliveryStatus.DELIVERED else "001")
        tlvs: tuple[tuple[int, bytes], ...] = ()
        if self.config.receipt_tlvs:
            tlvs = ((codec.TAG_RECEIPTED_MESSAGE_ID, message_id.encode("ascii") + b"\0"),
                    (codec.TAG_MESSAGE_STATE, bytes((STATE_CODES[status],))))
        body = codec.encode_short_message(ShortMessage(
            source_addr_ton=sm.dest_addr_ton, source_addr_npi=sm.dest_addr_npi,
            source_addr=sm.destination_addr, dest_addr_ton=sm.source_addr_ton,
            dest_addr_npi=sm.source_addr_npi, destination_addr=sm.source_addr,
            esm_class=codec.ESM_TYPE_RECEIPT, short_message=text.encode("ascii"), tlvs=tlvs))
        self.stats["receipts"] += 1
        target.queue_deliver(body, None)

    # ------------------------------------------------------------- MO / faults
    def inject_mo(self, sender: str, receiver: str, payload: bytes, data_coding: int = 0x04,
                  udh: Udh | None = None, *, sar: tuple[int, int, int] | None = None,
                  tlvs: Sequence[tuple[int, bytes]] = ()) -> Deferred[int]:
        """Send a mobile-originated deliver_sm to a bound ESME.

        ``udh`` goes in front of the payload with UDHI set; ``sar`` is
        ``(reference, total, seq)`` sent as SAR TLVs.  Fires with the
        deliver_sm_resp command_status.
        """
        target = next((c for c in self.connections if c.can_receive), None)
        if target is None:
            return defer.fail(ConnectionError("no ESME bound to receive"))
        header = encode_udh(udh) if udh is not None else b""
        extra = list(tlvs)
        if sar is not None:
            extra += [(codec.TAG_SAR_MSG_REF_NUM, sar[0].to_bytes(2, "big")),
                      (codec.TAG_SAR_TOTAL_SEGMENTS, bytes((sar[1],))),
                      (codec.TAG_SAR_SEGMENT_SEQNUM, bytes((sar[2],)))]
        user_data = header + payload
        long_data = len(user_data) > 254
        body = codec.encode_short_message(ShortMessage(
            source_addr_ton=1, source_addr_npi=1, source_addr=sender.lstrip("+"),
            dest_addr_ton=1, dest_addr_npi=1, destination_addr=receiver.lstrip("+"),
            esm_class=codec.ESM_UDHI if header else 0, data_coding=data_coding,
            short_message=b"" if long_data else user_data,
            tlvs=(*extra, (codec.TAG_MESSAGE_PAYLOAD, user_data)) if long_data else tuple(extra)))
        self.stats["mo"] += 1
        d: Deferred[int] = Deferred()
        target.queue_deliver(body, d)
        return d

    def inject_garbage(self, data: bytes) -> None:
        """Write raw bytes (a bad PDU) to every connected ESME."""
        for conn in self.connections:
            if conn.proto is not None and conn.proto.transport is not None:
                cast(Any, conn.proto.transport).write(data)

    def throttle_burst(self, submits: int) -> None:
        """Answer the next ``submits`` submit_sm with ESME_RTHROTTLED (a throttling storm)."""
        if submits < 0:
            raise ValueError("a throttling burst is a non-negative number of submits")
        self._storm += submits

    def disconnect_all(self) -> None:
        """Drop every connection at once (no unbind); counted in ``stats["dropped_binds"]``."""
        for conn in list(self.connections):
            if conn.proto is not None:
                self.stats["dropped_binds"] += 1
                conn.proto.abort()

    def pending(self) -> int:
        """What the simulator still owes or awaits: 0 when it is idle.

        Receipts and responses scheduled, deliver_sm queued, and deliver_sm
        sent but not answered yet (an ESME may hold a receipt unanswered, for
        example one that arrived before its submit_sm_resp).
        """
        return len(self._timers) + sum(len(c.pending) + c.deliver_in_flight()
                                       for c in self.connections)

    def bound_count(self) -> int:
        """How many ESMEs are bound now."""
        return sum(1 for c in self.connections if c.proto and c.proto.session.is_bound)

