"""The raw PDU log: every SMPP PDU sent or received, a ``messages`` row of kind ``pdu``.

Written in group commits like :class:`~blobstore.batcher.MessageBatcher`,
but lighter, because nothing needs a PDU row's id:

- each PDU's COPY line is built from its fields as it arrives
  (:func:`pdu_line`), with no message object in between;
- the PDUs of one batch share one Deferred, which fires once their rows are
  committed (an SMPP bind counts each record as buffered until then);
- the rows take their ids from the column's default, so a batch is one COPY.

With ``pdu_log = "all"`` a command's round trip writes six PDU rows against
three SMS rows; the PDU log cost about 11 % of MEPL's CPU per command
through the general batcher (docs/benchmarks.md).  With ``pdu_log =
"batched"`` (the default) the same writer queues packed records instead of
lines and stores a batch as one row per (direction, link)
(:mod:`blobstore.pdu_batches`).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from blobstore.batcher import GroupCommit, observe
from blobstore.copy import NULL, bytea_cell, copy_from_text, text_cell
from blobstore.messages import COPY_COLUMNS, meta_json
from blobstore.pool import Clock, DelayedCall, InteractionRunner
from blobstore.schema import DIRECTIONS

log = Logger()

Item = TypeVar("Item")

_COPY_PDUS = f"COPY messages ({', '.join(COPY_COLUMNS[1:])}) FROM STDIN"


def pdu_line(*, direction: str, link: str, command: str, sequence: int, status: int,
             reference: str | None, message_id: str | None, raw: bytes) -> str:
    """One PDU as a ``messages`` row in COPY text, without ``id`` (the column default gives it).

    The same text as ``NewMessage(direction, "smpp", "pdu", raw, link=link,
    smsc_message_id=message_id, meta={"command": ..., "sequence": ...,
    "status": ..., "reference": ...}).copy_text``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    meta = meta_json({"command": command, "sequence": sequence, "status": status,
                      "reference": reference})
    return "\t".join((
        direction, "smpp", "pdu", text_cell(link), NULL, NULL, NULL, text_cell(message_id),
        NULL, NULL, NULL, bytea_cell(raw), bytea_cell(hashlib.sha256(raw).digest()), NULL,
        text_cell(meta),
    ))


def insert_pdus_txn(conn: Connection, lines: Sequence[str]) -> int:
    """Store PDU rows (:func:`pdu_line` text) with one COPY; returns how many."""
    if lines:
        copy_from_text(conn, _COPY_PDUS, "\n".join(lines) + "\n")
    return len(lines)


class _Batch(Generic[Item]):
    __slots__ = ("due", "lines", "stored")

    def __init__(self, due: float) -> None:
        self.due = due
        self.lines: list[Item] = []
        self.stored: Deferred[None] = Deferred()


class PduLog(GroupCommit, Generic[Item]):
    """Collects PDU items and writes them in batches through ``runner``.

    The items are :func:`pdu_line` texts written by :func:`insert_pdus_txn`
    (the default), or what another ``write_txn`` takes (one transaction per
    batch, returning how many it stored).
    ``add`` returns the Deferred of the batch the item joined: it fires with
    None once the batch is committed, or fails when it could not be written
    (the store unavailable, retries exhausted).  A batch is written when it
    holds ``max_rows`` items or ``max_delay_s`` after its first item, at most
    ``max_in_flight`` at once (a batch held back by that cap goes when an
    earlier one is done).  Nothing waits for PDU rows but the binds' count
    of buffered records, so a batch that is not full waits out its delay
    even when the store is idle: fewer, larger transactions.
    Beyond ``max_backlog`` waiting lines, ``add`` fails at once.
    ``on_lost(n)`` counts the lines of every batch that failed.
    """

    def __init__(self, runner: InteractionRunner, clock: Clock, *, max_rows: int = 500,
                 max_delay_s: float = 0.005, max_in_flight: int = 2,
                 max_backlog: int = 50_000,
                 on_lost: Callable[[int], object] | None = None,
                 write_txn: Callable[[Connection, Sequence[Item]], int] | None = None,
                 ) -> None:
        super().__init__(runner, clock, max_rows=max_rows, max_delay_s=max_delay_s,
                         max_in_flight=max_in_flight, max_backlog=max_backlog)
        self._on_lost = on_lost
        self._write_txn: Callable[[Connection, Sequence[Any]], int] = (
            write_txn if write_txn is not None else insert_pdus_txn)
        self._batches: deque[_Batch[Item]] = deque()
        self._waiting = 0
        self._timer: DelayedCall | None = None
        self._in_flight: list[Deferred[None]] = []
        self.batches_written = 0

    @property
    def pending(self) -> int:
        """Lines waiting for a batch."""
        return self._waiting

    def add(self, line: Item) -> Deferred[None]:
        """Queue one PDU item; the Deferred fires once its batch is committed."""
        refused = self._refused(self._waiting, "insert_pdus")
        if refused is not None:
            return refused
        batch = self._batches[-1] if self._batches else None
        if batch is None or len(batch.lines) >= self._max_rows:
            batch = _Batch(self._clock.seconds() + self._max_delay_s)
            self._batches.append(batch)
        batch.lines.append(line)
        self._waiting += 1
        if len(batch.lines) >= self._max_rows:
            self._write_next()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._max_delay_s, self._on_timer)
        return batch.stored

    def flush(self) -> Deferred[None]:
        """Write every line added so far; fires when all of it is committed or failed."""
        watched: list[Deferred[object]] = [observe(b.stored) for b in self._batches]
        while self._batches:
            self._write(self._batches.popleft())
        watched += [observe(d) for d in self._in_flight]
        if not watched:
            return succeed(None)
        return DeferredList(watched).addCallback(lambda _: None)

    def _on_timer(self) -> None:
        self._timer = None
        self._write_next()

    def _write_next(self) -> None:
        """Write the batches that are full or due, within the cap; wait for the next one."""
        now = self._clock.seconds()
        while (self._batches and len(self._in_flight) < self._max_in_flight
               and (len(self._batches[0].lines) >= self._max_rows
                    or self._batches[0].due <= now)):
            self._write(self._batches.popleft())
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._batches and self._batches[0].due > now:
            self._timer = self._clock.callLater(self._batches[0].due - now, self._on_timer)
        # else: the first batch is due but held by the cap; _done writes it

    def _write(self, batch: _Batch[Item]) -> None:
        self._waiting -= len(batch.lines)
        d = self._runner.run_interaction("insert_pdus", self._write_txn, batch.lines)
        finished: Deferred[None] = d.addCallbacks(self._stored, self._lost,
                                                  callbackArgs=(batch,), errbackArgs=(batch,))
        self._in_flight.append(finished)
        finished.addBoth(self._done, finished)

    def _stored(self, _: int, batch: _Batch[Item]) -> None:
        self.batches_written += 1
        batch.stored.callback(None)

    def _lost(self, failure: Failure, batch: _Batch[Item]) -> None:
        log.warn("{n} PDU rows not stored: {error}", n=len(batch.lines),
                 error=failure.getErrorMessage())
        if self._on_lost is not None:
            self._on_lost(len(batch.lines))
        batch.stored.errback(failure)

    def _done(self, result: object, finished: Deferred[None]) -> None:
        if isinstance(result, Failure):  # pragma: no cover - a bug in delivery itself
            log.failure("PDU batch delivery failed", result)
        self._in_flight.remove(finished)
        self._write_next()

