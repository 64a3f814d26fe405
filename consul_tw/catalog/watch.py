# -*- test-case-name: tests.unit.catalog.test_watch -*-
"""
Waiting for the catalog to change: the core of Consul's blocking queries.

A reader that wants "the nodes, once the index passes 42" calls
:meth:`WatchSet.wait` and re-reads when it fires.  The store calls
:meth:`WatchSet.notify` after every write; waiters are woken one reactor
turn later so that no HTTP code runs inside the Raft driver.  Timeouts are
on the injected clock, and a cancelled wait (the client hung up) leaves no
delayed call behind.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime


@attrs.define(eq=False)
class WatchSet:
    clock: IReactorTime
    _waiting: dict[Deferred[bool], IDelayedCall] = attrs.field(factory=dict)
    _wake_scheduled: bool = False

    def wait(self, timeout: float) -> Deferred[bool]:
        """Fires True at the next change, False when ``timeout`` passes first."""

        def cancel(d: Deferred[bool]) -> None:
            timer = self._waiting.pop(d, None)
            if timer is not None and timer.active():
                timer.cancel()

        waiting: Deferred[bool] = Deferred(cancel)
        self._waiting[waiting] = self.clock.callLater(timeout, self._fire, waiting, False)
        return waiting

    def notify(self) -> None:
        """Wake every current waiter, with one delayed call however many there are."""
        if self._waiting and not self._wake_scheduled:
            self._wake_scheduled = True
            self.clock.callLater(0, self._wake_all)

    def _wake_all(self) -> None:
        self._wake_scheduled = False
        for waiting in list(self._waiting):
            self._fire(waiting, True)

    def _fire(self, waiting: Deferred[bool], changed: bool) -> None:
        timer = self._waiting.pop(waiting, None)
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        waiting.callback(changed)
