"""Who is acting, and how a front end runs a use case's transaction.

Use cases (the other modules of :mod:`mepl.app`) are whole transactions,
``something_txn(conn, actor, ...)``, that check their input, change the
store and write their audit row in that same transaction.  A front end runs
them through whatever runner it has: the CLI through :class:`SyncTransactions`
(blocking, retried like the pool's), the admin API through
``DatabasePool.run_interaction`` (off the reactor).  Neither opens
transactions of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine

from blobstore.pool import run_transaction

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Actor:
    """Who asks: ``name`` as it goes in the audit trail and command history, and ``role``."""

    name: str
    role: str

    @property
    def label(self) -> str:
        """``role:name``, as it goes in ``requested_by`` and the command history."""
        return f"{self.role}:{self.name}"


class SyncTransactions:
    """Runs use-case transactions inline (for the CLI), retrying transient failures."""

    def __init__(self, engine: Engine, *, attempts: int = 3, backoff_s: float = 0.2) -> None:
        self.engine = engine
        self._attempts = attempts
        self._backoff_s = backoff_s

    def run(self, desc: str, fn_txn: Callable[Concatenate[Connection, P], T],
            /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn_txn(conn, *args, **kwargs)`` in one transaction; return its result."""
        return run_transaction(self.engine, desc, fn_txn, args, dict(kwargs),
                               attempts=self._attempts, backoff_s=self._backoff_s)


def audit_details(**values: Any) -> dict[str, Any]:
    """Audit details without the values that are None (keeps rows short and comparable)."""
    return {k: v for k, v in values.items() if v is not None}
