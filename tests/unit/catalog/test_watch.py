"""WatchSet: wake on change, time out on the clock, cancel cleanly."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.catalog.watch import WatchSet


class WatchSetTests(SynchronousTestCase):
    def test_change_wakes_every_waiter_once(self) -> None:
        clock = Clock()
        watches = WatchSet(clock)
        first, second = watches.wait(10), watches.wait(10)
        watches.notify()
        watches.notify()
        self.assertEqual(len(clock.getDelayedCalls()), 3, "two timeouts and one wake-up")
        clock.advance(0)
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (True, True))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        clock = Clock()
        waiting = WatchSet(clock).wait(5)
        clock.advance(5)
        self.assertFalse(self.successResultOf(waiting))

    def test_cancel_leaves_nothing_behind(self) -> None:
        clock = Clock()
        waiting = WatchSet(clock).wait(5)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(clock.getDelayedCalls(), [])
