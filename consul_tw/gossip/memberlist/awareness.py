# -*- test-case-name: tests.unit.gossip.test_awareness -*-
"""
Lifeguard's local health ("awareness"): a score from 0 to max-1.

Failed probes without the expected nacks, and every refutation, raise the
score; successful probes lower it.  The probe interval (and so the time a
probe waits for indirect acks) is multiplied by score + 1, so a node that
is itself slow or overloaded probes less eagerly and is less quick to
accuse others.
"""

from __future__ import annotations

import attrs


@attrs.define
class Awareness:
    max_multiplier: int = 8
    score: int = 0

    def apply_delta(self, delta: int) -> bool:
        """Add ``delta`` and clamp to [0, max-1]; True when the score changed."""
        before = self.score
        self.score = max(0, min(self.max_multiplier - 1, self.score + delta))
        return self.score != before

    def scale_timeout(self, timeout: float) -> float:
        return timeout * (self.score + 1)
