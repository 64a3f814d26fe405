# -*- test-case-name: tests.unit.server.test_bootstrap -*-
"""
``-bootstrap-expect N``: bootstrap Raft once N servers see each other.

Each server gossips an ``expect`` tag.  When a server with no Raft state
sees N alive servers of its datacenter, it asks each of them over RPC
(``Status.RaftStats``) whether they already hold Raft state -- a new server
joining an existing cluster must never bootstrap a second one -- and, if
none does, writes the same first configuration (every one of the N servers
as a voter) that the others write, so they elect one leader among them.
This is Consul's ``maybeBootstrap``.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, gatherResults

from consul_tw._logging import HcLogger
from consul_tw.gossip.members import Member, MemberStatus
from consul_tw.gossip.merge import is_consul_server
from consul_tw.gossip.serf import MemberEvent, Membership
from consul_tw.raft.core import RaftStatus
from consul_tw.raft.messages import Server
from consul_tw.server.raft_peers import raft_server


class Bootstraps(Protocol):
    def describe(self) -> RaftStatus: ...

    def bootstrap(self, servers: tuple[Server, ...]) -> bool: ...


class RpcCaller(Protocol):
    def call(
        self, host: str, port: int, method: str, args: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]: ...


def has_raft_state(status: RaftStatus) -> bool:
    return status.last_log_index > 0 or status.term > 0


@attrs.define(eq=False)
class BootstrapExpect:
    """One server's half of ``-bootstrap-expect``: watch Serf, check peers, bootstrap once."""

    raft: Bootstraps
    lan: Membership
    rpc: RpcCaller
    expect: int
    datacenter: str
    logger: HcLogger
    done: bool = False
    _asking: bool = False

    def start(self) -> None:
        if has_raft_state(self.raft.describe()):
            self.logger.info("Raft data found, disabling bootstrap mode")
            self.done = True
            return
        self.lan.subscribe(self._member_event)
        self.consider()

    def _member_event(self, event: MemberEvent) -> None:
        self.consider()

    def _candidates(self) -> list[Member] | None:
        servers: list[Member] = []
        for member in self.lan.members():
            if not is_consul_server(member) or member.tags.get("dc") != self.datacenter:
                continue
            if member.status is not MemberStatus.ALIVE:
                continue
            if member.tags.get("expect") not in (None, str(self.expect)):
                self.logger.error("Member has bootstrap mismatch", member=member.name)
                return None
            if member.tags.get("bootstrap") == "1":
                self.logger.error("Member has bootstrap mode. Expect disabled.", member=member.name)
                return None
            servers.append(member)
        return servers

    def consider(self) -> None:
        if self.done or self._asking:
            return
        if has_raft_state(self.raft.describe()):
            self.done = True
            return
        servers = self._candidates()
        if servers is None or len(servers) < self.expect:
            return
        self._asking = True
        asks = [
            self.rpc.call(m.addr, int(m.tags.get("port", "8300")), "Status.RaftStats", timeout=5.0)
            for m in servers
        ]

        def answered(stats: list[Any]) -> None:
            self._asking = False
            for member, stat in zip(servers, stats, strict=True):
                if isinstance(stat, dict) and int(stat.get("LastIndex", 0) or 0) > 0:
                    self.logger.info(
                        "Existing Raft peers reported by server, disabling bootstrap mode",
                        server=member.name,
                    )
                    self.done = True
                    return
            self._bootstrap(servers)

        def failed(failure: Any) -> None:
            self._asking = False
            self.logger.error(
                "Failed to confirm peer status for bootstrap",
                error=failure.value.subFailure.getErrorMessage()
                if hasattr(failure.value, "subFailure")
                else failure.getErrorMessage(),
            )

        gatherResults(asks, consumeErrors=True).addCallbacks(answered, failed)

    def _bootstrap(self, members: list[Member]) -> None:
        servers = tuple(sorted((raft_server(m) for m in members), key=lambda s: s.id))
        self.logger.info(
            "Found expected number of peers, attempting bootstrap",
            peers=",".join(s.address for s in servers),
        )
        if not self.raft.bootstrap(servers):
            self.logger.info("Raft data found, disabling bootstrap mode")
        self.done = True
