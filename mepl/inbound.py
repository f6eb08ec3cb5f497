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
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection
from twisted.internet.defer import Deferred

from blobstore.batcher import MessageBatcher, Outcome
from blobstore.inbound_queue import enqueue_many_txn
from blobstore.messages import NewMessage
from blobstore.pool import Clock, InteractionRunner
from mepl.runtime.inbound_rows import part_row, receipt_row
from sms_gateway.events import DeliveryReceipt, InboundMessage


def enqueue_stored_txn(conn: Connection, rows: Sequence[NewMessage],
                       outcomes: Sequence[Outcome]) -> None:
    """Queue every row of a batch just inserted (``mo`` parts and ``dlr`` receipts)."""
    enqueue_many_txn(conn, [
        (row_id, row.kind, row.link, row.smsc_message_id if row.kind == "dlr" else None)
        for row, row_id in zip(rows, outcomes, strict=True) if isinstance(row_id, int)])


class InboundReceiver:
    """``on_inbound`` and ``on_receipt`` for every SMPP bind; ``on_callback`` for HTTP ones."""

    def __init__(self, *, runner: InteractionRunner, clock: Clock, wake: Callable[[], None],
                 max_rows: int = 200, max_delay_s: float = 0.0) -> None:
        self._wake = wake
        self._batcher = MessageBatcher(runner, clock, max_rows=max_rows,
                                       max_delay_s=max_delay_s,
                                       after_insert=enqueue_stored_txn)
        self.counts: Counter[str] = Counter()

    def _store(self, row: NewMessage, what: str) -> Deferred[None]:
        def stored(_: Any) -> None:
            self.counts[what] += 1
            self._wake()

        return self._batcher.add(row).addCallback(stored)

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
