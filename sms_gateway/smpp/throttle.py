"""Rate control for a bind: a TPS token bucket, a link-wide adaptive pause, reconnect backoff.

Both are pure: time is passed in as ``now`` (seconds, any monotonic origin).
"""

from __future__ import annotations

import random
from collections.abc import Callable

_EPSILON = 1e-9
MIN_WAIT = 0.001  # never schedule a wake-up closer than this (float time absorbs tiny delays)


class TokenBucket:
    """Allow ``rate`` events per second on average, bursts up to ``burst``.

    ``rate == 0`` means unlimited.
    """

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10.0)
        self._tokens = self.burst
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self, now: float) -> bool:
        """Take one token if one is available now."""
        if self.rate <= 0:
            return True
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def delay(self, now: float) -> float:
        """Seconds until a token will be available (0 if one is available now)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            return 0.0
        return max(MIN_WAIT, (1.0 - self._tokens) / self.rate)


class AdaptivePause:
    """A link-wide pause after ESME_RTHROTTLED / ESME_RMSGQFUL.

    Each throttle answer while not paused doubles the pause (from ``minimum``
    up to ``maximum``); answers during a pause (other requests already in
    flight) do not lengthen it; every success halves it back toward ``minimum``.
    """

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.current = minimum
        self.until = 0.0
        self.count = 0

    def throttled(self, now: float) -> float:
        """Record a throttle answer; returns the time the pause ends."""
        self.count += 1
        if now >= self.until:
            self.until = now + self.current
            self.current = min(self.maximum, self.current * 2)
        return self.until

    def succeeded(self) -> None:
        """Record an accepted request."""
        if self.current > self.minimum:
            self.current = max(self.minimum, self.current / 2)

    def remaining(self, now: float) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self.until - now)


def backoff(minimum: float, maximum: float, rng: random.Random) -> Callable[[int], float]:
    """Exponential backoff with "equal jitter": half fixed, half random.

    Attempt 1 waits between ``minimum/2`` and ``minimum``; each later attempt
    doubles that, up to ``maximum``.
    """
    def policy(attempt: int) -> float:
        delay = min(maximum, minimum * (2.0 ** min(max(attempt - 1, 0), 30)))
        return delay / 2 + rng.uniform(0, delay / 2)
    return policy
