# -*- test-case-name: tests.unit.gossip.test_serf -*-
"""
Serf's member table: status from memberlist events and Lamport-timed intents.

Rules (serf 0.9.4; gossip-wire.md §7.5):

- memberlist *join* (first sighting, or back from dead/left) → ``alive``;
  a brand-new member takes the time of a buffered join intent, and becomes
  ``leaving`` if a leave intent for it was buffered.
- memberlist *leave* (dead or left there) → ``leaving`` members become
  ``left``, ``alive`` ones ``failed`` — except that memberlist's *left*
  (``dead`` from the node itself, which only a graceful leave sends) makes
  an ``alive`` member ``left`` too.  serf 0.9.4 shows ``failed`` until the
  leave intent arrives when the two race; taking memberlist's word keeps a
  graceful leave from ever looking like a failure.  Failed and left members are kept in
  their own lists, stamped with the time, for reconnect and reaping.
- A *leave intent* newer than the member's status time: ``alive`` →
  ``leaving``; ``failed`` → ``left`` (a force-leave, logged as
  "EventMemberLeave (forced)"); ``prune`` also erases the member.  An
  intent about ourselves while we are not leaving is refuted with a join
  intent at the current clock.
- A *join intent* newer than the status time records the time and turns a
  ``leaving`` member back to ``alive``.
- Intents about names we do not know yet are buffered (newest per name)
  for ``recent_intent_timeout`` and re-gossiped only when they are news.

A left member's stale alive cannot resurrect it: memberlist keeps the
node as *left* and ignores alives that are not strictly newer, so only a
real restart (higher incarnation) brings it back.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from consul_tw._logging import HcLogger
from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.messages import NodeState
from consul_tw.gossip.memberlist.state import Node, version_byte
from consul_tw.gossip.members import Member, MemberStatus
from consul_tw.gossip.serf.codec import decode_tags
from consul_tw.gossip.serf.events import member_event_text
from consul_tw.gossip.serf.messages import JoinIntent, LeaveIntent
from consul_tw.gossip.serf.pool import EventType

if TYPE_CHECKING:
    from consul_tw.gossip.serf.serf import Serf


class IntentType(enum.Enum):
    JOIN = "join"
    LEAVE = "leave"


@attrs.define
class RecentIntent:
    kind: IntentType
    ltime: int
    wall_time: float


@attrs.define(eq=False)
class MemberState:
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    vsn: bytes
    status: MemberStatus
    #: Lamport time of the last join/leave intent applied to this member.
    status_ltime: int = 0
    #: When it failed or left (clock seconds), for reaping.
    leave_time: float = 0.0

    def member(self) -> Member:
        v = self.vsn
        # mypy misreads Member's ``converter=dict`` on tags, hence the ignore.
        return Member(
            name=self.name,
            addr=self.addr,
            port=self.port,
            tags=self.tags,  # type: ignore[arg-type]
            status=self.status,
            protocol_min=version_byte(v, 0),
            protocol_max=version_byte(v, 1),
            protocol_cur=version_byte(v, 2),
            delegate_min=version_byte(v, 3),
            delegate_max=version_byte(v, 4),
            delegate_cur=version_byte(v, 5),
        )


def node_tags(node: Node, logger: HcLogger) -> dict[str, str]:
    """A node's tags; undecodable meta is logged and read as no tags, as Serf does."""
    try:
        return decode_tags(node.meta)
    except WireError as e:
        logger.error(f"serf: Failed to decode tags: {e}")
        return {}


