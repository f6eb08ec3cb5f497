"""Failure injection at transaction boundaries: a runner that fails its Nth interaction.

``before``: the Nth transaction never runs (as if the database refused it).
``after``: it runs and commits, then the caller is told it failed (as if the
connection dropped on the way back) — the nastiest case for exactly-once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail

from blobstore.errors import StoreUnavailableError
from blobstore.pool import SyncPool


class InjectedFault(StoreUnavailableError):  # noqa: N818 - named for what the test sees
    """The failure the runner injects: the store unavailable, as the pool reports it."""

    def __init__(self, what: str) -> None:
        super().__init__(what, 1, RuntimeError("injected"))


class FaultyRunner:
    """A SyncPool whose ``fail_at``-th interaction (1-based, counted across callers) fails."""

    def __init__(self, pool: SyncPool, *, fail_at: int | None = None,
                 mode: str = "before") -> None:
        self.pool = pool
        self.fail_at = fail_at
        self.mode = mode
        self.calls: list[str] = []
        self.injected: list[str] = []

    def run_interaction(self, desc: str, fn_txn: Callable[..., Any], *args: Any,
                        **kwargs: Any) -> Deferred[Any]:
        self.calls.append(desc)
        if len(self.calls) != self.fail_at:
            return self.pool.run_interaction(desc, fn_txn, *args, **kwargs)
        self.injected.append(f"{self.mode}:{desc}")
        if self.mode == "before":
            return fail(InjectedFault(f"injected before {desc}"))
        done = self.pool.run_interaction(desc, fn_txn, *args, **kwargs)
        outcome: list[Any] = []
        done.addBoth(outcome.append)
        return fail(InjectedFault(f"injected after {desc} committed"))
