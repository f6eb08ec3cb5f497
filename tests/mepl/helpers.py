"""A small world for MEPL core tests: a migrated database, a server key, handsets."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, text
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from blobstore.commands import NewCommand, insert_command_txn
from blobstore.devices import add_device_txn, set_device_key_txn
from blobstore.pool import SyncPool
from mepl.inbound import InboundReceiver
from mepl.runtime.inbound_worker import InboundWorker
from mepl.runtime.outbound_txn import ReadyCommand, claim_and_seal_txn
from mepl.settings import DispatchConfig
from mepl.signer import ServerSigner
from signing.handset import Handset
from signing.keys import SigningKey, device_key_id
from signing.transport import DEVICE_PORT, SERVER_PORT
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.udh import Udh
from tests.support.pg import migrated_database

SERVER_ID = bytes(range(32))
SERVER_NUMBER = "+447700900000"


def new_device_key() -> SigningKey:
    fresh = SigningKey.generate(1)
    return SigningKey(device_key_id(fresh.public.raw), fresh.private_key)


@dataclass
class Inbound:
    """The receiving end and the worker, as one process wires them."""

    receiver: InboundReceiver
    worker: InboundWorker

    @property
    def counts(self) -> Counter[str]:
        return self.receiver.counts + self.worker.counts

    def drain(self) -> int:
        """Apply every due queued item (synchronously, on the SyncPool); return how many."""
        total = 0
        while taken := one_round(self.worker):
            total += taken
        return total


def one_round(worker: InboundWorker) -> int:
    """Run one round of ``worker`` (synchronously, on a SyncPool); how many items it took."""
    results: list[Any] = []
    worker.run_once().addBoth(results.append)
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return int(results[0])


@dataclass
class World:
    engine: Any
    pool: SyncPool
    clock: Clock
    signer: ServerSigner
    inbound: Inbound

    @classmethod
    def create(cls) -> World:
        engine = create_engine(migrated_database("core"))
        pool = SyncPool(engine)
        pool.start()
        clock = Clock()
        # A little ahead of the database clock, which stamps created_at and the
        # default next_attempt_at: rows made during a test are due at once.
        clock.advance(time.time() + 5)
        key = SigningKey.generate(1)
        signer = ServerSigner(SERVER_ID, key, (key.public,))
        worker = InboundWorker(runner=pool, clock=clock, server_id=SERVER_ID,
                               config=DispatchConfig(server_number=SERVER_NUMBER),
                               worker="test-worker")
        receiver = InboundReceiver(runner=pool, clock=clock, wake=lambda: None, max_rows=1)
        inbound = Inbound(receiver, worker)
        return cls(engine, pool, clock, signer, inbound)

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        results: list[Any] = []
        self.pool.run_interaction("test", fn, *args, **kwargs).addBoth(results.append)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def enrol(self, imei: str, msisdn: str) -> tuple[int, Handset]:
        device_key = new_device_key()
        handset = Handset(imei=imei, server_id=SERVER_ID, device_key=device_key,
                          trusted_keys={1: self.signer.key.public},
                          trusted_numbers=(SERVER_NUMBER,))

        def txn(conn: Any) -> int:
            record = add_device_txn(conn, imei, msisdn=msisdn, state="provisioned")
            set_device_key_txn(conn, record.id, device_key.key_id, device_key.public.raw)
            return record.id

        return self.run(txn), handset

    def queue(self, device_id: int, opcode: str = "lock", **args: Any) -> int:
        command = NewCommand(opcode=opcode, requested_by="test", arguments=args,
                             not_after=self.now + timedelta(hours=1))
        return int(self.run(insert_command_txn, device_id, command))

    def claim(self) -> list[ReadyCommand]:
        return list(self.run(claim_and_seal_txn, worker="t", now=self.now, limit=100,
                             key_id=1, seal=self.signer.seal))

    def mo(self, sender: str, frame: bytes, link: str = "l1") -> InboundMessage:
        return InboundMessage(channel=Channel.SMPP, link=link, sender=sender,
                              receiver=SERVER_NUMBER, payload=frame, data_coding=4,
                              received_at=self.now,
                              udh=Udh(dest_port=SERVER_PORT, src_port=DEVICE_PORT))

    def deliver(self, message: InboundMessage) -> None:
        """Receive (store and queue) one MO part, then apply the queue."""
        results: list[Any] = []
        self.inbound.receiver.on_inbound(message).addBoth(results.append)
        if results and isinstance(results[0], Failure):
            results[0].raiseException()
        assert results, "storing did not finish synchronously"
        self.inbound.drain()

    def receipt(self, link: str, message_id: str, status: str = "delivered") -> None:
        """Receive (store and queue) one SMPP delivery receipt, then apply the queue."""
        results: list[Any] = []
        self.inbound.receiver.on_receipt(DeliveryReceipt(
            channel=Channel.SMPP, link=link, message_id=message_id,
            status=DeliveryStatus(status), received_at=self.now)).addBoth(results.append)
        if results and isinstance(results[0], Failure):
            results[0].raiseException()
        self.inbound.drain()
