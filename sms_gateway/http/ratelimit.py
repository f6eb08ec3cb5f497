"""A limiter of failed callback authentications, per source address and per gateway.

Sliding windows over an injected clock (the caller passes ``now``):

- **per source**: ``per_source`` failed authentications from one source to
  one gateway within ``window_seconds`` lock that source out of that gateway
  for ``lockout_seconds``;
- **per gateway**: ``per_gateway`` failures to one gateway within the window,
  from any sources (a guessing attack spread over many addresses), put the
  gateway on alert for ``lockout_seconds``: while it lasts, every source with
  a failure still in its window is refused; a source without one is checked
  as usual, so the real gateway keeps working.

A refused request is not checked at all (a locked-out attacker learns
nothing and costs no comparison) and does not extend the lockout.  A success
forgets the source's earlier failures.  IPv6 sources count per /64 (one host
usually holds a whole /64); an IPv4-mapped IPv6 address counts as its IPv4
address.  At most ``max_sources`` sources are tracked: when the table is full,
entries with nothing left in them go first, then the oldest.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

LimitEvent = Literal["source", "gateway"]
DEFAULT_MAX_SOURCES = 10_000


def source_key(source: str) -> str:
    """The address a failure is counted under: IPv4 as is, IPv6 as its /64."""
    if ":" not in source:
        return source
    try:
        address = ipaddress.IPv6Address(source.split("%", 1)[0])
    except ValueError:
        return source
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


@dataclass
class _Window:
    """Recent failure times (oldest first) and when a lockout or alert ends."""

    failures: deque[float] = field(default_factory=deque)
    until: float = 0.0

    def prune(self, now: float, window: float) -> None:
        while self.failures and self.failures[0] <= now - window:
            self.failures.popleft()


class AuthFailureLimiter:
    """Counts failed authentications and says when a source must wait (see module doc)."""

    def __init__(self, *, per_source: int, per_gateway: int, window_seconds: float,
                 lockout_seconds: float, max_sources: int = DEFAULT_MAX_SOURCES) -> None:
        if per_source < 1 or per_gateway < 1 or max_sources < 1:
            raise ValueError("per_source, per_gateway and max_sources must be at least 1")
        if window_seconds <= 0 or lockout_seconds <= 0:
            raise ValueError("window_seconds and lockout_seconds must be positive")
        self._per_source = per_source
        self._per_gateway = per_gateway
        self._window = window_seconds
        self._lockout = lockout_seconds
        self._max_sources = max_sources
        self._sources: dict[tuple[str, str], _Window] = {}
        self._gateways: dict[str, _Window] = {}

    @property
    def tracked_sources(self) -> int:
        """How many (gateway, source) entries are held."""
        return len(self._sources)

    def retry_after(self, gateway: str, source: str, now: float) -> float | None:
        """Seconds ``source`` must wait before ``gateway`` checks it again; None: check now."""
        if not self._sources:
            return None
        key = (gateway, source_key(source))
        entry = self._sources.get(key)
        if entry is None:
            return None
        if entry.until > now:
            return entry.until - now
        entry.prune(now, self._window)
        if not entry.failures:
            del self._sources[key]
            return None
        alert = self._gateways.get(gateway)
        if alert is not None and alert.until > now:
            # Refused until the alert ends or its newest failure leaves the window.
            return min(alert.until, entry.failures[-1] + self._window) - now
        return None

    def record_failure(self, gateway: str, source: str, now: float) -> LimitEvent | None:
        """Count one failed authentication; says when it starts a lockout or an alert."""
        event: LimitEvent | None = None
        key = (gateway, source_key(source))
        entry = self._sources.get(key)
        if entry is None:
            self._make_room(now)
            entry = self._sources[key] = _Window()
        entry.prune(now, self._window)
        entry.failures.append(now)
        if len(entry.failures) >= self._per_source:
            entry.until = now + self._lockout
            entry.failures.clear()
            event = "source"
        alert = self._gateways.setdefault(gateway, _Window())
        alert.prune(now, self._window)
        alert.failures.append(now)
        if len(alert.failures) >= self._per_gateway:
            alert.until = now + self._lockout
            alert.failures.clear()
            event = event or "gateway"
        return event

    def record_success(self, gateway: str, source: str) -> None:
        """Forget the earlier failures of a source that has just authenticated."""
        if self._sources:
            self._sources.pop((gateway, source_key(source)), None)

    def _make_room(self, now: float) -> None:
        if len(self._sources) < self._max_sources:
            return
        for key, entry in list(self._sources.items()):
            entry.prune(now, self._window)
            if entry.until <= now and not entry.failures:
                del self._sources[key]
        while len(self._sources) >= self._max_sources:
            del self._sources[next(iter(self._sources))]
