"""The inbound worker: claims stored inbound items, verifies them, applies each once.

Items are queued by whatever stored them (an SMPP bind's deliver_sm, an HTTP
callback); :meth:`InboundWorker.wake` makes the worker claim at once, and a
poll every ``poll_interval_s`` picks up items queued by other processes or
left by a process that stopped (their lease runs out).  Items this process's
SMPP binds stored are claimed at birth for this worker, in the transaction
that stores them, and handed over in memory (:meth:`InboundWorker.take`):
no claim transaction, no reading back what was just written.  Up to
``hand_off_max`` wait in memory; beyond that, stored items are queued for
any worker to claim.  For each item:

- an HTTP callback is parsed again from its stored bytes (an MO becomes its
  SMS part row, a receipt is applied as it stands);
- an MO part waits for the rest of its message (every part is stored; the
  last one applied sees them all), then the frame is peeked, the device's
  key fetched, the signature verified **outside any transaction**, and one
  apply transaction does the rest (:mod:`mepl.runtime.inbound_txn`);
- a receipt is applied to its command, or kept until its submit is recorded.

The common items of a claimed batch (receipts, single-part replies and
alerts) go through set-based batch transactions
(:mod:`mepl.runtime.inbound_batch`): one look-up for the batch, each frame
verified, one apply transaction for the batch.  The rest take the one-item
paths (:mod:`mepl.runtime.inbound_single`).  ``inbound_lanes`` batches are
worked on at once.

A failure puts the item back with a growing delay; after
``max_inbound_attempts`` it is parked (state ``failed``) for an operator.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.logger import Logger

from blobstore.inbound_bulk import DeviceKey, ReplyTarget, device_keys_txn, reply_targets_txn
from blobstore.inbound_queue import QueueEntry, claim_entries_txn
from blobstore.pool import Clock, InteractionRunner
from mepl.runtime.inbound_batch import (
    VerifiedAlert,
    VerifiedReply,
    apply_alerts_txn,
    apply_receipts_txn,
    apply_replies_txn,
)
from mepl.runtime.inbound_rows import frame_of, receipt_facts
from mepl.runtime.inbound_single import EventSink, OneByOne, Reparse
from mepl.runtime.inbound_txn import Applied
from mepl.runtime.rounds import Lanes
from mepl.settings import DispatchConfig
from signing.errors import FrameRejected, Reason
from signing.frames import open_alert, open_reply, peek_alert, peek_reply
from signing.keys import VerifyKey
from signing.wire import TYPE_ALERT, TYPE_REPLY
from sms_gateway.udh import split_user_data

log = Logger()


class InboundWorker(OneByOne):
    """Applies the inbound queue, in any number of processes at once."""

    def __init__(self, *, runner: InteractionRunner, clock: Clock, server_id: bytes,
                 config: DispatchConfig, worker: str, reparse: Reparse | None = None,
                 policy_ttl: timedelta = timedelta(days=1),
                 on_event: EventSink | None = None, group: bool = False) -> None:
        super().__init__(runner=runner, clock=clock, server_id=server_id, config=config,
                         worker=worker, reparse=reparse, policy_ttl=policy_ttl,
                         on_event=on_event, group=group)
        self._rounds = Lanes(clock, self.run_once, count=config.inbound_lanes,
                             idle_s=config.poll_interval_s,
                             busy=lambda claimed: claimed >= config.inbound_batch,
                             name="inbound", linger_s=config.inbound_linger_ms / 1000)
        self._handed: deque[QueueEntry] = deque()
        self.hand_off_max = 4 * config.inbound_batch * max(config.inbound_lanes, 1)
        """How many handed-over items may wait in memory (beyond: queued for a claim)."""

    # ------------------------------------------------------------ hand-over
    @property
    def name(self) -> str:
        """The worker's name: what ``claimed_by`` says for the items it holds."""
        return self._worker

    def room(self) -> int:
        """How many more stored items this worker would take over in memory now.

        Called from the storing transaction's thread: a plain read, and the
        cap is soft (two batches stored at once may both see room).
        """
        if self._rounds.stopped:
            return 0
        return max(0, self.hand_off_max - len(self._handed))

    def take(self, entries: Iterable[QueueEntry]) -> None:
        """Items stored by this process and claimed at birth for this worker: apply them soon."""
        self._handed.extend(entries)
        self._rounds.wake()

    # ------------------------------------------------------------ scheduling
    def start(self) -> None:
        """Begin claiming (now, then every poll interval and whenever woken)."""
        self._rounds.start()

    def stop(self) -> Deferred[None]:
        """Stop; fires once the batch in progress is finished."""
        return self._rounds.stop()

    @inlineCallbacks
    def finish(self, timeout_s: float) -> Any:
        """Stop after applying every item due now; returns how many were claimed.

        For a process that stops: once its links and listeners stopped storing,
        what they stored last (and were woken for) is applied here rather than
        left to the next process.  Rounds go on, one at a time, until one claims
        nothing or ``timeout_s`` has passed; items that cannot be applied yet
        (a receipt waiting for its submit, an item put back after a failure)
        are not due, so they end it.  No round runs afterwards.
        """
        yield self._rounds.stop()
        deadline = self._clock.seconds() + timeout_s
        total = 0
        while self._clock.seconds() <= deadline:
            try:
                claimed = yield self.run_once()
            except Exception as exc:  # the store is gone: the next process applies them
                log.warn("inbound worker: final round failed, items left queued: {error}",
                         error=f"{type(exc).__name__}: {exc}")
                break
            if not claimed:
                break
            total += claimed
        return total

    def wake(self) -> None:
        """Something was queued: claim as soon as the current batch is done."""
        self._rounds.wake()

    # ------------------------------------------------------------ one round
    @inlineCallbacks
    def run_once(self) -> Any:
        """Take a batch (handed over, else claimed) and apply each item; returns its size."""
        entries: list[QueueEntry]
        if self._handed:
            take = min(len(self._handed), self._config.inbound_batch)
            entries = [self._handed.popleft() for _ in range(take)]
            self.counts["inbound_handed_over"] += take
        else:
            entries = yield self._control.run_interaction(
                "claim_inbound", claim_entries_txn, worker=self._worker, now=self._now(),
                lease=timedelta(seconds=self._config.callback_grace_s),
                limit=self._config.inbound_batch)
        # Items are independent: worked on together.  Receipts and single-part
        # MOs go through set-based batch transactions; the rest one by one,
        # their look-ups and applies sharing commits (see ``group`` above).
        receipts = [e for e in entries if e.kind == "dlr"]
        singles = [e for e in entries if e.kind == "mo" and (e.part_total or 1) == 1]
        batched = {e.id for e in receipts} | {e.id for e in singles}
        others = [e for e in entries if e.id not in batched]
        work = [self._one(entry) for entry in others]
        if receipts:
            work.append(self._receipts(receipts))
        if singles:
            work.append(self._singles(singles))
        yield DeferredList(work, consumeErrors=True)
        return len(entries)

    @inlineCallbacks
    def _batch_failed(self, what: str, batch: Sequence[QueueEntry], exc: Exception) -> Any:
        """A batch transaction failed as a whole: apply its items one by one instead."""
        self.counts["inbound_batch_fallbacks"] += 1
        log.warn("{what} batch of {n} failed, applying one by one: {error}", what=what,
                 n=len(batch), error=f"{type(exc).__name__}: {exc}")
        yield DeferredList([self._one(entry) for entry in batch], consumeErrors=True)

    # ------------------------------------------------------------ batches
    @inlineCallbacks
    def _receipts(self, batch: list[QueueEntry]) -> Any:
        now = self._now()
        items = [(e.id, receipt_facts(e)) for e in batch]
        try:
            outcomes: list[Applied] = yield self._control.run_interaction(
                f"apply_receipts[{len(items)}]", apply_receipts_txn, worker=self._worker,
                receipts=items, now=now,
                retry_at=now + timedelta(seconds=self._config.retry_delay_s))
        except Exception as exc:
            yield self._batch_failed("receipt", batch, exc)
            return None
        for entry, (_, facts), outcome in zip(batch, items, outcomes, strict=True):
            self._counted(entry, outcome)
            if outcome.outcome != "lost":
                self.counts[f"receipt_{facts.status}"] += 1
            if outcome.new_state is not None:
                self._on_event("command", {"command_id": outcome.command_id,
                                           "state": outcome.new_state})
        return None

    @inlineCallbacks
    def _singles(self, batch: list[QueueEntry]) -> Any:
        """Single-part MOs: replies verified and applied as a batch, the rest one by one."""
        replies: list[tuple[QueueEntry, bytes, Any]] = []
        alerts: list[tuple[QueueEntry, bytes, Any]] = []
        rest: list[Deferred[Any]] = []
        for entry in batch:
            try:
                payload = (split_user_data(entry.payload)[1] if (entry.meta or {}).get("udh")
                           else entry.payload)
                frame = frame_of(payload, (entry.meta or {}).get("armoured"))
                kind = frame[0] & 0x0F if frame else -1
                if kind == TYPE_REPLY:
                    replies.append((entry, frame, peek_reply(frame)))
                    continue
                if kind == TYPE_ALERT:
                    alerts.append((entry, frame, peek_alert(frame)))
                    continue
            except (FrameRejected, ValueError):
                pass  # the one-item path rejects it, with its reason
            rest.append(self._one(entry))
        if replies:
            rest.append(self._replies(replies))
        if alerts:
            rest.append(self._alerts(alerts))
        yield DeferredList(rest, consumeErrors=True)

    @inlineCallbacks
    def _alerts(self, batch: list[tuple[QueueEntry, bytes, Any]]) -> Any:
        entries = [entry for entry, _, _ in batch]
        try:
            keys: dict[str, DeviceKey] = yield self._control.run_interaction(
                f"device_keys[{len(batch)}]", device_keys_txn, [h.imei for _, _, h in batch])
        except Exception as exc:
            yield self._batch_failed("alert", entries, exc)
            return None
        now = self._now()
        verified: list[tuple[QueueEntry, VerifiedAlert]] = []
        work: list[Deferred[Any]] = []
        for entry, frame, header in batch:
            device = keys.get(header.imei)
            try:
                if device is None:
                    raise FrameRejected(Reason.WRONG_DEVICE)
                opened = open_alert(frame, device_key=VerifyKey.from_raw(
                    device.key_id, device.public_key), server_id=self._server_id,
                    imei=header.imei)
            except FrameRejected as exc:
                work.append(self._reject_one(entry, exc.reason.value))
                continue
            verified.append((entry, VerifiedAlert(
                entry.id, (entry.message_id,), device.device_id, device.public_key,
                opened.header.counter, opened.alert.name,
                self._decide(opened, entry.peer or "", now))))
        if verified:
            work.append(self._apply_alerts(verified, now))
        yield DeferredList(work, consumeErrors=True)

    @inlineCallbacks
    def _apply_alerts(self, verified: list[tuple[QueueEntry, VerifiedAlert]],
                      now: datetime) -> Any:
        try:
            outcomes: list[Applied] = yield self._control.run_interaction(
                f"apply_alerts[{len(verified)}]", apply_alerts_txn, worker=self._worker,
                alerts=[v for _, v in verified], now=now, ttl=self._policy_ttl)
        except Exception as exc:
            yield self._batch_failed("alert", [e for e, _ in verified], exc)
            return None
        requeues = []
        for (entry, alert), outcome in zip(verified, outcomes, strict=True):
            requeues.append(self._counted(entry, outcome))
            self._alert_outcome(alert.alert_name, alert.device_id, outcome)
        yield DeferredList([d for d in requeues if d is not None], consumeErrors=True)
        return None

    @inlineCallbacks
    def _replies(self, batch: list[tuple[QueueEntry, bytes, Any]]) -> Any:
        entries = [entry for entry, _, _ in batch]
        try:
            targets: list[ReplyTarget | None] = yield self._control.run_interaction(
                f"reply_targets[{len(batch)}]", reply_targets_txn,
                [(h.imei, h.command_key_id, h.command_counter) for _, _, h in batch])
        except Exception as exc:
            yield self._batch_failed("reply", entries, exc)
            return None
        verified: list[tuple[QueueEntry, VerifiedReply, str | None]] = []
        rejected: list[Deferred[Any]] = []
        for (entry, frame, header), target in zip(batch, targets, strict=True):
            try:
                if target is None:
                    raise FrameRejected(Reason.WRONG_COMMAND)
                key = VerifyKey.from_raw(target.key_id, target.public_key)
                reply = open_reply(frame, device_key=key, server_id=self._server_id,
                                   imei=header.imei, command_frame=target.frame)
            except FrameRejected as exc:
                rejected.append(self._reject_one(entry, exc.reason.value))
                continue
            status = reply.status.name.lower()
            result = {"status": status,
                      "items": [{"tag": tag, "value": value.hex()} for tag, value in reply.items]}
            verified.append((entry, VerifiedReply(
                entry.id, (entry.message_id,), target.device_id, target.public_key,
                target.command_id, status == "ok", result), target.opcode))
        if verified:
            rejected.append(self._apply_replies(verified))
        yield DeferredList(rejected, consumeErrors=True)

    @inlineCallbacks
    def _apply_replies(self, verified: list[tuple[QueueEntry, VerifiedReply, str | None]]) -> Any:
        try:
            outcomes: list[Applied] = yield self._control.run_interaction(
                f"apply_replies[{len(verified)}]", apply_replies_txn, worker=self._worker,
                replies=[v for _, v, _ in verified], now=self._now())
        except Exception as exc:
            yield self._batch_failed("reply", [e for e, _, _ in verified], exc)
            return None
        requeues = []
        for (entry, reply, opcode), outcome in zip(verified, outcomes, strict=True):
            requeues.append(self._counted(entry, outcome))
            if outcome.outcome in ("applied", "duplicate"):
                self.counts["replies" if outcome.outcome == "applied"
                            else "replies_duplicate"] += 1
            if outcome.outcome == "applied":
                self._on_event("reply", {"command_id": reply.command_id, "opcode": opcode,
                                         **reply.result})
        yield DeferredList([d for d in requeues if d is not None], consumeErrors=True)
        return None
