"""The round loop shared by the dispatcher and the inbound worker, on a fake clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mepl.runtime.rounds import Lanes, Rounds


class RoundsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.results: list[Any] = []
        self.calls = 0
        self.pending: Deferred[Any] | None = None

    def run_once(self) -> Deferred[Any]:
        self.calls += 1
        if self.pending is not None:
            return self.pending
        outcome = self.results.pop(0) if self.results else 0
        return fail(outcome) if isinstance(outcome, Exception) else succeed(outcome)

    def rounds(self) -> Rounds:
        return Rounds(self.clock, self.run_once, idle_s=5, busy=lambda n: n >= 10, name="t")

    def test_a_busy_round_is_followed_at_once_and_an_idle_one_after_the_idle_delay(
            self) -> None:
        self.results = [10, 3]
        loop = self.rounds()
        loop.start()
        self.clock.advance(0)
        self.assertEqual(self.calls, 2)  # the first was busy: the second ran at once
        self.clock.advance(4.9)
        self.assertEqual(self.calls, 2)
        self.clock.advance(0.1)
        self.assertEqual(self.calls, 3)
        self.successResultOf(loop.stop())

    def test_a_wake_during_a_round_runs_another_as_soon_as_it_ends(self) -> None:
        loop = self.rounds()
        self.pending = Deferred()
        loop.start()
        self.clock.advance(0)
        loop.wake()
        running, self.pending = self.pending, None
        running.callback(0)
        self.clock.advance(0)
        self.assertEqual(self.calls, 2)
        self.successResultOf(loop.stop())

    def lingering(self) -> Rounds:
        return Rounds(self.clock, self.run_once, idle_s=5, busy=lambda n: n >= 10, name="t",
                      linger_s=0.005)

    def test_a_woken_idle_loop_lingers_and_later_wake_ups_do_not_postpone_it(self) -> None:
        loop = self.lingering()
        loop.start()
        self.clock.advance(0)
        self.assertEqual(self.calls, 1)  # the first round does not linger
        loop.wake()
        self.clock.advance(0.004)
        loop.wake()  # more stored meanwhile: the same round takes it
        self.assertEqual(self.calls, 1)
        self.clock.advance(0.001)
        self.assertEqual(self.calls, 2)
        self.clock.advance(0.005)
        self.assertEqual(self.calls, 2)  # idle again: next poll after idle_s
        self.successResultOf(loop.stop())

    def test_a_wake_during_a_round_lingers_but_a_busy_round_is_followed_at_once(
            self) -> None:
        loop = self.lingering()
        self.pending = Deferred()
        loop.start()
        self.clock.advance(0)
        loop.wake()
        running, self.pending = self.pending, None
        running.callback(3)  # not busy, but woken meanwhile
        self.clock.advance(0.004)
        self.assertEqual(self.calls, 1)
        self.results = [10, 0]
        self.clock.advance(0.001)
        self.assertEqual(self.calls, 3)  # that round was busy: the next ran at once
        self.successResultOf(loop.stop())

    def test_a_failed_round_is_logged_and_the_loop_goes_on(self) -> None:
        self.results = [RuntimeError("boom"), 0]
        loop = self.rounds()
        loop.start()
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(5)
        self.assertEqual(self.calls, 2)
        self.successResultOf(loop.stop())

    def test_stop_waits_for_the_round_in_progress_and_nothing_runs_after(self) -> None:
        loop = self.rounds()
        self.pending = Deferred()
        loop.start()
        self.clock.advance(0)
        stopped = loop.stop()
        self.assertNoResult(stopped)
        self.pending.callback(0)
        self.successResultOf(stopped)
        self.clock.advance(60)
        self.assertEqual(self.calls, 1)


class LanesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.waiting: list[Deferred[Any]] = []

    def run_once(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        return d

    def finish_all(self, claimed: int) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(claimed)
        self.clock.advance(0)

    def test_lanes_overlap_while_busy_and_only_one_polls_when_idle(self) -> None:
        lanes = Lanes(self.clock, self.run_once, count=3, idle_s=5, busy=lambda n: n >= 10,
                      name="t")
        lanes.start()
        self.clock.advance(0)
        self.assertEqual(len(self.waiting), 3)  # three rounds in flight at once
        self.finish_all(10)                      # busy: each lane goes again at once
        self.assertEqual(len(self.waiting), 3)
        self.finish_all(0)                       # idle: nothing until the poll
        self.assertEqual(len(self.waiting), 0)
        self.clock.advance(5)
        self.assertEqual(len(self.waiting), 1)  # the first lane polls, alone
        self.finish_all(0)
        lanes.wake()                             # work queued: one lane runs
        self.clock.advance(0)
        self.assertEqual(len(self.waiting), 1)
        self.finish_all(10)                      # it found a backlog: a second lane joins
        self.assertEqual(len(self.waiting), 2)
        self.finish_all(10)                      # and the third
        self.assertEqual(len(self.waiting), 3)
        stopped: list[Any] = []
        lanes.stop().addBoth(stopped.append)
        self.assertEqual(stopped, [])            # rounds in progress finish first
        self.finish_all(0)
        self.assertEqual(stopped, [None])

    def test_each_wake_up_runs_one_round_not_one_per_lane(self) -> None:
        lanes = Lanes(self.clock, self.run_once, count=2, idle_s=60, busy=lambda n: n >= 10,
                      name="t", linger_s=0.005)
        lanes.start()
        self.clock.advance(0)
        self.finish_all(0)
        lanes.wake()                             # one stored batch: one round claims it
        self.clock.advance(0.005)
        self.assertEqual(len(self.waiting), 1)
        lanes.wake()                             # another, while the first runs: the free lane
        self.clock.advance(0.005)
        self.assertEqual(len(self.waiting), 2)
        lanes.wake()                             # both busy: one of them goes again, once
        lanes.wake()
        self.finish_all(3)
        self.clock.advance(0.005)
        self.assertEqual(len(self.waiting), 1)
        self.finish_all(0)
        self.clock.advance(1)
        self.assertEqual(len(self.waiting), 0)
