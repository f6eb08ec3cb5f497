"""Back-pressure on the receive side: every PDU is stored, and what a bind buffers is capped.

A bind counts what it holds in memory: PDU records handed to ``pdu_sink`` and
not yet settled, plus deliver_sm handed to their callback and not yet
answered.  Over ``max_buffered`` it stops reading from the transport; below
half of it, it reads again.  Nothing is refused or dropped on the way.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.trial import unittest

from blobstore.batcher import MessageBatcher
from blobstore.messages import NewMessage
from blobstore.pool import DatabasePool
from mepl.service import MeplService
from mepl.settings import load_settings
from mepl.signer import ServerSigner
from signing.keystore import ServerKeyStore
from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.events import DeliveryReceipt, InboundMessage
from sms_gateway.smpp import codec
from sms_gateway.smpp.backlog import Backlog
from sms_gateway.smpp.bind import SmppBind
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.protocol import SmppProtocol
from sms_gateway.smpp.records import PduRecord
from sms_gateway.smpp.session import (
    BindRequested,
    Event,
    Outstanding,
    Role,
    SmppSession,
)
from sms_gateway.smpp.simulator import SimulatorConfig
from tests.smpp.support import Memory, link_config
from tests.support.pdus import stored_pdus
from tests.support.pg import migrated_database

R: Any = reactor


# ------------------------------------------------------------------ the pure count
def test_gate_closes_before_the_cap_and_opens_again_at_the_low_water_mark() -> None:
    opened: list[int] = []
    backlog = Backlog(10, on_open=lambda: opened.append(backlog.total))
    assert backlog.allowance() == 5  # a PDU read may add up to two buffered items
    for _ in range(8):
        backlog.add_record()
    assert backlog.allowance() == 1 and not backlog.closed
    backlog.add_inbound()
    assert backlog.closed and backlog.allowance() == 0 and backlog.room() == 0
    for _ in range(3):
        backlog.record_settled()
    assert backlog.total == 6 and backlog.closed and opened == []  # above the low-water mark
    backlog.inbound_settled()
    assert opened == [5] and not backlog.closed and backlog.allowance() == 2
    assert backlog.room() == 5 and backlog.peak == 9 and backlog.closings == 1


def test_cap_must_leave_room_for_the_hold_and_one_pdu() -> None:
    for bad in (0, 7):
        try:
            Backlog(bad)
        except ValueError:
            continue
        raise AssertionError(f"cap {bad} accepted")
    try:
        link_config(max_buffered=7)
    except ValueError as exc:
        assert "max_buffered" in str(exc)
    else:
        raise AssertionError("max_buffered=7 accepted")


def test_early_receipt_hold_is_a_quarter_of_the_cap() -> None:
    m = Memory(max_buffered=40)
    assert m.h.bind.hold.max_held == 10


# ------------------------------------------------------- in memory, injected clock
def held_sink(held: list[Deferred[None]]) -> Any:
    def sink(record: PduRecord) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        held.append(d)
        return d
    return sink


def flood_enquire_links(m: Memory, count: int) -> SmppProtocol:
    """The simulator writes ``count`` enquire_link at once; returns its side."""
    proto = m.sim.connections[0].proto
    assert proto is not None
    for _ in range(count):
        proto.session.send_request(codec.ENQUIRE_LINK, b"", m.reactor.seconds(),
                                   windowed=False)
    proto.flush()
    return proto


def settle_in_rounds(m: Memory, waiting: list[Deferred[None]], cap: int) -> int:
    """Fire what waits, let the bind read on, until nothing waits; returns the rounds.

    The bind's count is checked against ``cap`` after every single settlement.
    """
    rounds = 0
    while waiting:
        batch, waiting[:] = list(waiting), []
        for d in batch:
            d.callback(None)
            assert m.h.bind.backlog.total <= cap
        m.advance(0)
        rounds += 1
        assert m.h.bind.backlog.total <= cap
    return rounds


def test_enquire_link_flood_stops_reading_at_the_cap_and_every_pdu_is_answered_later() -> None:
    m = Memory(max_buffered=40)
    m.start()
    bind = m.h.bind
    held: list[Deferred[None]] = []
    bind.pdu_sink = held_sink(held)  # records settle only when the "database" says so
    proto = flood_enquire_links(m, 200)
    m.settle()
    unanswered = proto.session.outstanding
    assert len(unanswered) == 180  # 20 read (2 records each), the rest left unread
    assert bind.backlog.total == 40 and len(held) == 40 and bind.stats["read_pauses"] == 1
    steps = settle_in_rounds(m, held, 40)
    assert len(unanswered) == 0 and bind.is_up and bind.stats["binds"] == 1
    assert bind.backlog.peak == 40 and bind.stats["read_pauses"] >= 5 and steps >= 5


def test_deliver_sm_flood_is_capped_by_unanswered_callbacks() -> None:
    m = Memory(SimulatorConfig(window=1000), max_buffered=40)
    m.start()
    waiting: list[Deferred[None]] = []

    def slow_store(message: InboundMessage) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        waiting.append(d)
        return d

    m.h.inbound_result = slow_store
    statuses = [m.sim.inject_mo("+447700900123", "+4412345", bytes([i % 256]))
                for i in range(100)]
    answered: list[int] = []
    for d in statuses:
        d.addCallback(answered.append)
    m.settle()
    bind = m.h.bind
    assert 0 < len(waiting) <= 40 and bind.backlog.total <= 40 and answered == []
    settle_in_rounds(m, waiting, 40)
    assert answered == [codec.ESME_ROK] * 100 and len(m.h.inbound) == 100
    assert bind.backlog.peak <= 40 and bind.stats["read_pauses"] >= 2 and bind.is_up


def test_time_spent_not_reading_does_not_time_out_a_submit_whose_answer_is_unread() -> None:
    m = Memory(SimulatorConfig(response_delay=0.5), max_buffered=40, response_timeout=2.0)
    m.start()
    bind = m.h.bind
    result: list[Any] = []
    bind.submit(OutboundMessage("+447700900123", b"x")).addBoth(result.append)
    m.settle()
    held: list[Deferred[None]] = []
    bind.pdu_sink = held_sink(held)
    flood_enquire_links(m, 100)
    m.advance(6.0, steps=12)  # the answer came at 0.5 s, behind the unread enquire_links
    assert result == [] and bind.backlog.closed
    settle_in_rounds(m, held, 40)
    [submitted] = result
    assert isinstance(submitted, SubmitResult) and m.sim.stats["submit_sm"] == 1
    assert bind.stats["resent"] == 0 and bind.stats["binds"] == 1


def test_pdu_sink_returning_nothing_is_settled_at_once() -> None:
    m = Memory(max_buffered=40)
    m.start()
    proto = flood_enquire_links(m, 500)
    m.settle()
    assert not proto.session.outstanding and m.h.bind.backlog.total == 0
    assert m.h.bind.stats["read_pauses"] == 0


# ---------------------------------------------------- a flooding SMSC, real database
class FloodPeer:
    """An SMSC that accepts the bind, then writes every request of a burst at once.

    ``enquire_links`` enquire_link and ``deliver_sms`` MO deliver_sm, interleaved,
    in one write; it counts the answers by (command, status) from its session trace.
    """

    def __init__(self, enquire_links: int, deliver_sms: int) -> None:
        self.enquire_links = enquire_links
        self.deliver_sms = deliver_sms
        self.answers: Counter[tuple[str, int]] = Counter()
        self.all_answered: Deferred[None] = Deferred()

    def factory(self) -> Factory:
        def build() -> SmppProtocol:
            session = SmppSession(Role.SMSC, window=1, response_timeout=600.0,
                                  enquire_link_interval=3600.0, now=R.seconds(), trace=True)
            return SmppProtocol(session, self, R, on_flush=self._count)
        return Factory.forProtocol(build)  # type: ignore[arg-type]

    def _count(self, session: SmppSession) -> None:
        _, received = session.pop_trace()
        for pdu, _ in received:
            if pdu.is_response:
                self.answers[(pdu.name, pdu.status)] += 1
        if (sum(self.answers.values()) == self.enquire_links + self.deliver_sms
                and not self.all_answered.called):
            self.all_answered.callback(None)

    def session_started(self, proto: SmppProtocol) -> None:
        """Wait for the bind."""

    def session_events(self, proto: SmppProtocol, events: list[Event]) -> None:
        """Accept the bind and flood."""
        for event in events:
            if isinstance(event, BindRequested):
                proto.session.accept_bind(event.pdu, "flood")
                self._flood(proto.session)

    def session_ended(self, proto: SmppProtocol, lost: list[Outstanding],
                      reason: Failure) -> None:
        """Nothing to clean up."""

    def _flood(self, session: SmppSession) -> None:
        now = R.seconds()
        mo = 0
        for i in range(max(self.enquire_links, self.deliver_sms)):
            if i < self.enquire_links:
                session.send_request(codec.ENQUIRE_LINK, b"", now, windowed=False)
            if i < self.deliver_sms:
                mo += 1
                body = codec.encode_short_message(ShortMessage(
                    source_addr="447700900123", destination_addr="4412345",
                    data_coding=4, short_message=mo.to_bytes(4, "big") * 10))
                session.send_request(codec.DELIVER_SM, body, now, windowed=False)


def pdu_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Stored PDUs by (direction, command), whether one to a row or many (``pdu_batch``)."""
    with engine.connect() as conn:
        return dict(Counter((direction, command) for direction, command, _ in stored_pdus(conn)))


