"""The numbers behind the charts: commands by state over time, delivery latency, alerts per day.

Computed from what the admin API lists (recent commands, their histories,
recent alerts); plain Python, no Qt, so it is tested on its own.
:func:`gather` runs on a worker thread and makes the calls.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from console_proxy.client import Client
from console_proxy.client.models import Alert, Command, Page

T = TypeVar("T")

STATES = ("queued", "sending", "sent", "delivered", "done", "refused", "failed", "expired",
          "cancelled")
"""Command states, in the order the stacked bars show them."""

LATENCY_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0-5 s", 5), ("5-30 s", 30), ("30 s-2 m", 120), ("2-10 m", 600), ("10-60 m", 3600),
    ("over 1 h", float("inf")))
"""Delivery latency classes (upper bounds in seconds)."""

_SENT = ("sent",)
_ARRIVED = ("delivered", "done")


@dataclass(frozen=True)
class Stacked:
    """Categories (x axis) and, per series name, one value per category."""

    categories: tuple[str, ...] = ()
    series: dict[str, list[int]] = field(default_factory=dict)

    def total(self) -> int:
        """Sum of every value."""
        return sum(sum(values) for values in self.series.values())


@dataclass(frozen=True)
class ChartData:
    """What the charts show, and how many commands and alerts it was computed from."""

    by_state: Stacked
    latency: Stacked
    alerts: Stacked
    commands_seen: int
    latencies_seen: int
    alerts_seen: int


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _stack(rows: Iterable[tuple[str, str]], order: Sequence[str] = ()) -> Stacked:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for category, name in rows:
        counts[name][category] += 1
    categories = tuple(sorted({c for counter in counts.values() for c in counter}))
    names = [n for n in order if n in counts] + sorted(set(counts) - set(order))
    return Stacked(categories, {n: [counts[n][c] for c in categories] for n in names})


def commands_by_state(commands: Iterable[Command]) -> Stacked:
    """Commands created per day (per hour when they all fall on one day), by state."""
    dated = [(t, c.state) for c in commands if (t := _time(c.created_at)) is not None]
    one_day = len({t.date() for t, _ in dated}) <= 1
    return _stack(((t.strftime("%m-%d %H:00") if one_day else t.strftime("%Y-%m-%d"), state)
                   for t, state in dated), STATES)


def delivery_latency(command: Command) -> float | None:
    """Seconds from the first ``sent`` to the first ``delivered``/``done``, from its history."""
    sent = arrived = None
    for event in command.history:
        at = _time(event.at)
        if at is None:
            continue
        if sent is None and event.to_state in _SENT:
            sent = at
        elif sent is not None and arrived is None and event.to_state in _ARRIVED:
            arrived = at
    if sent is None or arrived is None:
        return None
    return max(0.0, (arrived - sent).total_seconds())


def latency_histogram(latencies: Iterable[float]) -> Stacked:
    """How many deliveries fell in each latency class."""
    counts = [0] * len(LATENCY_BUCKETS)
    for seconds in latencies:
        index = next(i for i, (_, bound) in enumerate(LATENCY_BUCKETS) if seconds < bound)
        counts[index] += 1
    return Stacked(tuple(name for name, _ in LATENCY_BUCKETS), {"commands": counts})


def alerts_per_day(alerts: Iterable[Alert]) -> Stacked:
    """Alerts per day (``MM-DD``), by kind (SIM swap, lost, left the territory ...)."""
    return _stack((t.strftime("%m-%d"), a.kind) for a in alerts
                  if (t := _time(a.at)) is not None)


def _collect(list_page: Callable[..., Page[T]], maximum: int) -> list[T]:
    """Up to ``maximum`` items of a list route, page after page (at most 500 a page)."""
    items: list[T] = []
    after: str | None = None
    while len(items) < maximum:
        page = list_page(limit=min(500, maximum - len(items)), after=after)
        items.extend(page.items)
        if page.next is None:
            break
        after = page.next
    return items


def gather(client: Client, *, max_commands: int = 1000, max_alerts: int = 1000,
           latency_sample: int = 40) -> ChartData:
    """Fetch recent commands, the histories of the newest ended ones, and recent alerts.

    Blocking: run it on a worker thread.
    """
    commands = _collect(client.list_commands, max_commands)
    ended = [c for c in commands if c.state in _ARRIVED][:latency_sample]
    latencies = [s for c in ended
                 if (s := delivery_latency(client.get_command(c.id))) is not None]
    alerts = _collect(client.list_alerts, max_alerts)
    return ChartData(commands_by_state(commands), latency_histogram(latencies),
                     alerts_per_day(alerts), len(commands), len(latencies), len(alerts))
