# -*- test-case-name: tests.unit.server.test_router -*-
"""
Where a server sends what only the leader may answer.

Writes, default reads and ``?consistent`` reads must be served by the Raft
leader.  A follower forwards them over server RPC to the leader it last
heard from; while no leader is known (an election is running) it holds the
request for up to Consul's ``performance.rpc_hold_timeout`` (7 s), polling,
then answers ``No cluster leader``, so a client never hangs on a cluster
that cannot elect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from consul_tw.raft.core import RaftStatus

#: How often a held request looks for a new leader.
POLL_INTERVAL = 0.05


class NoClusterLeader(Exception):
    """Consul's ``No cluster leader``: a write or default read with no leader known."""

    def __init__(self) -> None:
        super().__init__("No cluster leader")


class RequestNotSent(Exception):
    """
    A forwarded request never reached the leader (the connection could not
    be made): safe to send again, even for a write.  The RPC client's
    ConnectError is one.
    """


class Describes(Protocol):
    def describe(self) -> RaftStatus: ...

    def leader_hint(self) -> tuple[bool, str | None]: ...


@attrs.frozen
class LeaderIsSelf:
    """The answer of :meth:`LeaderRouter.find_leader` on the leader itself."""


@attrs.frozen
class LeaderElsewhere:
    host: str
    port: int


LeaderLocation = LeaderIsSelf | LeaderElsewhere


def split_address(address: str) -> tuple[str, int]:
    """A Raft address ``host:port`` (``[v6]:port`` too) as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@attrs.define
class LeaderRouter:
    """
    Finds the leader for a request only it may answer, from the local Raft
    status; holds the request while an election runs (up to the hold
    timeout) rather than failing it at once, as Consul's forwarding does.
    """

    raft: Describes
    clock: IReactorTime
    hold_timeout: float = 7.0

    def locate(self) -> LeaderLocation | None:
        """
        Where the leader is right now, None while unknown.  A hint, read on
        every request without a trip through the machine; the machine
        itself refuses a write or read that reaches a server no longer
        leading, so a stale hint costs an error, never a wrong answer.
        """
        leading, leader_address = self.raft.leader_hint()
        if leading:
            return LeaderIsSelf()
        if not leader_address:
            return None
        try:
            host, port = split_address(leader_address)
        except ValueError:
            return None
        return LeaderElsewhere(host, port)

    def route(
        self,
        on_leader: Callable[[], Deferred[Any]],
        forward: Callable[[str, int], Deferred[Any]],
    ) -> Deferred[Any]:
        """
        Run ``on_leader`` here if we lead, else ``forward(host, port)`` to the
        leader.  A forward that could not reach the leader (it just died and
        we have not noticed yet) is retried as the leader changes, within the
        same hold timeout, rather than answered with a dial error.
        """
        deadline = self.clock.seconds() + self.hold_timeout

        def attempt(_: object = None) -> Deferred[Any]:
            return self.find_leader(deadline).addCallback(dispatch)

        def dispatch(location: LeaderLocation) -> Deferred[Any]:
            if isinstance(location, LeaderIsSelf):
                return on_leader()
            return forward(location.host, location.port).addErrback(retry)

        def retry(failure: Failure) -> Deferred[Any] | Failure:
            if not failure.check(RequestNotSent) or self.clock.seconds() >= deadline:
                return failure
            return deferLater(self.clock, POLL_INTERVAL, lambda: None).addCallback(attempt)

        return attempt()

    def find_leader(self, deadline: float | None = None) -> Deferred[LeaderLocation]:
        """The leader's location, waiting up to the hold timeout for one to be elected."""
        if deadline is None:
            deadline = self.clock.seconds() + self.hold_timeout

        def look(_: object = None) -> Deferred[LeaderLocation]:
            found = self.locate()
            if found is not None:
                return succeed(found)
            if self.clock.seconds() >= deadline:
                return fail(NoClusterLeader())
            delay = min(POLL_INTERVAL, max(0.0, deadline - self.clock.seconds()))
            return deferLater(self.clock, delay, lambda: None).addCallback(look)

        return look()
