"""The inbound worker: claims stored inbound items, verifies them, applies each once.

Items are queued by whatever stored them (an SMPP bind's deliver_sm, an HTTP
callback); :meth:`InboundWorker.wake` makes the worker claim at once, and a
poll every ``poll_interval_s`` picks up items queued by other processes or
left by a process that stopped (their lease runs out).  For each item:

- an HTTP callback is parsed again from its stored bytes (an MO becomes its
  SMS part row, a receipt is applied as it stands);
- an MO part waits for the rest of its message (every part is stored; the
  last one applied sees them all), then the frame is peeked, the device's
  key fetched, the signature verified **outside any transaction**, and one
  apply transaction does the rest (:mod:`mepl.runtime.inbound_txn`);
- a receipt is applied to its command, or kept until its submit is recorded.

A failure puts the item back with a growing delay; after
``max_inbound_attempts`` it is parked (state ``failed``) for an operator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.logger import Logger

from blobstore.devices import device_by_imei_txn
from blobstore.grouping import GroupingRunner
from blobstore.inbound_bulk import ReplyTarget, reply_targets_txn
from blobstore.inbound_queue import (
    QueueEntry,
    claim_entries_txn,
    fail_entry_txn,
    requeue_txn,
)
from blobstore.messages import NewMessage
from blobstore.parts import Collected, collect_parts_txn
from blobstore.pool import Clock, InteractionRunner
from blobstore.replies import reply_context_txn
from mepl.core.policy import decide_alert
from mepl.runtime.inbound_batch import VerifiedReply, apply_receipts_txn, apply_replies_txn
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
from mepl.runtime.rounds import Lanes
from mepl.settings import DispatchConfig
from signing.errors import FrameRejected, Reason
from signing.frames import open_alert, open_reply, peek_alert, peek_reply
from signing.keys import VerifyKey
from signing.transport import ARMOUR_PREFIX, dearmour
from signing.wire import TYPE_ALERT, TYPE_REPLY
from sms_gateway.addresses import mask_msisdn
from sms_gateway.events import DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.udh import encode_udh, split_user_data

log = Logger()

Reparse = Callable[[str, str, bytes, datetime], InboundMessage | DeliveryReceipt]
EventSink = Callable[[str, dict[str, Any]], None]


def part_row(message: InboundMessage, **meta: Any) -> NewMessage:
    """The stored row of one inbound SMS part: user data (UDH included) as the BLOB."""
    header = encode_udh(message.udh) if message.udh else b""
    user_data = header + message.payload
    concat = message.udh.concat if message.udh else None
    info: dict[str, Any] = {"receiver": message.receiver, "data_coding": message.data_coding,
                            **meta}
    if header:
        info["udh"] = True
    if concat is not None:
        info.update(concat_ref=concat.reference, concat_bits=concat.ref_bits)
    if message.text is not None:
        if concat is not None:
            info["text"] = message.text  # joined with the other parts' text when complete
        elif message.text.lstrip().startswith(ARMOUR_PREFIX):
            info["armoured"] = message.text.strip()
    return NewMessage(
        direction="in", channel=message.channel.value,  # type: ignore[arg-type]
        kind="mo", payload=user_data, link=message.link, peer=message.sender,
        smsc_message_id=message.smsc_message_id,
        part_seq=concat.seq if concat else None,
        part_total=concat.total if concat else None, meta=info)


def receipt_row(receipt: DeliveryReceipt) -> NewMessage:
    """The stored row of a delivery receipt that arrived over SMPP."""
    return NewMessage(direction="in", channel="smpp", kind="dlr",
                      payload=(receipt.raw_text or "").encode("utf-8", "replace"),
                      link=receipt.link, peer=receipt.sender,
                      smsc_message_id=receipt.message_id,
                      meta={"status": receipt.status.value, "error": receipt.error_code})


class InboundWorker:
    """Applies the inbound queue, in any number of processes at once."""

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
        self._rounds = Lanes(clock, self.run_once, count=config.inbound_lanes,
                             idle_s=config.poll_interval_s,
                             busy=lambda claimed: claimed >= config.inbound_batch,
                             name="inbound")
        self.counts: Counter[str] = Counter()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    # ------------------------------------------------------------ scheduling
    def start(self) -> None:
        """Begin claiming (now, then every poll interval and whenever woken)."""
        self._rounds.start()

    def stop(self) -> Deferred[None]:
        """Stop; fires once the batch in progress is finished."""
        return self._rounds.stop()

    def wake(self) -> None:
        """Something was queued: claim as soon as the current batch is done."""
        self._rounds.wake()

    # ------------------------------------------------------------ one round
    @inlineCallbacks
    def run_once(self) -> Any:
        """Claim one batch and apply each item; returns how many were claimed."""
        entries: list[QueueEntry] = yield self._control.run_interaction(
            "claim_inbound", claim_entries_txn, worker=self._worker, now=self._now(),
            lease=timedelta(seconds=self._config.callback_grace_s),
            limit=self._config.inbound_batch)
        # Items are independent: worked on together.  Receipts and single-part
        # MOs go through set-based batch transactions; the rest one by one,
        # their look-ups and applies sharing commits (see ``group`` above).
        receipts = [e for e in entries if e.kind == "dlr"]
        singles = [e for e in entries if e.kind == "mo" and (e.part_total or 1) == 1]
        others = [e for e in entries if e not in receipts and e not in singles]
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

    def _counted(self, entry: QueueEntry, outcome: Applied) -> Deferred[Any] | None:
        self.counts[f"inbound_{outcome.outcome}"] += 1
        if outcome.outcome != "retry":
            return None
        d: Deferred[Any] = self._control.run_interaction(
            "requeue_inbound", requeue_txn, entry.id, available_at=self._now(),
            error=outcome.detail)
        return d

    # ------------------------------------------------------------ batches
    @inlineCallbacks
    def _receipts(self, batch: list[QueueEntry]) -> Any:
        now = self._now()
        items = [(e.id, _receipt_facts(e)) for e in batch]
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
        rest: list[Deferred[Any]] = []
        for entry in batch:
            try:
                payload = (split_user_data(entry.payload)[1] if (entry.meta or {}).get("udh")
                           else entry.payload)
                frame = _frame_of(payload, (entry.meta or {}).get("armoured"))
                if frame and frame[0] & 0x0F == TYPE_REPLY:
                    replies.append((entry, frame, peek_reply(frame)))
                    continue
            except (FrameRejected, ValueError):
                pass  # the one-item path rejects it, with its reason
            rest.append(self._one(entry))
        if replies:
            rest.append(self._replies(replies))
        yield DeferredList(rest, consumeErrors=True)

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
    def _reject_one(self, entry: QueueEntry, reason: str) -> Any:
        outcome: Applied = yield self._reject(entry, [entry.message_id], reason,
                                              entry.peer or "")
        self._counted(entry, outcome)

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

    @inlineCallbacks
    def _one(self, entry: QueueEntry) -> Any:
        try:
            outcome: Applied = yield self._apply(entry)
        except Exception as exc:  # one bad item never stops the others
            yield self._failed(entry, exc)
            return None
        self.counts[f"inbound_{outcome.outcome}"] += 1
        if outcome.outcome == "retry":
            yield self._control.run_interaction(
                "requeue_inbound", requeue_txn, entry.id, available_at=self._now(),
                error=outcome.detail)
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
            facts = _receipt_facts(entry)
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
            frame = _frame_of(payload, meta.get("armoured"))
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
        raised_at = datetime.fromtimestamp(opened.header.raised_minutes * 60, UTC)
        decision = decide_alert(
            opened.alert, raised_at=raised_at, sender=sender or None, now=now,
            max_age=timedelta(seconds=self._config.alert_max_age_s),
            max_skew=timedelta(seconds=self._config.alert_max_skew_s))
        outcome: Applied = yield self._runner.run_interaction(
            "apply_alert", apply_alert_txn, entry_id=entry.id, worker=self._worker,
            part_ids=part_ids, device_id=device.id, public_key=device.public_key,
            counter=opened.header.counter, alert_name=opened.alert.name, decision=decision,
            now=now, ttl=self._policy_ttl)
        if outcome.outcome == "rejected":
            self.counts[f"rejected_{outcome.detail}"] += 1
            log.warn("alert {alert} from device {device_id} rejected: {reason}",
                     alert=opened.alert.name, device_id=device.id, reason=outcome.detail)
            return outcome
        if outcome.outcome == "applied":
            self.counts[f"alert_{opened.alert.name}"] += 1
            log.info("alert {alert} from device {device_id}: lock command {lock}",
                     alert=opened.alert.name, device_id=device.id,
                     lock=outcome.lock_command_id)
            self._on_event("alert", {"device_id": device.id, "alert": opened.alert.name,
                                     "lock_command_id": outcome.lock_command_id})
        return outcome


def _receipt_facts(entry: QueueEntry) -> ReceiptFacts:
    """What a stored SMPP receipt's queue row says."""
    status = DeliveryStatus((entry.meta or {}).get("status", "unknown"))
    return ReceiptFacts(entry.message_id, str(entry.link), str(entry.smsc_message_id),
                        status.value, status.is_final, status is DeliveryStatus.DELIVERED)


def _frame_of(payload: bytes, armoured: str | None) -> bytes:
    """The frame bytes: binary as is, or de-armoured text from text-only gateways."""
    if armoured is not None:
        return dearmour(armoured)
    if payload[:len(ARMOUR_PREFIX)] == ARMOUR_PREFIX.encode("ascii"):
        return dearmour(payload.decode("ascii", "replace"))
    return payload
