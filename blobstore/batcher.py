"""Batched message writes: many rows, one transaction, each caller told only after commit.

Bursts of PDUs and receipts would cost one transaction each; the batcher
collects them and writes one multi-row INSERT per batch, when the batch is
full or a short delay after its first row (injected clock).  Each
:meth:`MessageBatcher.add` returns a Deferred that fires with the row's id
only once the batch is committed, so callers acknowledge only what is stored.

If a batch fails for a reason a retry cannot cure (one row a constraint
refuses, say), its rows are written again one by one, each in its own savepoint,
so only the faulty rows fail.  A row whose (direction, link, external_id) is
already stored fails with :class:`~blobstore.errors.DuplicateMessageError`
carrying the stored row's id.  When the store is unavailable every waiting
Deferred fails with :class:`~blobstore.errors.StoreUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from blobstore.config import DatabaseConfig
from blobstore.errors import DuplicateMessageError, StoreUnavailableError
from blobstore.messages import NewMessage, insert_messages_txn, insert_unique_message_txn
from blobstore.pool import Clock, DelayedCall, InteractionRunner

log = Logger()

Outcome = int | Exception
AfterInsert = Callable[[Connection, Sequence[NewMessage], Sequence[Outcome]], None]
"""Work done in the batch's own transaction once its rows are inserted (e.g. queue them)."""


def insert_batch_txn(conn: Connection, batch: Sequence[NewMessage]) -> list[Outcome]:
    """Insert ``batch``: plain rows in one multi-row INSERT, rows with an external id uniquely.

    Returns, per row, its id or a :class:`DuplicateMessageError`.
    """
    outcomes: list[Outcome] = [0] * len(batch)
    plain = [i for i, m in enumerate(batch) if m.external_id is None]
    for index, new_id in zip(plain, insert_messages_txn(conn, [batch[i] for i in plain]),
                             strict=True):
        outcomes[index] = new_id
    for index, message in enumerate(batch):
        if message.external_id is not None:
            row_id, duplicate = insert_unique_message_txn(conn, message)
            outcomes[index] = DuplicateMessageError(row_id) if duplicate else row_id
    return outcomes


def insert_each_txn(conn: Connection, batch: Sequence[NewMessage]) -> list[Outcome]:
    """Insert each row in its own savepoint; a row that fails gets its exception."""
    outcomes: list[Outcome] = []
    for message in batch:
        try:
            with conn.begin_nested():
                outcomes.append(insert_batch_txn(conn, [message])[0])
        except (IntegrityError, DataError) as exc:
            outcomes.append(exc)
    return outcomes


def _then_txn(conn: Connection, batch: Sequence[NewMessage],
              insert: Callable[[Connection, Sequence[NewMessage]], list[Outcome]],
              after: AfterInsert | None) -> list[Outcome]:
    outcomes = insert(conn, batch)
    if after is not None:
        after(conn, batch, outcomes)
    return outcomes


class GroupCommit:
    """What every batched writer keeps: where it writes, its clock and its limits.

    ``max_rows`` caps a batch; ``max_delay_s`` is how long the first row of a
    batch may wait for company; at most ``max_in_flight`` batches are written
    at once; beyond ``max_backlog`` waiting rows, new rows are refused.
    """

    def __init__(self, runner: InteractionRunner, clock: Clock, *, max_rows: int,
                 max_delay_s: float, max_in_flight: int, max_backlog: int) -> None:
        if max_rows < 1 or max_in_flight < 1:
            raise ValueError("max_rows and max_in_flight must be at least 1")
        self._runner = runner
        self._clock = clock
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._max_in_flight = max_in_flight
        self._max_backlog = max_backlog

    def _refused(self, waiting: int, what: str) -> Deferred[Any] | None:
        """A failed Deferred when ``waiting`` rows already fill the backlog, else None."""
        if waiting < self._max_backlog:
            return None
        return fail(StoreUnavailableError(what, 0, RuntimeError(f"{waiting} rows waiting")))


