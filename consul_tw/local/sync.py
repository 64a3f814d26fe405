# -*- test-case-name: tests.unit.local.test_sync -*-
"""
Anti-entropy for the agent's own node entry ("Synced node info").

Every agent owns its node row in the catalog: ID, address, tagged
addresses and node meta.  It compares what the catalog holds with what it
knows and registers the difference through Raft, then re-checks every
``interval`` (Consul: about a minute) and retries failures after
``retry_interval`` (Consul: 15 s).  A sync can be triggered early, e.g. when
the cluster gains a leader.  Time comes from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.catalog.commands import Command, NodeSpec, Register
from consul_tw.catalog.structs import Node


@attrs.define(eq=False)
class NodeInfoSync:
    node: NodeSpec
    read_node: Callable[[str], Node | None]
    write: Callable[[Command], Deferred[Any]]
    clock: IReactorTime
    logger: HcLogger
    interval: float = 60.0
    retry_interval: float = 15.0
    _timer: IDelayedCall | None = None
    _in_flight: bool = False
    _stopped: bool = True

    def start(self, *, sync_now: bool = True) -> None:
        """
        Begin syncing.  A server passes ``sync_now=False`` and triggers the
        first sync when a leader is known, instead of failing once with
        "No cluster leader" during its own election.
        """
        self._stopped = False
        self.logger.info("started state syncer")
        if sync_now:
            self.trigger()
        else:
            self._schedule(self.retry_interval)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def trigger(self) -> None:
        """Sync now (unless one is already running)."""
        if self._stopped or self._in_flight:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._sync()

    def in_sync(self, row: Node | None) -> bool:
        spec = self.node
        return row is not None and (
            row.id,
            row.address,
            dict(row.tagged_addresses),
            dict(row.meta),
        ) == (spec.id, spec.address, dict(spec.tagged_addresses), dict(spec.meta))

    def _schedule(self, delay: float) -> None:
        if not self._stopped:
            self._timer = self.clock.callLater(delay, self.trigger)

    def _sync(self) -> None:
        if self.in_sync(self.read_node(self.node.node)):
            self.logger.debug("Node info in sync")
            self._schedule(self.interval)
            return
        self._in_flight = True

        def synced(_: object) -> None:
            self._in_flight = False
            self.logger.info("Synced node info")
            self._schedule(self.interval)

        def failed(failure: Failure) -> None:
            self._in_flight = False
            self.logger.error("failed to sync remote state", error=failure.getErrorMessage())
            self._schedule(self.retry_interval)

        self.write(Register(node=self.node)).addCallbacks(synced, failed)
