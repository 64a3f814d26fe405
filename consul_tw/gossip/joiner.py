# -*- test-case-name: tests.unit.gossip.test_joiner -*-
"""
Joining a pool at start-up: ``-join`` (once, fatal on failure) and
``-retry-join`` (again every ``retry_interval`` until it works or
``retry_max`` attempts are spent), with Consul's log lines.

Domain code: time comes from the injected clock, joining from a callable,
and giving up is reported through ``on_give_up`` so the agent decides what
it means for the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.durations import format_duration


@attrs.define(eq=False)
class RetryJoin:
    """Join ``addresses`` through ``join``; retry until success or ``max_attempts`` (0: forever)."""

    join: Callable[[list[str]], Deferred[int]]
    addresses: tuple[str, ...]
    clock: IReactorTime
    logger: HcLogger
    cluster: str = "LAN"
    interval: float = 30.0
    max_attempts: int = 0
    on_give_up: Callable[[str], None] = lambda reason: None
    on_joined: Callable[[int], None] = lambda count: None
    _attempts: int = 0
    _timer: IDelayedCall | None = None
    _stopped: bool = False

    def start(self) -> None:
        if self.addresses:
            self.logger.info("Joining cluster...", cluster=self.cluster)
            self._attempt()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _attempt(self) -> None:
        self._timer = None
        self._attempts += 1
        self.join(list(self.addresses)).addCallbacks(self._joined, self._failed)

    def _joined(self, count: int) -> None:
        if self._stopped:
            return
        self.logger.info(
            "Join cluster completed. Synced with initial agents",
            cluster=self.cluster,
            num_agents=count,
        )
        self.on_joined(count)

    def _failed(self, failure: Failure) -> Any:
        if self._stopped:
            return None
        error = failure.getErrorMessage()
        if self.max_attempts and self._attempts >= self.max_attempts:
            self.logger.error(
                "Join cluster failed, reached max attempts", cluster=self.cluster, error=error
            )
            self.on_give_up(error)
            return None
        self.logger.warn(
            "Join cluster failed, will retry",
            cluster=self.cluster,
            retry_interval=format_duration(self.interval),
            error=error,
        )
        self._timer = self.clock.callLater(self.interval, self._attempt)
        return None
