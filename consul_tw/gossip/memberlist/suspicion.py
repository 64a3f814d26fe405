# -*- test-case-name: tests.unit.gossip.test_suspicion -*-
"""
Lifeguard's suspicion timer, on an injected clock.

A suspected node is declared dead when its timer runs out.  The timer
starts at ``max`` when ``k`` independent confirmations can be expected
(``k`` = suspicion multiplier − 2, or 0 when the cluster is too small to
supply them, in which case it starts at ``min``).  Each *new* peer that
also suspects the node shrinks the remaining time on a log scale:
after ``n`` confirmations the total timeout is
``max − log(n+1)/log(k+1) × (max − min)``, never below ``min``; so ``k``
confirmations bring it down to ``min``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime


def suspicion_timeout(mult: int, n: int, interval: float) -> float:
    """Minimum suspicion timeout: ``mult × max(1, log10 n) × interval`` (ms precision)."""
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return mult * int(node_scale * 1000) * interval / 1000


def remaining_suspicion_time(n: int, k: int, elapsed: float, min_: float, max_: float) -> float:
    """Time left after ``n`` confirmations out of ``k`` expected, ``elapsed`` seconds in."""
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = max_ - frac * (max_ - min_)
    timeout = math.floor(1000.0 * raw) / 1000.0
    if timeout < min_:
        timeout = min_
    return timeout - elapsed


@attrs.define(eq=False)
class Suspicion:
    """
    One node's suspicion.  ``on_timeout(confirmations)`` runs when the time
    is up; ``confirm(peer)`` records an independent suspicion and
    re-arms the timer; ``cancel()`` stops it for good.
    """

    clock: IReactorTime
    from_node: str
    k: int
    min_timeout: float
    max_timeout: float
    on_timeout: Callable[[int], object]
    confirmations: int = 0
    _seen: set[str] = attrs.field(factory=set)
    _start: float = 0.0
    _timer: IDelayedCall | None = None

    def __attrs_post_init__(self) -> None:
        self._seen.add(self.from_node)
        self._start = self.clock.seconds()
        timeout = self.max_timeout if self.k >= 1 else self.min_timeout
        self._timer = self.clock.callLater(timeout, self._fire)

    @property
    def active(self) -> bool:
        return self._timer is not None and self._timer.active()

    def deadline(self) -> float | None:
        """When the timer fires (clock seconds), or None once fired or cancelled."""
        if self._timer is None or not self._timer.active():
            return None
        return float(self._timer.getTime())

    def confirm(self, peer: str) -> bool:
        """
        Count ``peer``'s suspicion; True when it was new (the caller then
        re-gossips it).  Confirmations beyond ``k`` and repeats are ignored.
        """
        if self.confirmations >= self.k or peer in self._seen:
            return False
        self._seen.add(peer)
        self.confirmations += 1
        elapsed = self.clock.seconds() - self._start
        remaining = remaining_suspicion_time(
            self.confirmations, self.k, elapsed, self.min_timeout, self.max_timeout
        )
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
            # Never fire from inside confirm(): the caller is mid-update.
            self._timer = self.clock.callLater(max(0.0, remaining), self._fire)
        return True

    def cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self.on_timeout(self.confirmations)


def lifeguard_suspicion(
    clock: IReactorTime,
    from_node: str,
    n: int,
    suspicion_mult: int,
    max_timeout_mult: int,
    probe_interval: float,
    on_timeout: Callable[[int], object],
) -> Suspicion:
    """
    A suspicion sized as memberlist sizes it for a cluster of ``n`` nodes:
    expect ``suspicion_mult - 2`` confirmations (none when fewer than that
    many nodes other than us and the suspect exist), min from
    :func:`suspicion_timeout`, max = ``max_timeout_mult`` × min.
    """
    k = suspicion_mult - 2
    if n - 2 < k:
        k = 0
    min_timeout = suspicion_timeout(suspicion_mult, n, probe_interval)
    return Suspicion(clock, from_node, k, min_timeout, max_timeout_mult * min_timeout, on_timeout)
