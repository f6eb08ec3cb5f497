"""Recovery of gateway callbacks acknowledged but never processed.

A callback is answered as soon as its raw request is committed; processing
follows.  If the process stops in between, the stored row is the record to
resume from: every ``interval_s`` (and once at start) the sweep finds stored
``mo``/``dlr`` callbacks older than ``grace_s`` that were never marked
processed, parses them again from their stored bytes, and hands them to the
inbound processor as if they had just arrived.  Replies and alerts are
idempotent on the server (a command completes once, an alert counter is
accepted once), so a callback recovered twice does no harm.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from blobstore.pool import Clock, InteractionRunner
from blobstore.replies import UnprocessedCallback, link_message_txn, unprocessed_callbacks_txn
from mepl.inbound import InboundProcessor
from sms_gateway.events import DeliveryReceipt, InboundMessage

log = Logger()

Reparse = Callable[[str, str, bytes, datetime], InboundMessage | DeliveryReceipt]


class CallbackRecovery:
    """Finds and finishes stored-but-unprocessed gateway callbacks."""

    def __init__(self, *, runner: InteractionRunner, clock: Clock, inbound: InboundProcessor,
                 reparse: Reparse, grace_s: float = 60.0, batch: int = 500) -> None:
        self._runner = runner
        self._clock = clock
        self._inbound = inbound
        self._reparse = reparse
        self._grace_s = grace_s
        self._batch = batch
        self.recovered = 0
        self.failed = 0

    @inlineCallbacks
    def sweep(self) -> Any:
        """One pass; returns how many callbacks were processed."""
        before = datetime.fromtimestamp(self._clock.seconds(), UTC) - timedelta(
            seconds=self._grace_s)
        rows: list[UnprocessedCallback] = yield self._runner.run_interaction(
            "unprocessed_callbacks", unprocessed_callbacks_txn, before=before,
            limit=self._batch)
        done = 0
        for row in rows:
            try:
                event = self._reparse(row.gateway, row.kind, row.payload, row.received_at)
            except Exception as exc:  # gateway removed from config, or no longer parses
                self.failed += 1
                yield self._runner.run_interaction(
                    "mark_unrecoverable", link_message_txn, row.message_id,
                    error=f"not recoverable: {type(exc).__name__}: {exc}")
                continue
            if isinstance(event, InboundMessage):
                yield self._inbound.on_inbound(event, row.message_id)
            else:
                yield self._inbound.on_receipt(event, row.message_id)
            done += 1
        if done:
            self.recovered += done
            log.info("recovered {n} stored gateway callback(s) left unprocessed", n=done)
        return done
