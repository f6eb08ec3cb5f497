"""Running blocking database work off the reactor: one entry point, whole transactions.

``run_interaction(desc, fn_txn, *args, **kwargs)`` runs ``fn_txn(conn, *args,
**kwargs)`` inside one transaction on a worker thread and returns a Deferred
that fires with its result after the commit (or fails after the rollback).
``fn_txn`` must return plain data (dataclasses, tuples, ints...), never a
live ``Result``: the connection is gone by the time the reactor sees it.

Transient failures (serialization failure, deadlock, lost or refused
connection) are retried a bounded number of times with a short backoff; when
they persist the Deferred fails with
:class:`~blobstore.errors.StoreUnavailableError`, which callers turn into
"try again later" (HTTP 503, a temporary SMPP error).  A transaction whose
COMMIT was lost with the connection may have committed: functions that must
not run twice should be idempotent (for example
:func:`~blobstore.messages.insert_unique_message_txn`).

:class:`SyncPool` has the same interface but runs inline on the calling
thread and returns an already-fired Deferred, for unit tests.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Result
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

from blobstore.config import DatabaseConfig
from blobstore.errors import StoreUnavailableError

P = ParamSpec("P")
T = TypeVar("T")

log = Logger()

_RETRYABLE_CODES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


class DelayedCall(Protocol):
    """What ``callLater`` returns (``twisted.internet.base.DelayedCall``)."""

    def active(self) -> bool:
        """True until the call ran or was cancelled."""
        ...

    def cancel(self) -> None:
        """Cancel the call."""
        ...


class Clock(Protocol):
    """The part of ``IReactorTime`` used here (the reactor, or ``task.Clock`` in tests)."""

    def seconds(self) -> float:
        """The current time."""
        ...

    def callLater(self, delay: float, callable: Callable[..., object],  # noqa: N802
                  *args: object, **kw: object) -> DelayedCall:
        """Call ``callable`` after ``delay`` seconds."""
        ...


class InteractionRunner(Protocol):
    """Anything with ``run_interaction`` (:class:`DatabasePool`, :class:`SyncPool`)."""

    def run_interaction(self, desc: str, fn_txn: Callable[Concatenate[Connection, P], T],
                        /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Run ``fn_txn(conn, *args, **kwargs)`` in one transaction."""
        ...


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure: conflicts, deadlocks, lost connections."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "pgcode", None)
    if code in _RETRYABLE_CODES:
        return True
    return isinstance(exc, OperationalError | InterfaceError) and code is None


