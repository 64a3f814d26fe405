# -*- test-case-name: tests.unit.server.test_leader -*-
"""
What a Consul leader does besides Raft: keep the catalog in step with gossip.

On gaining leadership, and on every member event while leader, each LAN
member is reconciled into the catalog as Consul's ``leader.go`` does: alive
members are registered with a passing ``serfHealth`` check (servers also
with the ``consul`` service), failed ones get a critical ``serfHealth`` but
stay, and left ones are deregistered.  All writes go through Raft.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from consul_tw import __version__
from consul_tw._logging import HcLogger
from consul_tw.catalog.commands import (
    CheckSpec,
    Command,
    Deregister,
    NodeSpec,
    Register,
    ServiceSpec,
)
from consul_tw.catalog.store import StateStore
from consul_tw.catalog.structs import (
    CRITICAL,
    PASSING,
    SERF_ALIVE_OUTPUT,
    SERF_CHECK_ID,
    SERF_CHECK_NAME,
    SERF_FAILED_OUTPUT,
)
from consul_tw.gossip.members import Member, MemberStatus
from consul_tw.gossip.merge import is_consul_server
from consul_tw.gossip.serf import MemberEvent, Membership


def consul_service(member: Member) -> ServiceSpec:
    """The ``consul`` service every server is registered with."""
    return ServiceSpec(
        id="consul",
        service="consul",
        port=_port(member.tags.get("port", "")),
        meta={
            "raft_version": member.tags.get("raft_vsn", "3"),
            "serf_protocol_current": str(member.protocol_cur),
            "serf_protocol_max": str(member.protocol_max),
            "serf_protocol_min": str(member.protocol_min),
            "version": __version__,
        },
    )


DEFAULT_SERVER_PORT = 8300


def _port(tag: str) -> int:
    """A server's RPC port from its gossip tag; the tag is untrusted input."""
    try:
        port = int(tag)
    except ValueError:
        return DEFAULT_SERVER_PORT
    return port if 0 < port < 65536 else DEFAULT_SERVER_PORT


@attrs.define(eq=False)
class LeaderDuties:
    """Reconciles Serf members into the catalog while this server leads."""

    node_name: str
    datacenter: str
    store: StateStore
    lan: Membership
    write: Callable[[Command], Deferred[Any]]
    server_logger: HcLogger
    leader_logger: HcLogger
    leader: bool = False
    #: Names this leader is deregistering because they left; not repeated.
    _leaving: set[str] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.lan.subscribe(self.member_event)

    def leadership_changed(self, leader: bool) -> None:
        self.leader = leader
        if not leader:
            self.server_logger.info("cluster leadership lost")
            return
        self.server_logger.info("cluster leadership acquired")
        self.server_logger.info("New leader elected", payload=self.node_name)
        for member in self.lan.members():
            self._reconcile(member)

    def member_event(self, event: MemberEvent) -> None:
        if self.leader:
            for member in event.members:
                self._reconcile(member)

    def _should_handle(self, member: Member) -> bool:
        """Consul's shouldHandleMember: Consul clients and servers of our datacenter only."""
        role = member.tags.get("role")
        if member.tags.get("dc") != self.datacenter:
            return False
        return role == "node" or (is_consul_server(member) and member.tags.get("segment", "") == "")

    def _reconcile(self, member: Member) -> None:
        if not self._should_handle(member):
            return
        if member.status is MemberStatus.ALIVE:
            self._alive(member)
        elif member.status is MemberStatus.FAILED:
            self._failed(member)
        elif member.status is MemberStatus.LEFT:
            self._left(member)

    def _serf_check(self, member: Member) -> Any:
        for check in self.store.node_checks(member.name):
            if check.check_id == SERF_CHECK_ID:
                return check
        return None

    def _register(self, member: Member, status: str, output: str) -> None:
        self._submit(
            Register(
                node=NodeSpec(
                    id=member.tags.get("id", ""),
                    node=member.name,
                    address=member.addr,
                    datacenter=self.datacenter,
                ),
                service=consul_service(member) if member.is_server else None,
                checks=(
                    CheckSpec(
                        check_id=SERF_CHECK_ID, name=SERF_CHECK_NAME, status=status, output=output
                    ),
                ),
                skip_node_update=True,
            )
        )

    def _alive(self, member: Member) -> None:
        node = self.store.get_node(member.name)
        check = self._serf_check(member)
        if node is not None and node.address == member.addr and check and check.status == PASSING:
            return
        self.leader_logger.info("member joined, marking health alive", member=member.name)
        self._register(member, PASSING, SERF_ALIVE_OUTPUT)

    def _failed(self, member: Member) -> None:
        check = self._serf_check(member)
        if check is not None and check.status == CRITICAL:
            return
        self.leader_logger.info("member failed, marking health critical", member=member.name)
        self._register(member, CRITICAL, SERF_FAILED_OUTPUT)

    def _left(self, member: Member) -> None:
        if member.name == self.node_name:
            # Consul: a leader cannot deregister itself; another server will.
            self.server_logger.warn(
                "deregistering self should be done by follower", name=member.name
            )
            return
        if self.store.get_node(member.name) is None or member.name in self._leaving:
            return
        self._leaving.add(member.name)
        self.leader_logger.info("deregistering member", member=member.name, reason="left")
        self._submit(Deregister(node=member.name)).addBoth(
            lambda result: self._leaving.discard(member.name) or result
        )

    def _submit(self, command: Command) -> Deferred[Any]:
        def failed(failure: Any) -> None:
            self.leader_logger.error("failed to reconcile member", error=failure.getErrorMessage())

        return self.write(command).addErrback(failed)
