"""The pool's worker threads go with the reactor, so a Ctrl-C'd program can exit.

Without this, a reactor stopped by SIGINT (``react`` does that) before the
code that calls ``pool.stop()`` has run leaves non-daemon worker threads
behind, and the interpreter waits for them forever at exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from twisted.internet.testing import MemoryReactorClock

from blobstore.pool import DatabasePool


class _ThreadsReactor(MemoryReactorClock):
    """A memory reactor that also records what worker threads hand back."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.from_threads.append((f, args, kwargs))

    def shut_down(self) -> None:
        for phase in ("before", "during", "after"):
            for f, args, kwargs in self.triggers.get(phase, {}).get("shutdown", []):
                f(*args, **kwargs)


def _one_txn(conn: Connection) -> int:
    return int(conn.execute(text("SELECT 1")).scalar_one())


def _workers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if name in t.name]


def test_pool_threads_stop_when_the_reactor_shuts_down(engine: Engine) -> None:
    reactor = _ThreadsReactor()
    pool = DatabasePool(engine, reactor, max_threads=2, name="shutdown-test")
    pool.start()
    done = pool.run_interaction("one", _one_txn)
    assert _workers("shutdown-test")
    reactor.shut_down()  # as on SIGINT: nobody called pool.stop()
    assert not _workers("shutdown-test")
    # The running transaction was finished first, its result handed to the reactor.
    for f, args, kwargs in reactor.from_threads:
        f(*args, **kwargs)
    assert done.result == 1
    late = pool.run_interaction("late", _one_txn)
    with pytest.raises(RuntimeError, match="not running"):
        late.result.raiseException()


def test_pool_stopped_by_its_owner_leaves_no_shutdown_work(engine: Engine) -> None:
    reactor = _ThreadsReactor()
    pool = DatabasePool(engine, reactor, max_threads=1, name="owner-stop-test")
    pool.start()
    pool.stop()
    pool.stop()  # harmless twice
    reactor.shut_down()
    assert not _workers("owner-stop-test")


def test_stop_runs_every_transaction_already_queued_before_the_workers_exit(
        engine: Engine) -> None:
    reactor = _ThreadsReactor()
    pool = DatabasePool(engine, reactor, max_threads=2, name="drain-test")
    pool.start()
    queued = [pool.run_interaction(f"txn {n}", _one_txn) for n in range(20)]
    pool.stop()
    assert not _workers("drain-test")
    for f, args, kwargs in reactor.from_threads:
        f(*args, **kwargs)
    assert [d.result for d in queued] == [1] * 20
