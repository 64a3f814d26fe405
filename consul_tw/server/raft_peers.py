# -*- test-case-name: tests.unit.server.test_raft_peers -*-
"""
The leader keeps the Raft configuration in step with the servers gossip sees.

As Consul's leader does (``leader.go``: joinConsulServer / removeConsulServer,
plus autopilot's dead-server cleanup):

* an alive server of our datacenter that is not a voter is added (or its
  address updated), one configuration change at a time;
* a server that *left* gracefully is removed;
* a *failed* server stays a voter -- it may come back with its data --
  until a new server has been added, when autopilot's
  ``cleanup_dead_servers`` removes failed voters, never so many at once
  that the survivors lose their majority.

Changes are serialised: Raft refuses a second change while one is
uncommitted, so each change waits for the previous one and the whole
reconciliation runs again after every change and member event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from consul_tw._logging import HcLogger
from consul_tw.gossip.members import Member, MemberStatus
from consul_tw.gossip.merge import is_consul_server
from consul_tw.gossip.serf import EventType, MemberEvent, Membership
from consul_tw.raft.core import RaftStatus
from consul_tw.raft.messages import Server

#: Wait before trying again after a refused change (e.g. one still uncommitted).
RETRY_DELAY = 1.0


class ConfiguresRaft(Protocol):
    def describe(self) -> RaftStatus: ...

    def add_voter(self, server: Server) -> Deferred[Any]: ...

    def remove_server(self, server_id: str) -> Deferred[Any]: ...


def raft_server(member: Member) -> Server:
    """The Raft identity of a Consul server member: node ID and RPC address."""
    return Server(id=member.tags["id"], address=f"{member.addr}:{member.tags.get('port', '8300')}")


@attrs.define(eq=False)
class RaftPeerReconciler:
    """
    While this server leads, brings the Raft voters in line with the
    servers Serf sees (see the module docstring for the rules); idle on
    followers, which only learn the configuration from the log.
    """

    raft: ConfiguresRaft
    lan: Membership
    datacenter: str
    clock: IReactorTime
    logger: HcLogger
    cleanup_dead_servers: bool = True
    leader: bool = False
    _busy: bool = False
    _retry: IDelayedCall | None = None
    #: Set once a server was added this term: autopilot may then prune the dead.
    _added_since_cleanup: bool = False
    #: IDs of servers Serf reaped (gone for good): removed from Raft.
    _reaped: set[str] = attrs.field(factory=set)
    on_change: list[Callable[[], None]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        self.lan.subscribe(self._member_event)

    def leadership_changed(self, leader: bool) -> None:
        self.leader = leader
        if leader:
            self.reconcile()
        elif self._retry is not None and self._retry.active():
            self._retry.cancel()

    def _member_event(self, event: MemberEvent) -> None:
        if event.type is EventType.MEMBER_REAP:
            for member in event.members:
                self._reaped.add(member.tags.get("id", ""))
        if self.leader:
            self.reconcile()

    def _servers(self) -> list[Member]:
        return [
            m
            for m in self.lan.members()
            if is_consul_server(m)
            and m.tags.get("dc") == self.datacenter
            and m.tags.get("id")
            and m.tags.get("raft_vsn", "3") == "3"
        ]

    def next_change(self) -> tuple[str, Server] | None:
        """The one change to make now: ("add"|"remove", server), or None."""
        status = self.raft.describe()
        voters = {s.id: s for s in status.voters}
        servers = self._servers()
        by_id = {m.tags["id"]: m for m in servers}
        for member in servers:
            wanted = raft_server(member)
            if member.status is MemberStatus.ALIVE and voters.get(wanted.id) != wanted:
                return "add", wanted
        for voter in status.voters:
            if voter.id == status.node_id:
                continue
            member = by_id.get(voter.id)
            if voter.id in self._reaped or (
                member is not None and member.status is MemberStatus.LEFT
            ):
                return "remove", voter
        if self.cleanup_dead_servers and self._added_since_cleanup:
            failed = [
                v
                for v in status.voters
                if v.id in by_id and by_id[v.id].status is MemberStatus.FAILED
            ]
            # Autopilot never removes so many that the rest lose their majority.
            if failed and len(failed) <= (len(status.voters) - 1) // 2:
                return "remove", failed[0]
            self._added_since_cleanup = False
        return None

    def reconcile(self) -> None:
        if not self.leader or self._busy:
            return
        change = self.next_change()
        if change is None:
            return
        action, server = change
        self._busy = True
        if action == "add":
            self.logger.info("Adding server to raft", id=server.id, address=server.address)
            doing = self.raft.add_voter(server)
        else:
            self.logger.info("removing server from raft", id=server.id, address=server.address)
            doing = self.raft.remove_server(server.id)

        def done(_: object) -> None:
            self._busy = False
            if action == "add":
                self._added_since_cleanup = True
            else:
                self._reaped.discard(server.id)
            for callback in list(self.on_change):
                callback()
            self.reconcile()

        def failed(failure: Any) -> None:
            self._busy = False
            self.logger.warn(
                "failed to change raft configuration",
                action=action,
                server=server.address,
                error=failure.getErrorMessage(),
            )
            if self.leader and (self._retry is None or not self._retry.active()):
                self._retry = self.clock.callLater(RETRY_DELAY, self.reconcile)

        doing.addCallbacks(done, failed)
