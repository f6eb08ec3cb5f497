"""deliver_sm handling for a bind: decode, hand over, answer only when stored.

A receipt whose id is not known yet (its submit_sm_resp is still in flight)
is held by the bind's :class:`ReceiptHold`.  deliver_sm_resp goes out with
ESME_ROK when the callback's Deferred fires, with ESME_RX_T_APPN (temporary:
the SMSC retries) when it fails, and with ESME_RX_P_APPN for a PDU that can
never be decoded (its raw bytes still reach ``pdu_sink``).  Every decoded
deliver_sm counts in the bind's :class:`~sms_gateway.smpp.backlog.Backlog`
from the moment it is read (held or not) until its callback fires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sms_gateway.addresses import mask_msisdn
from sms_gateway.errors import UdhError
from sms_gateway.events import DeliveryReceipt, InboundMessage
from sms_gateway.smpp import codec
from sms_gateway.smpp.clock import DelayedCall
from sms_gateway.smpp.inbound import inbound_from_sm
from sms_gateway.smpp.protocol import SmppProtocol
from sms_gateway.smpp.receipts import is_receipt, receipt_from_sm

if TYPE_CHECKING:
    from sms_gateway.smpp.bind import SmppBind

log = Logger()
_NO_RESPONSE = frozenset((codec.COMMANDS["alert_notification"],))


class InboundHandler:
    """Answers deliver_sm for one bind."""

    def __init__(self, bind: SmppBind,
                 on_inbound: Callable[[InboundMessage], Deferred[None]],
                 on_receipt: Callable[[DeliveryReceipt], Deferred[None]]) -> None:
        self.bind = bind
        self.on_inbound = on_inbound
        self.on_receipt = on_receipt
        self._expiry: DelayedCall | None = None

    def on_request(self, proto: SmppProtocol, pdu: codec.Pdu) -> None:
        """A request from the SMSC (deliver_sm, or something we do not serve)."""
        if pdu.command_id in _NO_RESPONSE:
            return
        if pdu.command_id != codec.DELIVER_SM:
            proto.session.send_response(codec.GENERIC_NACK, pdu.sequence, codec.ESME_RINVCMDID)
            return
        self.bind.stats["deliver_sm"] += 1
        link = self.bind.name
        try:
            sm = codec.decode_short_message(pdu.body)
            if is_receipt(sm):
                cfg = self.bind.config
                receipt = receipt_from_sm(sm, link=link, received_at=self.bind.now_utc(),
                                          id_mode=cfg.message_id_mode,
                                          text_id_mode=cfg.receipt_text_id_mode)
            else:
                message = inbound_from_sm(sm, link=link, received_at=self.bind.now_utc())
        except (codec.CodecError, UdhError, ValueError) as exc:
            log.warn("bind {link}: undecodable deliver_sm seq {seq}: {error}", link=link,
                     seq=pdu.sequence, error=str(exc))
            self._answer(proto, pdu.sequence, codec.ESME_RX_P_APPN)
            return
        self.bind.backlog.add_inbound()
        if not is_receipt(sm):
            self._call(proto, pdu.sequence, self.on_inbound, message,
                       f"MO from {mask_msisdn(message.sender)}")
            return
        hold = self.bind.hold
        if hold.should_hold(receipt.message_id, self.bind.submits_in_flight()):
            for pushed in hold.hold(receipt.message_id, (proto, pdu.sequence, receipt),
                                    self.bind.clock.seconds()):
                self.deliver_held(pushed.item)
            self._schedule_expiry()
            return
        self._call(proto, pdu.sequence, self.on_receipt, receipt, "receipt")

    def deliver_held(self, item: Any) -> None:
        """Hand over a receipt that was waiting for its id."""
        proto, seq, receipt = item
        self._call(proto, seq, self.on_receipt, receipt, "receipt")

    def stop(self) -> None:
        """The bind stopped: no more expiry rounds (it released every held receipt)."""
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    def _schedule_expiry(self) -> None:
        bind = self.bind
        if self._expiry is not None:
            return

        def expire() -> None:
            self._expiry = None
            for held in bind.hold.expire(bind.clock.seconds()):
                self.deliver_held(held.item)
            if len(bind.hold):
                self._schedule_expiry()

        self._expiry = bind.clock.callLater(max(0.5, bind.hold.max_age / 4), expire)

    def _call(self, proto: SmppProtocol, seq: int, callback: Callable[[Any], Deferred[None]],
              item: object, what: str) -> None:
        d = defer.maybeDeferred(callback, item)

        def ok(_: object) -> None:
            self._settle(proto, seq, codec.ESME_ROK)

        def failed(failure: Failure) -> None:
            log.failure("bind {link}: {what} not stored; SMSC will retry", failure,
                        link=self.bind.name, what=what)
            self._settle(proto, seq, codec.ESME_RX_T_APPN)

        d.addCallbacks(ok, failed)

    def _settle(self, proto: SmppProtocol, seq: int, status: int) -> None:
        # Uncount first: the answer's record takes the deliver_sm's place in the count.
        self.bind.backlog.inbound_settled()
        self._answer(proto, seq, status)
        self.bind.check_drained()  # a stopping bind unbinds only after this answer

    def _answer(self, proto: SmppProtocol, seq: int, status: int) -> None:
        if not proto.connected_now:
            return  # the SMSC will redeliver on the next bind
        proto.session.send_response(codec.DELIVER_SM_RESP, seq, status, b"\0")
        proto.flush()
