# -*- test-case-name: tests.unit.gossip.test_membership -*-
"""
The Serf layer of one gossip pool: member table, status, intents and events.

This release runs every agent as a pool of one: the member table holds the
local member, its status moves through Serf's alive → leaving → left on a
graceful leave, and the same member events Serf emits (``EventMemberJoin``,
``EventMemberLeave``, ...) go to subscribers such as the leader's catalog
reconciliation.  Probing, dissemination and push/pull (the memberlist
layer) arrive with the gossip issue and feed this same table and events.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from consul_tw._logging import HcLogger
from consul_tw.gossip.members import Member, MemberStatus


class EventType(enum.Enum):
    MEMBER_JOIN = "member-join"
    MEMBER_LEAVE = "member-leave"
    MEMBER_FAILED = "member-failed"
    MEMBER_UPDATE = "member-update"
    MEMBER_REAP = "member-reap"

    @property
    def serf_name(self) -> str:
        """Serf's Go name, as its log lines print it (``EventMemberJoin``)."""
        return "Event" + "".join(part.title() for part in self.value.split("-"))


@attrs.frozen
class MemberEvent:
    type: EventType
    members: tuple[Member, ...]


@attrs.define(eq=False)
class Membership:
    """
    One pool's members, as seen from this agent.

    ``leave_propagate_delay`` is Serf's wait after broadcasting a leave
    intent, which gives the intent time to reach the other members; with no
    other live member there is no one to tell, so it is skipped.
    """

    local: Member
    clock: IReactorTime
    logger: HcLogger
    leave_propagate_delay: float = 3.0
    _members: dict[str, Member] = attrs.field(factory=dict)
    _subscribers: list[Callable[[MemberEvent], None]] = attrs.field(factory=list)
    _lamport_member_time: int = 1
    _lamport_event_time: int = 1

    #: No memberlist yet: the pool's sockets drop what they receive.
    memberlist = None

    def start(self) -> None:
        self._members[self.local.name] = self.local
        self._emit(EventType.MEMBER_JOIN, self.local)

    def shutdown(self) -> None:
        """Nothing runs in a pool of one."""

    def join(self, addresses: list[tuple[str, int]]) -> Deferred[int]:
        return fail(RuntimeError("gossip is not enabled in this pool"))

    def force_leave(self, name: str, prune: bool = False) -> Deferred[None]:
        return fail(RuntimeError(f"agent: No node found with name '{name}'"))

    def members(self) -> list[Member]:
        """Every known member, including left and failed ones not yet reaped."""
        return list(self._members.values())

    def local_member(self) -> Member:
        return self._members.get(self.local.name, self.local)

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> None:
        self._subscribers.append(callback)

    def stats(self) -> dict[str, str]:
        """Serf's Stats() map, as /v1/agent/self shows it."""
        by_status = [m.status for m in self._members.values()]
        return {
            "coordinate_resets": "0",
            "encrypted": "false",
            "event_queue": "0",
            "event_time": str(self._lamport_event_time),
            "failed": str(by_status.count(MemberStatus.FAILED)),
            "health_score": "0",
            "intent_queue": "0",
            "left": str(by_status.count(MemberStatus.LEFT)),
            "member_time": str(self._lamport_member_time),
            "members": str(len(by_status)),
            "query_queue": "0",
            "query_time": "1",
        }

    def leave(self) -> Deferred[None]:
        """Serf's graceful leave: announce ``leaving``, let it propagate, end ``left``."""
        self._set_local(MemberStatus.LEAVING)
        others = [
            m
            for m in self._members.values()
            if m.name != self.local.name and m.status is MemberStatus.ALIVE
        ]
        waited: Deferred[None] = (
            deferLater(self.clock, self.leave_propagate_delay) if others else succeed(None)
        )

        def done(_: None) -> None:
            self._set_local(MemberStatus.LEFT)
            self._emit(EventType.MEMBER_LEAVE, self._members[self.local.name])

        return waited.addCallback(done)

    def _set_local(self, status: MemberStatus) -> None:
        self._lamport_member_time += 1
        self._members[self.local.name] = attrs.evolve(self.local_member(), status=status)

    def _emit(self, kind: EventType, member: Member) -> None:
        self.logger.info(f"serf: {kind.serf_name}: {member.name} {member.addr}")
        event = MemberEvent(kind, (member,))
        for callback in list(self._subscribers):
            callback(event)