@attrs.define(eq=False)
class MemberTable:
    serf: Serf
    members: dict[str, MemberState] = attrs.field(factory=dict)
    failed: list[MemberState] = attrs.field(factory=list)
    left: list[MemberState] = attrs.field(factory=list)
    recent_intents: dict[str, RecentIntent] = attrs.field(factory=dict)

    def get(self, name: str) -> MemberState | None:
        return self.members.get(name)

    def _emit(self, kind: EventType, m: MemberState, forced: bool = False) -> None:
        member = m.member()
        self.serf.events.member(kind, member, member_event_text(kind, member, forced))

    def _forget(self, name: str) -> None:
        self.failed = [m for m in self.failed if m.name != name]
        self.left = [m for m in self.left if m.name != name]

    def has_alive_others(self) -> bool:
        return any(
            m.status is MemberStatus.ALIVE and name != self.serf.name
            for name, m in self.members.items()
        )

    # -- memberlist events ------------------------------------------------

    def node_joined(self, node: Node) -> None:
        member = self.members.get(node.name)
        old_status = MemberStatus.NONE
        if member is None:
            member = MemberState(
                node.name,
                node.addr,
                node.port,
                node_tags(node, self.serf.logger),
                node.vsn,
                MemberStatus.ALIVE,
            )
            intent = self.recent_intents.get(node.name)
            if intent is not None and intent.kind is IntentType.JOIN:
                member.status_ltime = intent.ltime
            if intent is not None and intent.kind is IntentType.LEAVE:
                member.status = MemberStatus.LEAVING
                member.status_ltime = intent.ltime
            self.members[node.name] = member
        else:
            old_status = member.status
            member.status = MemberStatus.ALIVE
            member.leave_time = 0.0
            member.addr, member.port = node.addr, node.port
            member.tags = node_tags(node, self.serf.logger)
        member.vsn = node.vsn
        if old_status in (MemberStatus.FAILED, MemberStatus.LEFT):
            self._forget(member.name)
        self._emit(EventType.MEMBER_JOIN, member)

    def node_left(self, node: Node) -> None:
        member = self.members.get(node.name)
        if member is None:
            return
        if member.status is MemberStatus.LEAVING or (
            member.status is MemberStatus.ALIVE and node.state == NodeState.LEFT
        ):
            member.status = MemberStatus.LEFT
            self.left.append(member)
        elif member.status is MemberStatus.ALIVE:
            member.status = MemberStatus.FAILED
            self.failed.append(member)
        else:
            self.serf.logger.warn(f"serf: Bad state when leave: {int(member.status)}")
            return
        member.leave_time = self.serf.clock.seconds()
        kind = (
            EventType.MEMBER_LEAVE
            if member.status is MemberStatus.LEFT
            else EventType.MEMBER_FAILED
        )
        self._emit(kind, member)

    def node_updated(self, node: Node) -> None:
        member = self.members.get(node.name)
        if member is None:
            return
        member.addr, member.port = node.addr, node.port
        member.tags = node_tags(node, self.serf.logger)
        member.vsn = node.vsn
        self._emit(EventType.MEMBER_UPDATE, member)

    # -- intents ----------------------------------------------------------

    def _upsert_intent(self, name: str, kind: IntentType, ltime: int) -> bool:
        existing = self.recent_intents.get(name)
        if existing is None or ltime > existing.ltime:
            self.recent_intents[name] = RecentIntent(kind, ltime, self.serf.clock.seconds())
            return True
        return False

    def leave_intent(self, msg: LeaveIntent) -> bool:
        """Apply a leave intent; True when it is news to re-gossip."""
        serf = self.serf
        serf.member_clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, IntentType.LEAVE, msg.ltime)
        if msg.ltime <= member.status_ltime:
            return False
        if msg.node == serf.name and serf.is_alive:
            serf.logger.debug("serf: Refuting an older leave intent")
            serf.broadcast_join(serf.member_clock.time())
            return False
        # The time is recorded whatever the status (later serf's fix): a
        # second leave intent for a leaving/left member is then old news
        # instead of being re-gossiped forever.
        member.status_ltime = msg.ltime
        if member.status is MemberStatus.ALIVE:
            member.status = MemberStatus.LEAVING
        elif member.status is MemberStatus.FAILED:
            member.status = MemberStatus.LEFT
            self.failed = [m for m in self.failed if m is not member]
            self.left.append(member)
            self._emit(EventType.MEMBER_LEAVE, member, forced=True)
        elif member.status not in (MemberStatus.LEAVING, MemberStatus.LEFT):
            return False
        if msg.prune:
            self.prune(member)
        return True

    def join_intent(self, msg: JoinIntent) -> bool:
        """Apply a join intent; True when it is news to re-gossip."""
        self.serf.member_clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, IntentType.JOIN, msg.ltime)
        if msg.ltime <= member.status_ltime:
            return False
        member.status_ltime = msg.ltime
        if member.status is MemberStatus.LEAVING:
            member.status = MemberStatus.ALIVE
        return True

    # -- removal ----------------------------------------------------------

    def prune(self, member: MemberState) -> None:
        """Erase a member now, or once a leaving one has had time to finish leaving."""
        cfg = self.serf.config
        if member.status is MemberStatus.LEAVING:
            self.serf.later(
                cfg.broadcast_timeout + cfg.leave_propagate_delay, self._erase_pruned, member
            )
        else:
            self._erase_pruned(member)

    def _erase_pruned(self, member: MemberState) -> None:
        if self.members.get(member.name) is not member:
            return
        self._forget(member.name)
        self._erase(member, forced=True)

    def _erase(self, member: MemberState, forced: bool = False) -> None:
        del self.members[member.name]
        self._emit(EventType.MEMBER_REAP, member, forced=forced)

    def reap(self, now: float) -> None:
        """Forget failed members past the reconnect timeout, left ones past the tombstone's."""
        cfg = self.serf.config
        self.failed = self._reap(self.failed, now, cfg.reconnect_timeout)
        self.left = self._reap(self.left, now, cfg.tombstone_timeout)
        for name, intent in list(self.recent_intents.items()):
            if now - intent.wall_time > cfg.recent_intent_timeout:
                del self.recent_intents[name]

    def _reap(self, old: list[MemberState], now: float, timeout: float) -> list[MemberState]:
        keep = []
        for member in old:
            if now - member.leave_time <= timeout:
                keep.append(member)
            elif self.members.get(member.name) is member:
                self._erase(member)
        return keep

    # -- push/pull --------------------------------------------------------

    def status_ltimes(self) -> dict[str, int]:
        return {name: m.status_ltime for name, m in self.members.items()}

    def left_names(self) -> list[str]:
        return [m.name for m in self.left]

    def merge(self, status_ltimes: dict[str, int], left_members: tuple[str, ...]) -> None:
        """A peer's member state: left members first (one past their time), then the rest."""
        for name in left_members:
            self.leave_intent(LeaveIntent(ltime=status_ltimes.get(name, 0) + 1, node=name))
        left = set(left_members)
        for name, ltime in status_ltimes.items():
            if name not in left:
                self.join_intent(JoinIntent(ltime=ltime, node=name))
