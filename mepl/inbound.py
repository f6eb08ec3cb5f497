"""The receiving end of the inbound flow: store and queue, then acknowledge.

For every channel the rule is the same: the raw item and its queue row are
committed before the SMSC or gateway is answered, and nothing else happens
on the way in.  The Deferred this module returns to an SMPP bind fires once
they are committed (the bind then sends deliver_sm_resp); HTTP callbacks are
stored and queued by the callback store itself
(:mod:`mepl.http_store`), before their 200.  Applying an item is the
:class:`~mepl.runtime.inbound_worker.InboundWorker`'s job, woken from here.

MO parts and receipts are written in group commits (a
:class:`~blobstore.batcher.MessageBatcher` whose batches also insert the
queue rows): a burst of deliver_sm costs one transaction per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from blobstore.batcher import MessageBatcher, Outcome
from blobstore.inbound_queue import Lease, QueueEntry, enqueue_many_txn
from blobstore.messages import NewMessage
from blobstore.pool import Clock, InteractionRunner
from mepl.runtime.inbound_rows import part_row, receipt_row
from sms_gateway.events import DeliveryReceipt, InboundMessage


class HandOver(Protocol):
    """The worker that takes over in memory what this process stored (its inbound worker)."""

    @property
    def name(self) -> str:
        """The ``claimed_by`` of the rows it takes."""

    def room(self) -> int:
        """How many more it takes now (called from the storing transaction's thread)."""

    def take(self, entries: Iterable[QueueEntry]) -> None:
        """Items claimed at birth for it: apply them."""


def _queue_item(row: NewMessage, row_id: int) -> tuple[int, str, str | None, str | None]:
    return row_id, row.kind, row.link, row.smsc_message_id if row.kind == "dlr" else None


class InboundReceiver:
    """``on_inbound`` and ``on_receipt`` for every SMPP bind; ``on_callback`` for HTTP ones.

    With ``hand_over`` (the process's inbound worker), a stored batch is
    claimed at birth for that worker while it has room, and each item is
    handed to it in memory once committed; otherwise items are queued for
    any worker to claim and ``wake`` is called.
    """

    def __init__(self, *, runner: InteractionRunner, clock: Clock, wake: Callable[[], None],
                 max_rows: int = 200, max_delay_s: float = 0.0,
                 hand_over: HandOver | None = None) -> None:
        self._wake = wake
        self._clock = clock
        self._hand_over = hand_over
        self._batcher = MessageBatcher(runner, clock, max_rows=max_rows,
                                       max_delay_s=max_delay_s,
                                       after_insert=self._enqueue_txn)
        # id(row) -> (queue row id, lease time): written by the storing
        # transaction's thread, read once the batch's commit is reported here.
        self._leased: dict[int, tuple[int, datetime]] = {}
        self.counts: Counter[str] = Counter()

    def _enqueue_txn(self, conn: Connection, rows: Sequence[NewMessage],
                     outcomes: Sequence[Outcome]) -> None:
        stored = [(row, row_id) for row, row_id in zip(rows, outcomes, strict=True)
                  if isinstance(row_id, int)]
        lease = None
        if self._hand_over is not None and self._hand_over.room() >= len(stored):
            lease = Lease(self._hand_over.name,
                          datetime.fromtimestamp(self._clock.seconds(), UTC))
        queued = enqueue_many_txn(conn, [_queue_item(row, row_id) for row, row_id in stored],
                                  lease=lease)
        if lease is not None:
            for row, row_id in stored:
                self._leased[id(row)] = (queued[row_id], lease.at)

    def _store(self, row: NewMessage, what: str) -> Deferred[None]:
        def stored(message_id: int) -> None:
            self.counts[what] += 1
            leased = self._leased.pop(id(row), None)
            if leased is None or self._hand_over is None:
                self._wake()
                return
            entry_id, at = leased
            self._hand_over.take([QueueEntry(
                entry_id, message_id, row.kind, row.link,
                row.smsc_message_id if row.kind == "dlr" else None, 1, row.channel, row.kind,
                row.peer, row.payload, row.part_seq, row.part_total, row.meta, at)])

        def lost(failure: Failure) -> Failure:
            self._leased.pop(id(row), None)
            return failure

        return self._batcher.add(row).addCallbacks(stored, lost)

    def on_inbound(self, message: InboundMessage) -> Deferred[None]:
        """Store one MO part and queue it; fires once both are committed."""
        return self._store(part_row(message), "mo_parts")

    def on_receipt(self, receipt: DeliveryReceipt) -> Deferred[None]:
        """Store one delivery receipt and queue it; fires once both are committed."""
        return self._store(receipt_row(receipt), "receipts_stored")

    def on_callback(self, *_: Any) -> None:
        """An HTTP callback was stored and queued by the callback store: apply it soon."""
        self.counts["callbacks_stored"] += 1
        self._wake()

    def flush(self) -> Deferred[None]:
        """Write everything received so far (at shutdown, after the binds have stopped)."""
        return self._batcher.flush()
