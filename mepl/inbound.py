"""The inbound half of the loop: MO parts and delivery receipts from every channel.

Order for a mobile-originated part (from a deliver_sm or an HTTP callback):
store its bytes (committed) -> reassemble from the stored parts (in the
database, so parts may arrive through different binds and processes, or
before and after a restart) -> find the device from the frame ->
verify (device key, and for alerts the device counter window kept in the
database) -> record the result -> policy reactions.  The Deferred returned to
the channel fires after the part is stored and processed, so the SMSC or
gateway is acknowledged only for what is stored; a frame that fails
verification is still acknowledged (the carrier cannot fix it), recorded with
its reason on the stored row, counted, and never answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from blobstore.devices import device_by_imei_txn
from blobstore.dispatch import ReceiptOutcome, record_receipt_txn
from blobstore.messages import NewMessage, insert_message_txn
from blobstore.parts import Collected, collect_parts_txn
from blobstore.pool import Clock, InteractionRunner
from blobstore.replies import (
    accept_device_counter_txn,
    link_message_txn,
    mark_processed_txn,
    record_reply_txn,
    reply_context_txn,
)
from mepl.policy import react_to_alert_txn
from mepl.settings import DispatchConfig
from signing.errors import FrameRejected, Reason
from signing.frames import open_alert, open_reply, peek_alert, peek_reply
from signing.keys import VerifyKey
from signing.transport import ARMOUR_PREFIX, dearmour
from signing.wire import TYPE_ALERT, TYPE_REPLY
from sms_gateway.addresses import mask_msisdn
from sms_gateway.events import Channel, DeliveryReceipt, DeliveryStatus, InboundMessage
from sms_gateway.udh import encode_udh, split_user_data

log = Logger()


class InboundProcessor:
    """Handles ``on_inbound`` and ``on_receipt`` for every SMPP bind and HTTP gateway."""

    def __init__(self, *, runner: InteractionRunner, clock: Clock, server_id: bytes,
                 config: DispatchConfig, policy_ttl: timedelta = timedelta(days=1),
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self._runner = runner
        self._clock = clock
        self._server_id = server_id
        self._config = config
        self._policy_ttl = policy_ttl
        self._on_event = on_event or (lambda kind, data: None)
        self.counts: Counter[str] = Counter()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    # ---------------------------------------------------------------- receipts
    def on_receipt(self, receipt: DeliveryReceipt,
                   source_row: int | None = None) -> Deferred[None]:
        """Record a delivery receipt and roll it up into its command's state.

        ``source_row`` is the stored gateway callback it came from (marked
        processed in the same transaction).
        """
        row = None
        if receipt.channel is Channel.SMPP:  # HTTP callbacks are stored before this call
            row = NewMessage(direction="in", channel="smpp", kind="dlr",
                             payload=(receipt.raw_text or "").encode("utf-8", "replace"),
                             link=receipt.link, peer=receipt.sender,
                             smsc_message_id=receipt.message_id,
                             meta={"status": receipt.status.value,
                                   "error": receipt.error_code})
        now = self._now()
        d: Deferred[Any] = self._runner.run_interaction(
            "record_receipt", _receipt_txn, source_row, link=receipt.link,
            message_id=receipt.message_id, status=receipt.status.value,
            final=receipt.status.is_final,
            delivered=receipt.status is DeliveryStatus.DELIVERED, now=now, row=row,
            retry_at=now + timedelta(seconds=self._config.retry_delay_s))

        def done(outcome: Any) -> None:
            self.counts[f"receipt_{receipt.status.value}"] += 1
            if outcome.new_state is not None:
                self._on_event("command", {"command_id": outcome.command_id,
                                           "state": outcome.new_state})

        return d.addCallback(done)

    # ---------------------------------------------------------------- MO parts
    @inlineCallbacks
    def on_inbound(self, message: InboundMessage, source_row: int | None = None) -> Any:
        """Store one inbound part, then process the whole message once every part is stored.

        ``source_row`` is the stored gateway callback the part came from: it is
        marked processed in the transaction that stores the part.
        """
        user_data = (encode_udh(message.udh) if message.udh else b"") + message.payload
        concat = message.udh.concat if message.udh else None
        meta: dict[str, Any] = {"receiver": message.receiver, "data_coding": message.data_coding}
        if concat is not None:
            meta.update(concat_ref=concat.reference, concat_bits=concat.ref_bits)
        row_id: int = yield self._runner.run_interaction(
            "store_mo", _part_txn, source_row, NewMessage(
                direction="in", channel=message.channel.value,  # type: ignore[arg-type]
                kind="mo", payload=user_data, link=message.link, peer=message.sender,
                smsc_message_id=message.smsc_message_id,
                part_seq=concat.seq if concat else None,
                part_total=concat.total if concat else None, meta=meta))
        self.counts["mo_parts"] += 1
        if concat is None:
            yield self._process(message.payload, (row_id,), message)
            return None
        since = self._now() - timedelta(seconds=self._config.reassembly_timeout_s)
        collected: Collected = yield self._runner.run_interaction(
            "collect_parts", collect_parts_txn, peer=message.sender,
            reference=concat.reference, ref_bits=concat.ref_bits, total=concat.total,
            since=since)
        self.counts["mo_conflicting_part"] += len(collected.conflicting)
        if collected.parts is not None:
            payload = b"".join(split_user_data(p.user_data)[1] for p in collected.parts)
            yield self._process(payload, tuple(p.message_id for p in collected.parts), message)
        return None

    def _mark(self, row_id: int, error: str) -> Deferred[None]:
        d: Deferred[None] = self._runner.run_interaction(
            "mark_message", link_message_txn, row_id, error=error)
        return d

    @inlineCallbacks
    def _process(self, payload: bytes, row_ids: tuple[int, ...],
                 message: InboundMessage) -> Any:
        row_id = row_ids[-1]
        try:
            frame = _frame_of(payload, message)
            kind = frame[0] & 0x0F if frame else -1
            if kind == TYPE_REPLY:
                yield self._reply(frame, row_id)
            elif kind == TYPE_ALERT:
                yield self._alert(frame, row_id, message.sender)
            else:
                raise FrameRejected(Reason.WRONG_FRAME_TYPE)
        except FrameRejected as exc:
            self.counts[f"rejected_{exc.reason.value}"] += 1
            log.warn("inbound frame from {sender} rejected: {reason}",
                     sender=mask_msisdn(message.sender), reason=exc.reason.value)
            for item in row_ids:
                yield self._mark(item, f"rejected: {exc.reason.value}")
        return None

    @inlineCallbacks
    def _reply(self, frame: bytes, row_id: int) -> Any:
        header = peek_reply(frame)
        context = yield self._runner.run_interaction(
            "reply_context", reply_context_txn, header.imei, header.command_key_id,
            header.command_counter)
        if context is None or context.device.public_key is None:
            raise FrameRejected(Reason.WRONG_COMMAND)
        key = VerifyKey.from_raw(int(context.device.key_id or 0), context.device.public_key)
        reply = open_reply(frame, device_key=key, server_id=self._server_id,
                           imei=header.imei, command_frame=context.frame)
        result = {"status": reply.status.name.lower(),
                  "items": [{"tag": tag, "value": value.hex()} for tag, value in reply.items]}
        fresh = yield self._runner.run_interaction(
            "record_reply", record_reply_txn, context, result=result, message_id=row_id,
            now=self._now())
        self.counts["replies" if fresh else "replies_duplicate"] += 1
        if fresh:
            self._on_event("reply", {"command_id": context.command_id,
                                     "opcode": context.opcode, **result})
        return None

    @inlineCallbacks
    def _alert(self, frame: bytes, row_id: int, sender: str) -> Any:
        header = peek_alert(frame)
        device = yield self._runner.run_interaction("device_by_imei", device_by_imei_txn,
                                                    header.imei)
        if device is None or device.public_key is None:
            raise FrameRejected(Reason.WRONG_DEVICE)
        key = VerifyKey.from_raw(int(device.key_id or 0), device.public_key)
        opened = open_alert(frame, device_key=key, server_id=self._server_id, imei=header.imei)
        fresh = yield self._runner.run_interaction(
            "accept_alert_counter", accept_device_counter_txn, device.id,
            opened.header.counter)
        if not fresh:
            raise FrameRejected(Reason.REPLAYED)
        reaction = yield self._runner.run_interaction(
            "react_to_alert", react_to_alert_txn, device_id=device.id,
            alert=opened.alert, sender=sender, message_id=row_id, now=self._now(),
            ttl=self._policy_ttl)
        self.counts[f"alert_{opened.alert.name}"] += 1
        log.info("alert {alert} from device {device_id}: lock command {lock}",
                 alert=opened.alert.name, device_id=device.id,
                 lock=reaction.lock_command_id)
        self._on_event("alert", {"device_id": device.id, "alert": opened.alert.name,
                                 "lock_command_id": reaction.lock_command_id})
        return None


def _part_txn(conn: Connection, source_row: int | None, message: NewMessage) -> int:
    row_id = insert_message_txn(conn, message)
    if source_row is not None:
        mark_processed_txn(conn, source_row, row_id)
    return row_id


def _receipt_txn(conn: Connection, source_row: int | None, /, **kwargs: Any) -> ReceiptOutcome:
    outcome = record_receipt_txn(conn, **kwargs)
    if source_row is not None:
        mark_processed_txn(conn, source_row)
    return outcome


def _frame_of(payload: bytes, message: InboundMessage) -> bytes:
    """The frame bytes: binary as is, or de-armoured text from text-only gateways."""
    if message.text is not None and message.text.lstrip().startswith(ARMOUR_PREFIX):
        return dearmour(message.text)
    if payload[:len(ARMOUR_PREFIX)] == ARMOUR_PREFIX.encode("ascii"):
        return dearmour(payload.decode("ascii", "replace"))
    return payload
