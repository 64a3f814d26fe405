# -*- test-case-name: tests.unit.test_build -*-
"""
A gossip pool as a Twisted service: its sockets, its membership, its joins.

``startService`` binds the pool's UDP and TCP port synchronously (a taken
port fails the agent's start-up, as in Consul), hands inbound traffic to
the pool's memberlist, starts the pool, then the start-up joins
(``-join``, ``-retry-join``).  ``stopService`` stops joining, shuts the
pool down without a goodbye (a graceful leave is the agent's business and
happens before), and closes the sockets.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from consul_tw.gossip.joiner import RetryJoin
from consul_tw.gossip.net import GossipNet, InboundNode


class GossipPool(Protocol):
    """What the service needs of a pool (Serf, or a placeholder)."""

    memberlist: InboundNode | None

    def start(self) -> None: ...

    def shutdown(self) -> None: ...


class GossipService(Service):
    def __init__(self, pool: GossipPool, net: GossipNet, *, joiners: list[RetryJoin] = ()) -> None:  # type: ignore[assignment]
        self.pool = pool
        self.net = net
        self.joiners = list(joiners)

    @property
    def bound_port(self) -> int:
        return self.net.bound_port

    def startService(self) -> None:
        self.net.listen()
        if self.pool.memberlist is not None:
            self.net.bind(self.pool.memberlist)
        super().startService()
        self.pool.start()
        for joiner in self.joiners:
            joiner.start()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        for joiner in self.joiners:
            joiner.stop()
        self.pool.shutdown()
        return self.net.stop()