class FloodTest(unittest.TestCase):
    timeout = 120

    async def flood(self, enquire_links: int, deliver_sms: int, cap: int) -> None:
        engine = create_engine(migrated_database("flood"))
        self.addCleanup(engine.dispose)
        pool = DatabasePool(engine, R)
        pool.start()
        self.addCleanup(pool.stop)
        # A backlog well over the bind's cap, far under the flood: the batcher would
        # refuse rows if the bind handed it everything it reads.
        batcher = MessageBatcher(pool, R, max_backlog=4 * cap)
        mo_batcher = MessageBatcher(pool, R)
        refused: list[Failure] = []

        def store_pdu(record: PduRecord) -> Deferred[None]:
            d = batcher.add(NewMessage(
                direction=record.direction, channel="smpp", kind="pdu", payload=record.raw,
                link=record.link, meta={"command": record.command}))
            return d.addCallbacks(lambda _: None, refused.append)

        def store_mo(message: InboundMessage) -> Deferred[None]:
            d = mo_batcher.add(NewMessage(direction="in", channel="smpp", kind="mo",
                                          payload=message.payload, link=message.link))
            return d.addCallback(lambda _: None)

        def no_receipts(receipt: DeliveryReceipt) -> Deferred[None]:
            raise AssertionError("no receipts expected")

        peer = FloodPeer(enquire_links, deliver_sms)
        port = R.listenTCP(0, peer.factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        bind = SmppBind("flood", link_config(port=number, max_buffered=cap), reactor=R,
                        endpoint=TCP4ClientEndpoint(R, "127.0.0.1", number),
                        on_inbound=store_mo, on_receipt=no_receipts, pdu_sink=store_pdu,
                        rng=random.Random(7))
        bind.startService()
        try:
            answered = peer.all_answered
            answered.addTimeout(90, R)
            await answered
            self.assertTrue(bind.is_up)
        finally:
            await bind.stopService()
        await batcher.flush()
        await mo_batcher.flush()
        self.assertEqual(len(refused), 0, "records refused by the batcher")
        self.assertEqual(peer.answers, Counter({("enquire_link_resp", 0): enquire_links,
                                                ("deliver_sm_resp", 0): deliver_sms}))
        counts = pdu_counts(engine)
        self.assertEqual(counts[("in", "enquire_link")], enquire_links)
        self.assertEqual(counts[("out", "enquire_link_resp")], enquire_links)
        self.assertEqual(counts.get(("in", "deliver_sm"), 0), deliver_sms)
        self.assertEqual(counts.get(("out", "deliver_sm_resp"), 0), deliver_sms)
        with engine.connect() as conn:
            stored_mo = conn.execute(text(
                "SELECT count(*) FROM messages WHERE kind = 'mo'")).scalar_one()
        self.assertEqual(stored_mo, deliver_sms)
        self.assertEqual(bind.stats["binds"], 1)
        self.assertLessEqual(bind.backlog.peak, cap)
        self.assertGreater(bind.stats["read_pauses"], 0)

    @defer.inlineCallbacks
    def test_enquire_link_flood_over_loopback_is_stored_in_full_within_the_cap(self) -> Any:
        yield defer.ensureDeferred(self.flood(enquire_links=10_000, deliver_sms=0, cap=500))

    @defer.inlineCallbacks
    def test_deliver_sm_flood_over_loopback_is_stored_in_full_within_the_cap(self) -> Any:
        yield defer.ensureDeferred(self.flood(enquire_links=1_000, deliver_sms=3_000, cap=400))


class ServiceFloodTest(unittest.TestCase):
    """The MEPL wiring: its PDU sink reports when each record is stored."""

    timeout = 120

    @defer.inlineCallbacks
    def test_mepl_service_stores_every_pdu_of_a_flood_and_its_bind_stops_reading(self) -> Any:
        engine = create_engine(migrated_database("service_flood"))
        self.addCleanup(engine.dispose)
        tmp = tempfile.mkdtemp(prefix="mepl-test-")
        self.addCleanup(shutil.rmtree, tmp, True)
        keys = ServerKeyStore(Path(tmp) / "keys")
        keys.init(now=datetime.now(UTC), passphrase=None, trusted_numbers=())
        signer = ServerSigner.load(keys.directory, {})
        peer = FloodPeer(enquire_links=5_000, deliver_sms=0)
        port = R.listenTCP(0, peer.factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        settings = load_settings({"dispatch": {"server_number": "+447700900000"},
                                  "smpp": {"links": {"flood": {
            "host": "127.0.0.1", "port": port.getHost().port, "system_id": "mepl",
            "password": "pw", "max_buffered": 300}}}})
        service = MeplService(settings, reactor=R, engine=engine, signer=signer)
        service.startService()
        try:
            answered = peer.all_answered
            answered.addTimeout(90, R)
            yield answered
        finally:
            yield service.stopService()
        counts = pdu_counts(engine)
        self.assertEqual(counts[("in", "enquire_link")], 5_000)
        self.assertEqual(counts[("out", "enquire_link_resp")], 5_000)
        self.assertEqual(service.registry.get_sample_value("mepl_pdu_store_errors_total"), 0)
        bind = service.binds["flood"]
        self.assertLessEqual(bind.backlog.peak, 300)
        self.assertGreater(bind.stats["read_pauses"], 0)
