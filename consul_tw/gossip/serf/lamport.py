# -*- test-case-name: tests.unit.gossip.test_lamport -*-
"""
Serf's Lamport clocks.

Serf keeps three: one for member intents (join/leave), one for user
events and one for queries.  Each starts at 1 (Serf increments a fresh
clock once, so that a member's default status time of 0 is always older
than any real intent).  A message is stamped with ``time()`` and the
clock then ``increment()``s; a received stamp ``v`` is ``witness``ed,
which moves the clock to ``v + 1`` when ``v`` is not already behind it.
"""

from __future__ import annotations

import attrs


@attrs.define
class LamportClock:
    counter: int = 1

    def time(self) -> int:
        """The current value (what the next message is stamped with)."""
        return self.counter

    def increment(self) -> int:
        """Advance by one and return the new value."""
        self.counter += 1
        return self.counter

    def witness(self, v: int) -> None:
        """Take ``v`` into account: the clock ends strictly after it."""
        if v >= self.counter:
            self.counter = v + 1
