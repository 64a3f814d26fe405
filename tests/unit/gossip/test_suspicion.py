"""Lifeguard suspicion timers on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.suspicion import (
    Suspicion,
    lifeguard_suspicion,
    remaining_suspicion_time,
    suspicion_timeout,
)


class TimeoutTests(SynchronousTestCase):
    def test_min_timeout_scales_with_log10_n(self) -> None:
        self.assertEqual(suspicion_timeout(4, 1, 1.0), 4.0)
        self.assertEqual(suspicion_timeout(4, 10, 1.0), 4.0)  # 4 s for N <= 10
        self.assertEqual(suspicion_timeout(4, 100, 1.0), 8.0)
        self.assertEqual(suspicion_timeout(4, 1000, 1.0), 12.0)
        self.assertAlmostEqual(suspicion_timeout(3, 50, 0.1), 0.3 * 1.698)
        self.assertEqual(suspicion_timeout(6, 3, 5.0), 30.0)  # WAN

    def test_remaining_time(self) -> None:
        # memberlist's table: k=3, min 2 s, max 30 s.
        cases = [
            (0, 0.0, 30.0),
            (1, 2.0, 14.0),
            (2, 3.0, 4.810),
            (3, 4.0, -2.0),
            (4, 5.0, -3.0),
            (5, 10.0, -8.0),
        ]
        for n, elapsed, expected in cases:
            self.assertAlmostEqual(
                remaining_suspicion_time(n, 3, elapsed, 2.0, 30.0), expected, places=3
            )


class SuspicionTests(SynchronousTestCase):
    def make(self, k: int, clock: Clock, fired: list[int]) -> Suspicion:
        return Suspicion(clock, "a", k, 2.0, 30.0, fired.append)

    def test_starts_at_max_when_confirmations_expected(self) -> None:
        clock, fired = Clock(), list[int]()
        s = self.make(3, clock, fired)
        self.assertEqual(s.deadline(), 30.0)
        clock.advance(29.9)
        self.assertEqual(fired, [])
        clock.advance(0.1)
        self.assertEqual(fired, [0])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(s.active)

    def test_starts_at_min_when_none_expected(self) -> None:
        clock, fired = Clock(), list[int]()
        s = self.make(0, clock, fired)
        self.assertEqual(s.deadline(), 2.0)
        self.assertFalse(s.confirm("b"))  # nothing to count towards
        clock.advance(2.0)
        self.assertEqual(fired, [0])

    def test_confirmations_shrink_on_a_log_scale(self) -> None:
        clock, fired = Clock(), list[int]()
        s = self.make(3, clock, fired)
        clock.advance(2.0)
        self.assertTrue(s.confirm("b"))
        self.assertAlmostEqual(s.deadline() or 0, 16.0)  # 14 s left after 2 s
        self.assertFalse(s.confirm("b"))  # the same peer twice
        self.assertFalse(s.confirm("a"))  # the original accuser
        clock.advance(1.0)
        self.assertTrue(s.confirm("c"))
        self.assertAlmostEqual(s.deadline() or 0, 7.810)
        clock.advance(1.0)
        self.assertTrue(s.confirm("d"))  # k reached: the timeout is min, already past
        self.assertEqual(fired, [])  # never fires inside confirm()
        self.assertFalse(s.confirm("e"))  # beyond k
        clock.advance(0)
        self.assertEqual(fired, [3])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        clock, fired = Clock(), list[int]()
        s = self.make(3, clock, fired)
        s.cancel()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIsNone(s.deadline())
        self.assertFalse(s.confirm("b") and s.active)
        clock.advance(100)
        self.assertEqual(fired, [])


class SizingTests(SynchronousTestCase):
    def test_lifeguard_sizing(self) -> None:
        clock = Clock()
        big = lifeguard_suspicion(clock, "a", 100, 4, 6, 1.0, print)
        self.assertEqual(
            (big.k, big.min_timeout, big.max_timeout, big.deadline()), (2, 8.0, 48.0, 48.0)
        )
        small = lifeguard_suspicion(clock, "a", 3, 4, 6, 1.0, print)  # N - 2 < k: start at min
        self.assertEqual((small.k, small.min_timeout, small.deadline()), (0, 4.0, 4.0))
        edge = lifeguard_suspicion(clock, "a", 4, 4, 6, 1.0, print)  # N - 2 = k
        self.assertEqual((edge.k, edge.deadline()), (2, 24.0))
        for s in (big, small, edge):
            s.cancel()
        self.assertEqual(clock.getDelayedCalls(), [])
