"""OneShotObserver: each waiter its own Deferred, same result."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._observer import OneShotObserver


class ObserverTests(SynchronousTestCase):
    def test_waiters_before_and_after(self) -> None:
        observer = OneShotObserver()
        early = observer.when_fired()
        early.addCallback(lambda r: "changed by the first caller")
        source: Deferred[str] = Deferred()
        observer.follow(source)
        self.assertFalse(observer.fired)
        source.callback("done")
        self.assertEqual(self.successResultOf(early), "changed by the first caller")
        self.assertEqual(self.successResultOf(observer.when_fired()), "done")
        observer.fire("ignored")
        self.assertEqual(self.successResultOf(observer.when_fired()), "done")

    def test_failure_reaches_every_waiter(self) -> None:
        observer = OneShotObserver()
        first = observer.when_fired()
        observer.fire(Failure(ValueError("nope")))
        self.failureResultOf(first, ValueError)
        self.failureResultOf(observer.when_fired(), ValueError)
