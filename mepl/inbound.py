"""The receiving end of the inbound flow: store and queue, then acknowledge.

For every channel the rule is the same: the raw item and its queue row are
committed before the SMSC or gateway is answered, and nothing else happens
on the way in.  The Deferred this module returns to an SMPP bind fires once
they are committed (the bind then sends deliver_sm_resp); HTTP callbacks are
stored and queued by the callback store itself
(:mod:`mepl.http_store`), before their 200.  Applying an item is the
:class:`~mepl.runtime.inbound_worker.InboundWorker`'s job, woken from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from blobstore.pool import InteractionRunner
from mepl.runtime.inbound_txn import store_inbound_txn
from mepl.runtime.inbound_worker import part_row, receipt_row
from sms_gateway.events import DeliveryReceipt, InboundMessage


class InboundReceiver:
    """``on_inbound`` and ``on_receipt`` for every SMPP bind; ``wake`` for HTTP callbacks."""

    def __init__(self, *, runner: InteractionRunner, wake: Callable[[], None]) -> None:
        self._runner = runner
        self._wake = wake
        self.counts: Counter[str] = Counter()

    def _stored(self, _: Any, what: str) -> None:
        self.counts[what] += 1
        self._wake()

    def on_inbound(self, message: InboundMessage) -> Deferred[None]:
        """Store one MO part and queue it; fires once both are committed."""
        d: Deferred[Any] = self._runner.run_interaction(
            "store_mo", store_inbound_txn, part_row(message), "mo")
        return d.addCallback(self._stored, "mo_parts")

    def on_receipt(self, receipt: DeliveryReceipt) -> Deferred[None]:
        """Store one delivery receipt and queue it; fires once both are committed."""
        d: Deferred[Any] = self._runner.run_interaction(
            "store_receipt", store_inbound_txn, receipt_row(receipt), "dlr")
        return d.addCallback(self._stored, "receipts_stored")

    def on_callback(self, *_: Any) -> None:
        """An HTTP callback was stored and queued by the callback store: apply it soon."""
        self._stored(None, "callbacks_stored")
