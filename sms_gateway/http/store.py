"""Callback stores that need no database: group commit in front of a batch store,
and an in-memory store (tests, benchmarks, a dry run).

:class:`BatchingCallbackStore` turns a ``store_batch`` function (one
transaction for many callbacks, e.g. over ``DatabasePool.run_interaction``)
into a :class:`CallbackStore`.  While a batch is being committed, new
callbacks queue; when it finishes, everything queued goes in the next batch.
At low load each callback is its own batch (no added latency); under load
batches grow by themselves.  Each caller's Deferred fires only when the batch
holding its row has committed, so "acknowledge only what is stored" holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from sms_gateway.http.callback import RawCallback, StoredCallback, StoreUnavailableError

StoreBatch = Callable[[Sequence[RawCallback]], Deferred[Sequence[StoredCallback]]]


class BatchingCallbackStore:
    """Group commit: at most ``max_in_flight`` batches of up to ``max_batch`` callbacks."""

    def __init__(self, store_batch: StoreBatch, *, max_batch: int = 500,
                 max_in_flight: int = 1) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._store_batch = store_batch
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[RawCallback, Deferred[StoredCallback]]] = []
        self._in_flight = 0
        self.batches = 0

    def store(self, raw: RawCallback) -> Deferred[StoredCallback]:
        """Queue ``raw`` for the next batch; fires when that batch has committed."""
        d: Deferred[StoredCallback] = Deferred()
        self._pending.append((raw, d))
        self._kick()
        return d

    def _kick(self) -> None:
        while self._pending and self._in_flight < self._max_in_flight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._in_flight += 1
            self.batches += 1
            d = maybeDeferred(self._store_batch, [raw for raw, _ in batch])
            d.addBoth(self._done, batch)

    def _done(self, result: Sequence[StoredCallback] | Failure,
              batch: list[tuple[RawCallback, Deferred[StoredCallback]]]) -> None:
        self._in_flight -= 1
        self._kick()  # start the next batch before answering this one
        if not isinstance(result, Failure) and len(result) != len(batch):
            result = Failure(StoreUnavailableError(  # type: ignore[no-untyped-call]
                f"store_batch returned {len(result)} results for {len(batch)} callbacks"))
        if isinstance(result, Failure):
            for _, d in batch:
                d.errback(result)
        else:
            for (_, d), stored in zip(batch, result, strict=True):
                d.callback(stored)


class MemoryCallbackStore:
    """Keeps callbacks in a list, with the same duplicate rule as the real store.

    Set ``failing`` to make every store fail (as a database outage would).
    """

    def __init__(self) -> None:
        self.rows: list[RawCallback] = []
        self.failing = False
        self._keys: dict[tuple[str, str, str], int] = {}

    def store(self, raw: RawCallback) -> Deferred[StoredCallback]:
        """Store one callback now."""
        if self.failing:
            return fail(StoreUnavailableError("memory store is in failing mode"))
        return succeed(self._insert(raw))

    def store_batch(self, raws: Sequence[RawCallback]) -> Deferred[Sequence[StoredCallback]]:
        """Store several callbacks at once (for :class:`BatchingCallbackStore`)."""
        if self.failing:
            return fail(StoreUnavailableError("memory store is in failing mode"))
        return succeed([self._insert(raw) for raw in raws])

    def _insert(self, raw: RawCallback) -> StoredCallback:
        key = None if raw.external_id is None else (raw.gateway, raw.kind, raw.external_id)
        if key is not None and key in self._keys:
            return StoredCallback(self._keys[key], duplicate=True)
        self.rows.append(raw)
        row_id = len(self.rows)
        if key is not None:
            self._keys[key] = row_id
        return StoredCallback(row_id, duplicate=False)
