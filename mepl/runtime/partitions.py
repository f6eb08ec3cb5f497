"""Keeping the ``messages`` partitions ahead of time, from the running service.

At start and then every :data:`KEEP_INTERVAL_S` the keeper creates any
missing monthly partition up to :data:`~blobstore.partitions.MONTHS_AHEAD`
months after the current one (:func:`~blobstore.partitions.ensure_partitions_txn`;
several processes may do it at once).  A failure (a lock not granted in
time, the database away) is logged and retried at the next turn; with three
months ahead there are months of turns before any row would land in the
default partition, and even then it is kept (``mepl_messages_default_partition_rows``
on ``/metrics`` shows it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from blobstore.partitions import MONTHS_AHEAD, ensure_partitions_txn
from blobstore.pool import InteractionRunner

log = Logger()

KEEP_INTERVAL_S = 6 * 3600.0
RETRY_INTERVAL_S = 300.0


class PartitionKeeper:
    """Runs :func:`ensure_partitions_txn` at start and every few hours."""

    def __init__(self, runner: InteractionRunner, clock: Any, *,
                 interval_s: float = KEEP_INTERVAL_S, months_ahead: int = MONTHS_AHEAD) -> None:
        self._runner = runner
        self._clock = clock
        self._interval = interval_s
        self._months_ahead = months_ahead
        self._call: Any = None
        self._stopped = True
        self.created: list[str] = []

    def start(self) -> None:
        """Check now, then every interval."""
        self._stopped = False
        self._turn()

    def stop(self) -> None:
        """No more turns."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def ensure(self) -> Deferred[list[str]]:
        """One check; fires with the partitions created."""
        now = datetime.fromtimestamp(self._clock.seconds(), UTC)
        d: Deferred[list[str]] = self._runner.run_interaction(
            "ensure message partitions", ensure_partitions_txn, now=now,
            months_ahead=self._months_ahead)
        return d

    def _turn(self) -> None:
        self._call = None
        if self._stopped:
            return

        def done(created: list[str]) -> float:
            if created:
                self.created.extend(created)
                log.info("message partitions created: {partitions}",
                         partitions=", ".join(created))
            return self._interval

        def failed(failure: Any) -> float:
            log.warn("message partitions not checked ({error}); again in {retry_s:.0f} s",
                     error=failure.getErrorMessage(), retry_s=RETRY_INTERVAL_S)
            return RETRY_INTERVAL_S

        def again(delay: float) -> None:
            if not self._stopped:
                self._call = self._clock.callLater(delay, self._turn)

        self.ensure().addCallbacks(done, failed).addCallback(again)
