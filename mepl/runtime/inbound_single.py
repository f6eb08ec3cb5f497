"""The inbound worker's one-item paths: every kind of item, applied on its own.

The batch paths (:mod:`mepl.runtime.inbound_worker`) hand these the items
they do not take: HTTP callbacks, parts of longer messages, frames that do
not parse, and every item of a batch whose transaction failed.  With
``group`` the look-ups and apply transactions of items worked on in the
same reactor turn share commits (:class:`blobstore.grouping.GroupingRunner`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from blobstore.devices import device_by_imei_txn
from blobstore.grouping import GroupingRunner
from blobstore.inbound_queue import QueueEntry, fail_entry_txn, requeue_txn
from blobstore.parts import Collected, collect_parts_txn
from blobstore.pool import Clock, InteractionRunner
from blobstore.replies import reply_context_txn
from mepl.core.policy import AlertDecision, decide_alert
from mepl.runtime.inbound_rows import frame_of, part_row, receipt_facts
from mepl.runtime.inbound_txn import (
    Applied,
    ReceiptFacts,
    apply_alert_txn,
    apply_receipt_txn,
    apply_reply_txn,
    expand_callback_txn,
    finish_part_txn,
    reject_txn,
)
from mepl.settings import DispatchConfig
from signing.errors import FrameRejected, Reason
from signing.frames import open_alert, open_reply, peek_alert, peek_reply
from signing.keys import VerifyKey
from signing.transport import ARMOUR_PREFIX
from signing.wire import TYPE_ALERT, TYPE_REPLY
from sms_gateway.addresses import mask_msisdn
from sms_gateway.events import DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.udh import split_user_data

log = Logger()

Reparse = Callable[[str, str, bytes, datetime], InboundMessage | DeliveryReceipt]
EventSink = Callable[[str, dict[str, Any]], None]


class OneByOne:
    """The inbound worker's state, and how it applies one item at a time."""

    def __init__(self, *, runner: InteractionRunner, clock: Clock, server_id: bytes,
                 config: DispatchConfig, worker: str, reparse: Reparse | None = None,
                 policy_ttl: timedelta = timedelta(days=1),
                 on_event: EventSink | None = None, group: bool = False) -> None:
        # Claims, requeues and parking go straight to the pool; with ``group``
        # the items' own look-ups and apply transactions share commits.
        self._control = runner
        self._runner: InteractionRunner = (
            GroupingRunner(runner, clock, max_calls=max(config.inbound_batch, 1),
                           name="inbound") if group else runner)
        self._clock = clock
        self._server_id = server_id
        self._config = config
        self._worker = worker
        self.reparse = reparse
        self._policy_ttl = policy_ttl
        self._on_event = on_event or (lambda kind, data: None)
        self.counts: Counter[str] = Counter()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def _counted(self, entry: QueueEntry, outcome: Applied) -> Deferred[Any] | None:
        self.counts[f"inbound_{outcome.outcome}"] += 1
        if outcome.outcome != "retry":
            return None
        d: Deferred[Any] = self._control.run_interaction(
            "requeue_inbound", requeue_txn, entry.id, available_at=self._now(),
            error=outcome.detail)
        return d

    def _decide(self, opened: Any, sender: str, now: datetime) -> AlertDecision:
        raised_at = datetime.fromtimestamp(opened.header.raised_minutes * 60, UTC)
        return decide_alert(
            opened.alert, raised_at=raised_at, sender=sender or None, now=now,
            max_age=timedelta(seconds=self._config.alert_max_age_s),
            max_skew=timedelta(seconds=self._config.alert_max_skew_s))

    def _alert_outcome(self, alert: str, device_id: int, outcome: Applied) -> None:
        if outcome.outcome == "rejected":
            self.counts[f"rejected_{outcome.detail}"] += 1
            log.warn("alert {alert} from device {device_id} rejected: {reason}",
                     alert=alert, device_id=device_id, reason=outcome.detail)
        elif outcome.outcome == "applied":
            self.counts[f"alert_{alert}"] += 1
            log.info("alert {alert} from device {device_id}: lock command {lock}",
                     alert=alert, device_id=device_id, lock=outcome.lock_command_id)
            self._on_event("alert", {"device_id": device_id, "alert": alert,
                                     "lock_command_id": outcome.lock_command_id})

    @inlineCallbacks
    def _reject_one(self, entry: QueueEntry, reason: str) -> Any:
        outcome: Applied = yield self._reject(entry, [entry.message_id], reason,
                                              entry.peer or "")
        self._counted(entry, outcome)

    @inlineCallbacks
    def _one(self, entry: QueueEntry) -> Any:
        try:
            outcome: Applied = yield self._apply(entry)
        except Exception as exc:  # one bad item never stops the others
            yield self._failed(entry, exc)
            return None
        yield self._counted(entry, outcome)
        return None

    @inlineCallbacks
    def _failed(self, entry: QueueEntry, exc: Exception) -> Any:
        error = f"{type(exc).__name__}: {exc}"
        self.counts["inbound_errors"] += 1
        if entry.attempts >= self._config.max_inbound_attempts:
            log.error("inbound item {entry} (message {message}) parked after {n} attempts: "
                      "{error}", entry=entry.id, message=entry.message_id, n=entry.attempts,
                      error=error)
            self.counts["inbound_parked"] += 1
            yield self._control.run_interaction("park_inbound", fail_entry_txn, entry.id, error)
            return None
        delay = min(self._config.retry_delay_s, 2.0 ** entry.attempts)
        log.warn("inbound item {entry} (message {message}) failed, retry in {delay}s: {error}",
                 entry=entry.id, message=entry.message_id, delay=delay, error=error)
        yield self._control.run_interaction(
            "requeue_inbound", requeue_txn, entry.id,
            available_at=self._now() + timedelta(seconds=delay), error=error)
        return None

    def _apply(self, entry: QueueEntry) -> Deferred[Applied]:
        if entry.kind == "callback":
            return self._callback(entry)
        if entry.kind == "dlr":
            facts = receipt_facts(entry)
            return self._receipt(entry, entry.message_id, facts.link, facts.smsc_message_id,
                                 DeliveryStatus(facts.status))
        return self._mo(entry)

    # ------------------------------------------------------------ receipts
    def _receipt(self, entry: QueueEntry, message_id: int, link: str, smsc_id: str,
                 status: DeliveryStatus) -> Deferred[Applied]:
        now = self._now()
        facts = ReceiptFacts(message_id, link, smsc_id, status.value, status.is_final,
                             status is DeliveryStatus.DELIVERED)
        d: Deferred[Applied] = self._runner.run_interaction(
            "apply_receipt", apply_receipt_txn, entry_id=entry.id, worker=self._worker,
            receipt=facts, now=now,
            retry_at=now + timedelta(seconds=self._config.retry_delay_s))

        def done(outcome: Applied) -> Applied:
            self.counts[f"receipt_{status.value}"] += 1
            if outcome.new_state is not None:
                self._on_event("command", {"command_id": outcome.command_id,
                                           "state": outcome.new_state})
            return outcome

        return d.addCallback(done)

    # ------------------------------------------------------------ callbacks
    @inlineCallbacks
    def _callback(self, entry: QueueEntry) -> Any:
        try:
            if self.reparse is None:
                raise LookupError("no HTTP gateways configured in this process")
            event = self.reparse(str(entry.link), entry.message_kind, entry.payload,
                                  entry.received_at)
        except Exception as exc:  # gateway removed, or no longer parses
            outcome: Applied = yield self._runner.run_interaction(
                "reject_inbound", reject_txn, entry_id=entry.id, worker=self._worker,
                part_ids=[entry.message_id],
                reason=f"not recoverable: {type(exc).__name__}: {exc}")
            return outcome
        if isinstance(event, DeliveryReceipt):
            outcome = yield self._receipt(entry, entry.message_id, event.link,
                                          event.message_id, event.status)
            return outcome
        part = part_row(event, callback=entry.message_id)
        part_id = yield self._runner.run_interaction(
            "expand_callback", expand_callback_txn, entry_id=entry.id, worker=self._worker,
            part=part)
        if part_id is None:
            return Applied("lost")
        self.counts["mo_parts"] += 1
        outcome = yield self._mo(QueueEntry(
            entry.id, part_id, "mo", entry.link, None, entry.attempts, "http", "mo",
            part.peer, bytes(part.payload), part.part_seq, part.part_total, dict(part.meta or {}),
            entry.received_at))
        return outcome

    # ------------------------------------------------------------ MO
    @inlineCallbacks
    def _mo(self, entry: QueueEntry) -> Any:
        meta = entry.meta or {}
        part_ids: list[int] = [entry.message_id]
        user_data = entry.payload
        if entry.part_total is not None and entry.part_total > 1:
            collected: Collected = yield self._runner.run_interaction(
                "collect_parts", collect_parts_txn, peer=entry.peer or "",
                reference=int(meta["concat_ref"]), ref_bits=int(meta["concat_bits"]),
                total=entry.part_total, mark=False,
                since=self._now() - timedelta(seconds=self._config.reassembly_timeout_s))
            self.counts["mo_conflicting_part"] += len(collected.conflicting)
            if collected.parts is None:
                outcome: Applied = yield self._runner.run_interaction(
                    "finish_part", finish_part_txn, entry_id=entry.id, worker=self._worker)
                return outcome
            part_ids = [p.message_id for p in collected.parts]
            payload = b"".join(split_user_data(p.user_data)[1] for p in collected.parts)
            texts = [p.text for p in collected.parts]
            if all(t is not None for t in texts):
                joined = "".join(t or "" for t in texts)
                if joined.lstrip().startswith(ARMOUR_PREFIX):
                    meta = {**meta, "armoured": joined.strip()}
        else:
            payload = split_user_data(user_data)[1] if meta.get("udh") else user_data
        sender = entry.peer or ""
        try:
            frame = frame_of(payload, meta.get("armoured"))
            kind = frame[0] & 0x0F if frame else -1
            if kind == TYPE_REPLY:
                outcome = yield self._reply(entry, frame, part_ids)
            elif kind == TYPE_ALERT:
                outcome = yield self._alert(entry, frame, part_ids, sender)
            else:
                raise FrameRejected(Reason.WRONG_FRAME_TYPE)
        except FrameRejected as exc:
            outcome = yield self._reject(entry, part_ids, exc.reason.value, sender)
        return outcome

    def _reject(self, entry: QueueEntry, part_ids: list[int], reason: str, sender: str,
                device_id: int | None = None) -> Deferred[Applied]:
        self.counts[f"rejected_{reason}"] += 1
        log.warn("inbound frame from {sender} rejected: {reason}",
                 sender=mask_msisdn(sender), reason=reason)
        d: Deferred[Applied] = self._runner.run_interaction(
            "reject_inbound", reject_txn, entry_id=entry.id, worker=self._worker,
            part_ids=part_ids, reason=reason, device_id=device_id)
        return d

    @inlineCallbacks
    def _reply(self, entry: QueueEntry, frame: bytes, part_ids: list[int]) -> Any:
        header = peek_reply(frame)
        context = yield self._runner.run_interaction(
            "reply_context", reply_context_txn, header.imei, header.command_key_id,
            header.command_counter)
        if context is None or context.device.public_key is None:
            raise FrameRejected(Reason.WRONG_COMMAND)
        key = VerifyKey.from_raw(int(context.device.key_id or 0), context.device.public_key)
        reply = open_reply(frame, device_key=key, server_id=self._server_id,
                           imei=header.imei, command_frame=context.frame)
        status = reply.status.name.lower()
        result = {"status": status,
                  "items": [{"tag": tag, "value": value.hex()} for tag, value in reply.items]}
        outcome: Applied = yield self._runner.run_interaction(
            "apply_reply", apply_reply_txn, entry_id=entry.id, worker=self._worker,
            part_ids=part_ids, device_id=context.device.id,
            public_key=context.device.public_key, command_id=context.command_id,
            ok=status == "ok", result=result, now=self._now())
        self.counts["replies" if outcome.outcome == "applied" else "replies_duplicate"] += 1
        if outcome.outcome == "applied":
            self._on_event("reply", {"command_id": context.command_id,
                                     "opcode": context.opcode, **result})
        return outcome

    @inlineCallbacks
    def _alert(self, entry: QueueEntry, frame: bytes, part_ids: list[int], sender: str) -> Any:
        header = peek_alert(frame)
        device = yield self._runner.run_interaction("device_by_imei", device_by_imei_txn,
                                                    header.imei)
        if device is None or device.public_key is None:
            raise FrameRejected(Reason.WRONG_DEVICE)
        key = VerifyKey.from_raw(int(device.key_id or 0), device.public_key)
        opened = open_alert(frame, device_key=key, server_id=self._server_id, imei=header.imei)
        now = self._now()
        outcome: Applied = yield self._runner.run_interaction(
            "apply_alert", apply_alert_txn, entry_id=entry.id, worker=self._worker,
            part_ids=part_ids, device_id=device.id, public_key=device.public_key,
            counter=opened.header.counter, alert_name=opened.alert.name,
            decision=self._decide(opened, sender, now), now=now, ttl=self._policy_ttl)
        self._alert_outcome(opened.alert.name, device.id, outcome)
        return outcome