class MessageBatcher(GroupCommit):
    """Collects :class:`NewMessage` rows and writes them in batches through ``runner``.

    ``max_rows`` caps a batch; ``max_delay_s`` is how long the first row of a
    batch may wait for company; at most ``max_in_flight`` batches are being
    written at once (more rows wait and form the next batch).  Beyond
    ``max_backlog`` waiting rows, :meth:`add` fails at once with
    :class:`StoreUnavailableError` instead of growing memory without bound.
    ``after_insert`` (optional) runs in each batch's transaction once its rows
    are inserted, so what it writes commits with them or not at all.
    """

    def __init__(self, runner: InteractionRunner, clock: Clock, *,
                 max_rows: int = 500, max_delay_s: float = 0.005, max_in_flight: int = 2,
                 max_backlog: int = 50_000, after_insert: AfterInsert | None = None) -> None:
        super().__init__(runner, clock, max_rows=max_rows, max_delay_s=max_delay_s,
                         max_in_flight=max_in_flight, max_backlog=max_backlog)
        self._after_insert = after_insert
        self._pending: list[tuple[NewMessage, Deferred[int]]] = []
        self._timer: DelayedCall | None = None
        self._in_flight: list[Deferred[None]] = []
        self.batches_written = 0

    @classmethod
    def from_config(cls, runner: InteractionRunner, clock: Clock,
                    config: DatabaseConfig) -> MessageBatcher:
        """A batcher sized as ``config`` says (``batch_max_rows``, ``batch_max_delay_ms``)."""
        return cls(runner, clock, max_rows=config.batch_max_rows,
                   max_delay_s=config.batch_max_delay_ms / 1000,
                   max_in_flight=max(1, min(2, config.pool_size - 1)))

    @property
    def pending(self) -> int:
        """Rows waiting for a batch."""
        return len(self._pending)

    def add(self, message: NewMessage) -> Deferred[int]:
        """Queue ``message``; the Deferred fires with its id once committed."""
        refused = self._refused(len(self._pending), "insert_messages")
        if refused is not None:
            return refused
        # Encode the row now, on the caller's turn: the worker thread then
        # only does I/O, and never holds the GIL long enough to stall the reactor.
        _ = message.copy_text
        waiter: Deferred[int] = Deferred()
        self._pending.append((message, waiter))
        if len(self._pending) >= self._max_rows:
            self._flush_ready()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._max_delay_s, self._on_timer)
        return waiter

    def flush(self) -> Deferred[None]:
        """Write everything added so far; fires when all of it is committed or failed."""
        if not self._pending and not self._in_flight:
            return succeed(None)
        waiters = [w for _, w in self._pending]
        self._flush_ready(force=True)
        watched: list[Deferred[object]] = [observe(w) for w in waiters]
        watched += [observe(d) for d in self._in_flight]
        done: Deferred[None] = DeferredList(watched).addCallback(lambda _: None)
        return done

    def _on_timer(self) -> None:
        self._timer = None
        self._flush_ready()

    def _flush_ready(self, force: bool = False) -> None:
        while self._pending and (force or len(self._in_flight) < self._max_in_flight):
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            batch = self._pending[: self._max_rows]
            del self._pending[: self._max_rows]
            self._write(batch)
            if not force:
                break
        if self._pending and self._timer is None and len(self._in_flight) < self._max_in_flight:
            self._timer = self._clock.callLater(self._max_delay_s, self._on_timer)

    def _write(self, batch: list[tuple[NewMessage, Deferred[int]]]) -> None:
        rows = [m for m, _ in batch]
        d = self._runner.run_interaction("insert_messages", _then_txn, rows, insert_batch_txn,
                                         self._after_insert)
        d.addErrback(self._fallback, rows)
        finished: Deferred[None] = d.addCallbacks(
            self._deliver, self._fail_all, callbackArgs=(batch,), errbackArgs=(batch,)
        )
        self._in_flight.append(finished)
        finished.addBoth(self._batch_done, finished)

    def _fallback(self, failure: Failure, rows: list[NewMessage]) -> Deferred[list[Outcome]]:
        error = failure.value
        if isinstance(error, StoreUnavailableError) or (
                len(rows) == 1 and not isinstance(error, IntegrityError | DataError)):
            return fail(failure)
        log.warn("message batch of {n} failed ({error}); writing rows one by one",
                 n=len(rows), error=failure.getErrorMessage())
        return self._runner.run_interaction("insert_messages_each", _then_txn, rows,
                                            insert_each_txn, self._after_insert)

    def _deliver(self, outcomes: list[Outcome],
                 batch: list[tuple[NewMessage, Deferred[int]]]) -> None:
        if len(outcomes) != len(batch):  # pragma: no cover - a bug, but never leave waiters
            self._fail_all(Failure(RuntimeError(
                f"{len(outcomes)} outcomes for a batch of {len(batch)}")), batch)
            return
        self.batches_written += 1
        for (_, waiter), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    def _fail_all(self, failure: Failure,
                  batch: list[tuple[NewMessage, Deferred[int]]]) -> None:
        if isinstance(failure.value, StoreUnavailableError):
            log.warn("message batch of {n} not stored: {error}", n=len(batch),
                     error=failure.getErrorMessage())
        else:
            log.failure("message batch of {n} not stored", failure, n=len(batch))
        for _, waiter in batch:
            waiter.errback(failure)

    def _batch_done(self, result: object, finished: Deferred[None]) -> None:
        if isinstance(result, Failure):  # pragma: no cover - bug in delivery itself
            log.failure("message batch delivery failed", result)
        self._in_flight.remove(finished)
        if self._pending and len(self._in_flight) < self._max_in_flight:
            self._flush_ready()


def observe(d: Deferred[Any]) -> Deferred[object]:
    """A Deferred that fires (with None) when ``d`` does, leaving ``d``'s result alone."""
    observer: Deferred[object] = Deferred()

    def relay(result: object) -> object:
        observer.callback(None)
        return result

    d.addBoth(relay)
    return observer
