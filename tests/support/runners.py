"""Test doubles for :class:`~blobstore.pool.InteractionRunner`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred


class HeldRunner:
    """A runner whose transactions complete only when the test says so.

    ``calls`` holds, per transaction, its description, its first argument
    (the batch) and the Deferred the test fires in place of the commit.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Deferred[Any]]] = []

    def run_interaction(self, desc: str, fn: Callable[..., Any], *args: Any,
                        **kwargs: Any) -> Deferred[Any]:
        """Record the transaction; the returned Deferred fires when the test fires it."""
        d: Deferred[Any] = Deferred()
        self.calls.append((desc, args[0], d))
        return d
