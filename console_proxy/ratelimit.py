"""Per-admin rate limits: a token bucket per certificate fingerprint.

Each bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; a
request takes one.  Time comes from an injected clock (``IReactorTime``), so
tests drive it with :class:`twisted.internet.task.Clock`.  Buckets that are
full again are dropped when the table grows, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

_PRUNE_AT = 10_000


class RateLimiter:
    """Token buckets keyed by admin fingerprint."""

    def __init__(self, rate_per_s: float, burst: int, seconds: Callable[[], float]) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._seconds = seconds
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Take a token for ``key``; False when its bucket is empty."""
        now = self._seconds()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` has a token again."""
        tokens, _ = self._buckets.get(key, (self.burst, 0.0))
        return max(0.0, (1.0 - tokens) / self.rate)

    def _prune(self, now: float) -> None:
        full = [k for k, (t, last) in self._buckets.items()
                if t + (now - last) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
