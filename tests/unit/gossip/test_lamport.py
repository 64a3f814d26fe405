"""Serf's Lamport clock: starts at 1, increments, witnesses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.serf.lamport import LamportClock


class LamportClockTests(SynchronousTestCase):
    def test_starts_at_one_and_increments(self) -> None:
        clock = LamportClock()
        self.assertEqual(clock.time(), 1)
        self.assertEqual(clock.increment(), 2)
        self.assertEqual(clock.time(), 2)

    def test_witness_moves_past_newer_times_only(self) -> None:
        clock = LamportClock()
        clock.witness(41)
        self.assertEqual(clock.time(), 42)
        clock.witness(42)  # equal to ours: we must end strictly after it
        self.assertEqual(clock.time(), 43)
        clock.witness(10)  # older: nothing changes
        self.assertEqual(clock.time(), 43)

    @given(st.lists(st.one_of(st.none(), st.integers(0, 2**40)), max_size=50))
    def test_monotonic_and_after_every_witnessed_time(self, steps: list[int | None]) -> None:
        clock = LamportClock()
        seen = 0
        for step in steps:
            before = clock.time()
            if step is None:
                clock.increment()
            else:
                clock.witness(step)
                seen = max(seen, step)
            self.assertGreaterEqual(clock.time(), before)
            self.assertGreater(clock.time(), seen)
