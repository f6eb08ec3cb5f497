"""The anti-replay window: a high-water mark plus a bitmap of counters seen below it.

A counter is fresh when it is above the high-water mark, or less than
``size`` below it and not yet seen.  Used by the handset per server key and by
the server per device for alerts.  ``check`` never changes state; ``mark``
records a counter once the caller has decided to accept it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signing.errors import FrameRejected, Reason

DEFAULT_WINDOW = 64


@dataclass
class CounterWindow:
    """High-water mark ``high`` and bitmap ``seen`` (bit ``i``: counter ``high - i`` seen)."""

    size: int = DEFAULT_WINDOW
    high: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.size <= 4096:
            raise ValueError("window size must be in 1..4096")

    def check(self, counter: int) -> None:
        """Raise ``REPLAYED`` or ``COUNTER_TOO_OLD`` unless ``counter`` is fresh."""
        if counter > self.high:
            return
        distance = self.high - counter
        if counter < 1 or distance >= self.size:
            raise FrameRejected(Reason.COUNTER_TOO_OLD, f"counter {counter}, high {self.high}")
        if self.seen >> distance & 1:
            raise FrameRejected(Reason.REPLAYED, f"counter {counter}")

    def is_fresh(self, counter: int) -> bool:
        """Whether :meth:`check` would accept ``counter``."""
        try:
            self.check(counter)
        except FrameRejected:
            return False
        return True

    def mark(self, counter: int) -> None:
        """Record ``counter`` as seen (after :meth:`check` accepted it)."""
        mask = (1 << self.size) - 1
        if counter > self.high:
            shift = counter - self.high
            self.seen = ((self.seen << shift) | 1) & mask if shift < self.size else 1
            self.high = counter
        else:
            self.seen |= 1 << (self.high - counter)

    def accept(self, counter: int) -> None:
        """:meth:`check` then :meth:`mark`."""
        self.check(counter)
        self.mark(counter)

    def seen_counters(self) -> list[int]:
        """The counters marked seen, highest first."""
        return [self.high - i for i in range(self.size) if self.seen >> i & 1]

    def to_json(self) -> dict[str, Any]:
        """JSON form (``size``, ``high``, ``seen`` as the list of counters)."""
        return {"size": self.size, "high": self.high, "seen": self.seen_counters()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CounterWindow:
        """Inverse of :meth:`to_json`."""
        window = cls(int(data.get("size", DEFAULT_WINDOW)), int(data.get("high", 0)), 0)
        for counter in data.get("seen", []):
            distance = window.high - int(counter)
            if not 0 <= distance < window.size:
                raise ValueError("seen counter outside the window")
            window.seen |= 1 << distance
        return window
