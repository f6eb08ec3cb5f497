"""Structural types for the injected clock (``task.Clock`` or a reactor)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class DelayedCall(Protocol):
    """What ``callLater`` returns."""

    def active(self) -> bool:
        """True until it runs or is cancelled."""

    def cancel(self) -> None:
        """Do not run it."""


class Clock(Protocol):
    """``IReactorTime`` as a structural type (mypy cannot check zope interfaces)."""

    def seconds(self) -> float:
        """The current time."""

    def callLater(  # noqa: N802 - Twisted API
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall:
        """Run ``callable`` after ``delay`` seconds."""
