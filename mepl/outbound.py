"""The outbound half of the loop: queued command rows become signed SMS on a link.

Every ``poll_interval_s``, or at once when woken, the dispatcher claims due
commands in one transaction (``FOR UPDATE SKIP LOCKED``, security commands first), which also
seals new frames and commits them; then it submits each frame through the
router and records the outcomes in one transaction.  ``dispatch_lanes``
such rounds run at once, so that a round's claim and sealing overlap
another's wait for the SMSC's answers.  Several MEPL processes can run dispatchers
on one database: the claim is the only coordination they need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure

from blobstore.pool import Clock, InteractionRunner
from mepl.runtime.outbound_txn import (
    Housekeeping,
    ReadyCommand,
    Sealer,
    SubmitFailure,
    Submitted,
    claim_and_seal_txn,
    housekeeping_txn,
    record_submits_txn,
)
from mepl.runtime.rounds import Lanes
from mepl.settings import DispatchConfig
from signing.transport import DEVICE_PORT, SERVER_PORT
from sms_gateway.addresses import mask_msisdn
from sms_gateway.channel import DATA_CODING_BINARY, OutboundMessage, SubmitResult
from sms_gateway.errors import SubmitError

log = Logger()


class Submitter(Protocol):
    """Anything with the channel ``submit`` contract (a Router, or one bind)."""

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        """Send one message."""


@dataclass
class DispatchStats:
    """Counters of what the dispatcher did (exported as metrics)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    expired: int = 0
    released: int = 0
    resent: int = 0
    parts_expired: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    """Claims, seals and submits commands until stopped."""

    def __init__(self, *, runner: InteractionRunner, clock: Clock, submitter: Submitter,
                 seal: Sealer, key_id: Callable[[], int], config: DispatchConfig,
                 worker: str, channel_of: Callable[[str], str] | None = None,
                 ready: Callable[[], bool] | None = None) -> None:
        self._runner = runner
        self._clock = clock
        self._submitter = submitter
        self._seal = seal
        self._key_id = key_id
        self._config = config
        self._worker = worker
        self._channel_of = channel_of or (lambda link: "smpp")
        self._ready = ready or (lambda: True)
        self._rounds = Lanes(clock, self.run_once, count=config.dispatch_lanes,
                             idle_s=config.poll_interval_s,
                             busy=lambda claimed: claimed >= config.claim_batch,
                             name="dispatch")
        self._next_housekeeping = 0.0
        self._housekeeping: Deferred[Housekeeping] | None = None
        self.stats = DispatchStats()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def start(self) -> None:
        """Begin polling."""
        self._rounds.start()

    def stop(self) -> Deferred[None]:
        """Stop polling; fires once the round in progress (if any) has finished."""
        return self._rounds.stop()

    def wake(self) -> None:
        """Commands were queued: claim as soon as the current round is done."""
        self._rounds.wake()

    @inlineCallbacks
    def run_once(self) -> Any:
        """One round: housekeeping when due, then (when a link is up) claim and seal,
        submit each, record each outcome; returns how many commands were claimed."""
        if self._clock.seconds() >= self._next_housekeeping and self._housekeeping is None:
            self._housekeeping = self.housekeeping()
            try:
                yield self._housekeeping
            finally:
                self._housekeeping = None
        if not self._ready():  # no link up: leave the queue to processes that can send
            return 0
        ready: list[ReadyCommand] = yield self._runner.run_interaction(
            "claim_and_seal", claim_and_seal_txn, worker=self._worker, now=self._now(),
            limit=self._config.claim_batch, key_id=self._key_id(), seal=self._seal)
        self.stats.claimed += len(ready)
        if ready:
            yield self._send_all(ready)
        return len(ready)

    @inlineCallbacks
    def housekeeping(self) -> Any:
        """Expire, release dead claims and resend unanswered commands (see DispatchConfig)."""
        cfg = self._config
        self._next_housekeeping = self._clock.seconds() + cfg.housekeeping_interval_s
        now = self._now()
        done: Housekeeping = yield self._runner.run_interaction(
            "housekeeping", housekeeping_txn, now=now,
            stale_before=now - timedelta(seconds=cfg.stale_claim_s),
            unanswered_before=now - timedelta(seconds=cfg.resend_after_s),
            max_attempts=cfg.max_attempts,
            parts_before=now - timedelta(seconds=cfg.reassembly_timeout_s),
            receipts_before=now - timedelta(seconds=cfg.receipt_wait_s), actor=self._worker)
        self.stats.expired += done.expired
        self.stats.released += done.released
        self.stats.resent += done.resent
        self.stats.parts_expired += done.parts_expired
        if done.receipts_woken:
            log.info("housekeeping: {n} receipts woken whose submit was recorded while they "
                     "were being applied", n=done.receipts_woken)
        if done.expired or done.released or done.resent or done.parts_expired:
            log.info("housekeeping: {expired} expired, {released} released, {resent} resent, "
                     "{parts} incomplete inbound parts expired", expired=done.expired,
                     released=done.released, resent=done.resent, parts=done.parts_expired)
        return done

    def _submit(self, command: ReadyCommand) -> Deferred[SubmitResult]:
        return self._submitter.submit(OutboundMessage(
            destination=command.msisdn, payload=command.frame, data_coding=DATA_CODING_BINARY,
            source=self._config.server_number, dest_port=DEVICE_PORT, src_port=SERVER_PORT,
            reference=f"cmd-{command.command_id}"))

    @inlineCallbacks
    def _send_all(self, ready: list[ReadyCommand]) -> Any:
        """Submit a claimed batch, then record every outcome in one transaction."""
        results = yield DeferredList([self._submit(c) for c in ready], consumeErrors=True)
        now = self._now()
        sent: list[Submitted] = []
        failed: list[SubmitFailure] = []
        for command, (ok, value) in zip(ready, results, strict=True):
            if ok:
                self.stats.sent += 1
                log.debug("command {command_id} sent to {to} on {link} as {ids}",
                          command_id=command.command_id, to=mask_msisdn(command.msisdn),
                          link=value.link, ids=",".join(value.message_ids))
                sent.append(Submitted(command, value.link, self._channel_of(value.link),
                                      tuple(value.message_ids)))
            else:
                failed.append(self._failure(value, command, now))
        yield self._runner.run_interaction(
            "record_submits", record_submits_txn, sent, failed, now=now, actor=self._worker)

    def _failure(self, failure: Failure, command: ReadyCommand, now: datetime) -> SubmitFailure:
        exc = failure.value
        temporary = isinstance(exc, SubmitError) and exc.temporary
        reason = type(exc).__name__
        self.stats.errors[reason] = self.stats.errors.get(reason, 0) + 1
        retry_at = None
        if temporary or not isinstance(exc, SubmitError):
            backoff = self._config.retry_delay_s * min(2 ** max(command.attempts - 1, 0), 32)
            retry_at = now + timedelta(seconds=backoff)
            self.stats.retried += 1
        else:
            self.stats.failed += 1
        log.warn("command {command_id} not sent ({reason}: {error}); {what}",
                 command_id=command.command_id, reason=reason, error=str(exc),
                 what="will retry" if retry_at else "failed")
        return SubmitFailure(command.command_id, f"{reason}: {exc}", retry_at)