def run_transaction(engine: Engine, desc: str, fn_txn: Callable[..., T],
                    args: tuple[Any, ...], kwargs: dict[str, Any], *, attempts: int,
                    backoff_s: float, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``fn_txn`` in a transaction, retrying transient failures (blocking)."""
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as conn:
                result = fn_txn(conn, *args, **kwargs)
            if isinstance(result, Result):
                raise TypeError(f"{desc}: a *_txn function must return plain data, not a Result")
            return result
        except PoolTimeoutError as exc:
            # Every connection is busy: say "try later" rather than queue without bound.
            raise StoreUnavailableError(desc, attempt, exc) from exc
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise StoreUnavailableError(desc, attempt, exc.orig or exc) from exc
            delay = backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
            log.warn("{desc}: transient database failure, retry {attempt} in {delay:.3f}s: "
                     "{error}", desc=desc, attempt=attempt, delay=delay,
                     error=str(exc.orig or exc).strip())
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


_Job = tuple[Deferred[Any], str, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DatabasePool:
    """Runs ``*_txn`` functions on ``max_threads`` worker threads with the injected reactor.

    ``max_threads`` should not exceed the engine's pool size plus overflow, so
    a worker never waits for a connection.  Call :meth:`start` before use
    and :meth:`stop` at shutdown (it waits for the transactions already queued).

    The workers are plain threads taking jobs from one ``queue.SimpleQueue``
    and handing results back with ``callFromThread``: a transaction costs
    one queue put and one reactor wake-up, without the general thread pool's
    per-call context and worker bookkeeping (measured as a few percent of the
    process's busy time under load).
    """

    def __init__(self, engine: Engine, reactor: IReactorFromThreads, *, max_threads: int = 4,
                 retry_attempts: int = 3, retry_backoff_s: float = 0.05,
                 name: str = "blobstore") -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.engine = engine
        self._reactor = reactor
        self._attempts = retry_attempts
        self._backoff_s = retry_backoff_s
        self._max_threads = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._running = False
        self._shutdown_trigger: Any = None

    @classmethod
    def from_config(cls, engine: Engine, reactor: IReactorFromThreads,
                    config: DatabaseConfig) -> DatabasePool:
        """A pool sized and retrying as ``config`` says."""
        return cls(engine, reactor, max_threads=config.pool_size,
                   retry_attempts=config.retry_attempts,
                   retry_backoff_s=config.retry_backoff_ms / 1000)

    def start(self) -> None:
        """Start the worker threads; they are stopped at reactor shutdown at the latest."""
        if not self._running:
            self._threads = [threading.Thread(target=self._work, name=f"{self._name}-{i}")
                             for i in range(self._max_threads)]
            for thread in self._threads:
                thread.start()
            self._running = True
            if IReactorCore.providedBy(self._reactor):
                # A reactor stopped by Ctrl-C before the owner's stop() ran would
                # otherwise leave worker threads the interpreter waits for at exit.
                self._shutdown_trigger = cast(Any, self._reactor).addSystemEventTrigger(
                    "during", "shutdown", self.stop)

    def stop(self) -> None:
        """Stop the worker threads after the transactions already queued."""
        if self._running:
            self._running = False
            for _ in self._threads:
                self._jobs.put(None)  # after every job already queued
            for thread in self._threads:
                thread.join()
            self._threads = []
            trigger, self._shutdown_trigger = self._shutdown_trigger, None
            if trigger is not None:
                with contextlib.suppress(ValueError, KeyError):  # already firing
                    cast(Any, self._reactor).removeSystemEventTrigger(trigger)

    def run_interaction(self, desc: str, fn_txn: Callable[Concatenate[Connection, P], T],
                        /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Run ``fn_txn(conn, *args, **kwargs)`` in one transaction on a worker thread."""
        if not self._running:
            return fail(RuntimeError(f"{desc}: the database pool is not running"))
        d: Deferred[T] = Deferred()
        self._jobs.put((d, desc, fn_txn, args, kwargs))
        return d

    def _work(self) -> None:
        """A worker thread: run jobs until told to stop (``None``)."""
        while (job := self._jobs.get()) is not None:
            d, desc, fn_txn, args, kwargs = job
            try:
                result = run_transaction(self.engine, desc, fn_txn, args, kwargs,
                                         attempts=self._attempts, backoff_s=self._backoff_s)
            except BaseException:
                self._reactor.callFromThread(d.errback, Failure())
            else:
                self._reactor.callFromThread(d.callback, result)


class SyncPool:
    """The threadless variant: runs each transaction inline; the Deferred has already fired.

    For unit tests and command-line tools.  Retries happen without sleeping.
    """

    def __init__(self, engine: Engine, *, retry_attempts: int = 3) -> None:
        self.engine = engine
        self._attempts = retry_attempts

    def start(self) -> None:
        """Nothing to start (present for interface parity)."""

    def stop(self) -> None:
        """Nothing to stop (present for interface parity)."""

    def run_interaction(self, desc: str, fn_txn: Callable[Concatenate[Connection, P], T],
                        /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Run ``fn_txn(conn, *args, **kwargs)`` now, in one transaction."""
        try:
            result = run_transaction(self.engine, desc, fn_txn, args, dict(kwargs),
                                     attempts=self._attempts, backoff_s=0.0,
                                     sleep=lambda _: None)
        except Exception as exc:
            return fail(exc)
        return succeed(result)
