# -*- test-case-name: tests.unit.test_observer -*-
"""
A one-shot result many callers can wait for (as magic-wormhole's observer).

Handing one Deferred to several callers would let the first caller's
callbacks change what the others receive; each waiter gets its own Deferred
here, fired with the same result.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure


@attrs.define(eq=False)
class OneShotObserver:
    _waiting: list[Deferred[Any]] = attrs.field(factory=list)
    _fired: bool = False
    _result: Any = None

    @property
    def fired(self) -> bool:
        return self._fired

    def when_fired(self) -> Deferred[Any]:
        if self._fired:
            return (
                fail(self._result) if isinstance(self._result, Failure) else succeed(self._result)
            )
        waiting: Deferred[Any] = Deferred()
        self._waiting.append(waiting)
        return waiting

    def fire(self, result: Any) -> None:
        """Fire every waiter (a Failure errbacks them); later calls are ignored."""
        if self._fired:
            return
        self._fired, self._result = True, result
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def follow(self, source: Deferred[Any]) -> None:
        """Fire with ``source``'s result, whatever it is."""
        source.addBoth(self.fire)
