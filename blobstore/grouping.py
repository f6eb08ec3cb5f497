"""Group commit for independent transactions: the ones asked for in one turn run as one.

A :class:`GroupingRunner` has the ``run_interaction`` contract.  Calls made
in the same reactor turn (or up to ``max_calls`` of them) are run by the
underlying pool as one transaction, each function in its own savepoint: a
function that raises is rolled back alone and its caller gets the exception;
the others commit together.  A burst of small transactions (one per inbound
item, say) then costs one commit, which is where the time goes.

Only for functions that are independent of each other's outcome and
correct if committed later than they ran (each still sees the others'
earlier writes, being in one transaction).  If the whole transaction fails
(the store is unavailable, or a deadlock the pool's retries do not cure),
every caller of the group gets the failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from blobstore.pool import Clock, DelayedCall, InteractionRunner

P = ParamSpec("P")
T = TypeVar("T")

_Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def run_group_txn(conn: Connection, calls: Sequence[_Call]) -> list[tuple[bool, Any]]:
    """Run each call in its own savepoint: ``(True, result)`` or ``(False, exception)``."""
    outcomes: list[tuple[bool, Any]] = []
    for fn, args, kwargs in calls:
        try:
            with conn.begin_nested():
                outcomes.append((True, fn(conn, *args, **kwargs)))
        except Exception as exc:  # the caller gets it; the others go on
            outcomes.append((False, exc))
    return outcomes


class GroupingRunner:
    """Coalesces the interactions asked for in one reactor turn into one transaction."""

    def __init__(self, runner: InteractionRunner, clock: Clock, *, max_calls: int = 200,
                 name: str = "group") -> None:
        self._runner = runner
        self._clock = clock
        self._max_calls = max_calls
        self._name = name
        self._pending: list[tuple[_Call, Deferred[Any]]] = []
        self._timer: DelayedCall | None = None
        self.transactions = 0

    def run_interaction(self, desc: str, fn_txn: Callable[Concatenate[Connection, P], T],
                        /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Queue ``fn_txn``; it runs with the others of this turn, in its own savepoint."""
        waiter: Deferred[T] = Deferred()
        self._pending.append(((fn_txn, args, dict(kwargs)), waiter))
        if len(self._pending) >= self._max_calls:
            self._flush()
        elif self._timer is None:
            self._timer = self._clock.callLater(0, self._flush)
        return waiter

    def _flush(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        group, self._pending = self._pending, []
        if not group:
            return
        self.transactions += 1
        d = self._runner.run_interaction(f"{self._name}[{len(group)}]", run_group_txn,
                                         [call for call, _ in group])

        def deliver(outcomes: list[tuple[bool, Any]]) -> None:
            for (_, waiter), (ok, value) in zip(group, outcomes, strict=True):
                if ok:
                    waiter.callback(value)
                else:
                    waiter.errback(Failure(value))

        def fail_all(failure: Failure) -> None:
            for _, waiter in group:
                waiter.errback(failure)

        d.addCallbacks(deliver, fail_all)
