"""Lifeguard local health."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.awareness import Awareness


class AwarenessTests(SynchronousTestCase):
    def test_score_is_clamped(self) -> None:
        a = Awareness(8)
        self.assertFalse(a.apply_delta(-1))
        self.assertEqual(a.score, 0)
        self.assertTrue(a.apply_delta(3))
        self.assertEqual(a.score, 3)
        a.apply_delta(100)
        self.assertEqual(a.score, 7)  # max - 1
        self.assertFalse(a.apply_delta(1))

    def test_scale_timeout(self) -> None:
        a = Awareness(8)
        self.assertEqual(a.scale_timeout(1.0), 1.0)
        a.apply_delta(2)
        self.assertEqual(a.scale_timeout(1.0), 3.0)
        a.apply_delta(10)
        self.assertEqual(a.scale_timeout(0.5), 4.0)  # at most 8x
        a.apply_delta(-7)
        self.assertEqual(a.scale_timeout(0.5), 0.5)
