"""RetryJoin: -join and -retry-join semantics on a Clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.gossip.joiner import RetryJoin


class RetryJoinTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.results: list[Deferred[int]] = []
        self.calls: list[list[str]] = []
        self.gave_up: list[str] = []
        self.joined: list[int] = []

    def joiner(self, outcomes: list[object], max_attempts: int = 0) -> RetryJoin:
        def join(addresses: list[str]) -> Deferred[int]:
            self.calls.append(addresses)
            outcome = outcomes.pop(0)
            return fail(outcome) if isinstance(outcome, Exception) else succeed(outcome)  # type: ignore[arg-type]

        return RetryJoin(
            join=join, addresses=("10.0.0.1", "10.0.0.2:8301"), clock=self.clock,
            logger=HcLogger("agent"), interval=30, max_attempts=max_attempts,
            on_give_up=self.gave_up.append, on_joined=self.joined.append,
        )

    def test_retries_until_it_works(self) -> None:
        joiner = self.joiner([RuntimeError("no route"), RuntimeError("refused"), 2])
        joiner.start()
        self.assertEqual(len(self.calls), 1)
        self.clock.advance(30)
        self.clock.advance(30)
        self.assertEqual((len(self.calls), self.joined), (3, [2]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_gives_up_after_max_attempts(self) -> None:
        joiner = self.joiner([RuntimeError("a"), RuntimeError("b")], max_attempts=2)
        joiner.start()
        self.clock.advance(30)
        self.assertEqual(self.gave_up, ["b"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_cancels_the_retry(self) -> None:
        joiner = self.joiner([RuntimeError("a")])
        joiner.start()
        joiner.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nothing_to_join(self) -> None:
        RetryJoin(join=lambda a: succeed(0), addresses=(), clock=self.clock,
                  logger=HcLogger("agent")).start()
        self.assertEqual(self.calls, [])
