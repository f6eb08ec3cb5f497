"""A loop of rounds on an injected clock: the shape of the dispatcher and the inbound worker.

:class:`Lanes` runs several such loops over the same ``run_once``, so that
one round's database work overlaps another's wait (the SMSC's answers, the
store's commits); each round claims its own rows (``SKIP LOCKED``).

One round runs at a time.  When a round ends the next is scheduled at once
if it was busy (``busy(result)``), after ``linger_s`` if someone called
:meth:`Rounds.wake` meanwhile, otherwise after ``idle_s``.  A wake-up of an
idle loop also runs its round after ``linger_s``: under a steady trickle
(the inbound queue, woken by every stored batch) lingering a few
milliseconds lets one round take what several tiny ones would have, so a
transaction's fixed cost is shared by more items.  A failed round is logged and counts
as idle; the loop goes on.  :meth:`Rounds.stop` fires once the round in
progress has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from blobstore.pool import Clock, DelayedCall

log = Logger()


class Rounds:
    """Runs ``run_once`` again and again until stopped."""

    def __init__(self, clock: Clock, run_once: Callable[[], Deferred[Any]], *,
                 idle_s: float | None, busy: Callable[[Any], bool], name: str,
                 linger_s: float = 0.0, on_busy: Callable[[], object] | None = None) -> None:
        self._clock = clock
        self._run_once = run_once
        self._on_busy = on_busy
        self._idle_s = idle_s
        self._linger_s = linger_s
        self._lingering = False
        self._busy = busy
        self._name = name
        self._timer: DelayedCall | None = None
        self._running: Deferred[Any] | None = None
        self._again = False
        self._stopping = True

    def start(self) -> None:
        """Run the first round now."""
        self._stopping = False
        self._schedule(0)

    @property
    def free(self) -> bool:
        """True when no round runs and none is due soon (a poll far off does not count)."""
        if self._stopping or self._running is not None:
            return False
        return not (self._lingering and self._timer is not None and self._timer.active())

    @property
    def running(self) -> bool:
        """True while a round is in progress."""
        return self._running is not None

    @property
    def stopped(self) -> bool:
        """True before :meth:`start` and from :meth:`stop` on."""
        return self._stopping

    def wake(self) -> None:
        """Run a round once the current one (if any) has finished, after ``linger_s``."""
        if self._stopping:
            return
        if self._running is not None:
            self._again = True
            return
        if self._lingering and self._timer is not None and self._timer.active():
            return  # already due soon: a later wake-up does not postpone it
        self._schedule(self._linger_s)

    def _schedule(self, delay: float, lingering: bool = True) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._lingering = lingering
        self._timer = self._clock.callLater(delay, self._tick)

    def stop(self) -> Deferred[None]:
        """No more rounds; fires once the round in progress (if any) has finished."""
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._running is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._running.addBoth(lambda _: waiter.callback(None))
        return waiter

    def _tick(self) -> None:
        self._timer = None
        self._again = False
        self._running = self._run_once()

        def next_round(result: Any) -> None:
            self._running = None
            busy = False
            if isinstance(result, Failure):
                log.failure("{name} round failed", result, name=self._name)
            else:
                busy = self._busy(result)
            if self._stopping:
                return
            if busy:
                self._schedule(0)
                if self._on_busy is not None:  # more work than one round: share it
                    self._on_busy()
            elif self._again:
                self._schedule(self._linger_s)
            elif self._idle_s is not None:  # None: idle until woken
                self._schedule(self._idle_s, lingering=False)

        self._running.addBoth(next_round)


class Lanes:
    """``count`` :class:`Rounds` over one ``run_once``, started, woken and stopped together.

    Only the first lane polls when idle; the others run while there is work
    (busy rounds) or when woken, so an idle process costs one poll per
    ``idle_s`` whatever the count.  A wake-up goes to one lane (a free one,
    else one whose round is running, which then goes again): waking them all
    made every lane but one claim nothing under a steady trickle, a
    transaction each.  A busy round, which found more than it could take,
    wakes another free lane, so a backlog still gets every lane.
    """

    def __init__(self, clock: Clock, run_once: Callable[[], Deferred[Any]], *, count: int,
                 idle_s: float, busy: Callable[[Any], bool], name: str,
                 linger_s: float = 0.0) -> None:
        self._lanes = [Rounds(clock, run_once, idle_s=idle_s if i == 0 else None, busy=busy,
                              name=f"{name}[{i}]", linger_s=linger_s, on_busy=self._wake_free)
                       for i in range(max(count, 1))]

    def start(self) -> None:
        """Start every lane (their first rounds run now)."""
        for lane in self._lanes:
            lane.start()

    def wake(self) -> None:
        """Run one more round: in a free lane, else after a running one."""
        if self._wake_free():
            return
        for lane in self._lanes:
            if lane.running:
                lane.wake()
                return

    def _wake_free(self) -> bool:
        for lane in self._lanes:
            if lane.free:
                lane.wake()
                return True
        return False

    @property
    def stopped(self) -> bool:
        """True before :meth:`start` and from :meth:`stop` on."""
        return self._lanes[0].stopped

    def stop(self) -> Deferred[None]:
        """Stop every lane; fires once the rounds in progress have finished."""
        d = DeferredList([lane.stop() for lane in self._lanes], consumeErrors=True)
        return d.addCallback(lambda _: None)
