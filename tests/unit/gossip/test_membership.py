"""A gossip pool's membership: local member, events, graceful leave, stats."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.gossip.members import Member, MemberStatus, client_tags
from consul_tw.gossip.serf import EventType, MemberEvent, Membership


def pool(clock: Clock) -> Membership:
    local = Member(
        name="n1", addr="127.0.0.1", port=8301, tags=client_tags(datacenter="dc1", node_id="id")
    )
    return Membership(local=local, clock=clock, logger=HcLogger("agent.client.serf.lan"))


class MembershipTests(SynchronousTestCase):
    def test_join_and_leave_events(self) -> None:
        clock = Clock()
        members = pool(clock)
        events: list[MemberEvent] = []
        members.subscribe(events.append)
        members.start()
        self.assertEqual([m.status for m in members.members()], [MemberStatus.ALIVE])
        left = members.leave()
        self.successResultOf(left)  # alone in the pool: nothing to wait for
        self.assertEqual([e.type for e in events], [EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE])
        self.assertEqual(members.local_member().status, MemberStatus.LEFT)
        self.assertEqual(members.stats()["left"], "1")

    def test_leave_waits_to_propagate_when_others_are_alive(self) -> None:
        clock = Clock()
        members = pool(clock)
        members.start()
        other = attrs.evolve(members.local, name="n2")
        members._members["n2"] = other
        left = members.leave()
        self.assertEqual(members.local_member().status, MemberStatus.LEAVING)
        self.assertNoResult(left)
        clock.advance(members.leave_propagate_delay)
        self.successResultOf(left)
        self.assertEqual(members.local_member().status, MemberStatus.LEFT)

    def test_serf_event_names(self) -> None:
        self.assertEqual(EventType.MEMBER_JOIN.serf_name, "EventMemberJoin")
        self.assertEqual(EventType.MEMBER_FAILED.serf_name, "EventMemberFailed")
