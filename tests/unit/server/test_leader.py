"""LeaderDuties: Serf members reconciled into the catalog while leading."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.catalog.commands import Command, Deregister, Register
from consul_tw.catalog.store import StateStore
from consul_tw.catalog.structs import CRITICAL, PASSING
from consul_tw.gossip.members import Member, MemberStatus, client_tags, server_tags
from consul_tw.gossip.serf import EventType, MemberEvent, Membership
from consul_tw.server.leader import LeaderDuties


def server(name: str, **extra: Any) -> Member:
    tags = server_tags(
        datacenter="dc1",
        node_id=f"id-{name}",
        server_port=8300,
        wan_port=8302,
        bootstrap=False,
        wan=False,
    )
    return Member(name=name, addr="10.0.0.1", port=8301, tags=tags, **extra)


class LeaderDutiesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = StateStore()
        self.index = 10
        self.written: list[Command] = []
        self.lan = Membership(local=server("s1"), clock=Clock(), logger=HcLogger("serf"))
        self.lan.start()
        self.duties = LeaderDuties(
            node_name="s1",
            datacenter="dc1",
            store=self.store,
            lan=self.lan,
            write=self.write,
            server_logger=HcLogger("agent.server"),
            leader_logger=HcLogger("agent.leader"),
        )

    def write(self, command: Command) -> Deferred[Any]:
        self.written.append(command)
        self.index += 1
        if isinstance(command, Register):
            self.store.register(self.index, command)
        elif isinstance(command, Deregister):
            self.store.deregister_node(self.index, command.node)
        return succeed(True)

    def test_nothing_happens_while_follower(self) -> None:
        self.duties.member_event(MemberEvent(EventType.MEMBER_JOIN, (server("s2"),)))
        self.assertEqual(self.written, [])

    def test_leadership_registers_servers_with_serf_health_and_consul_service(self) -> None:
        self.duties.leadership_changed(True)
        (register,) = self.written
        assert isinstance(register, Register)
        self.assertEqual(
            [(c.check_id, c.status) for c in register.checks], [("serfHealth", PASSING)]
        )
        self.assertEqual(
            register.service and (register.service.id, register.service.port), ("consul", 8300)
        )
        self.assertTrue(register.skip_node_update)
        # Reconciling again changes nothing: already registered and passing.
        self.duties.leadership_changed(True)
        self.assertEqual(len(self.written), 1)

    def test_client_gets_no_consul_service(self) -> None:
        self.duties.leadership_changed(True)
        client = Member(
            name="c1",
            addr="10.0.0.9",
            port=8301,
            tags=client_tags(datacenter="dc1", node_id="id-c1"),
        )
        self.duties.member_event(MemberEvent(EventType.MEMBER_JOIN, (client,)))
        register = self.written[-1]
        assert isinstance(register, Register)
        self.assertIsNone(register.service)

    def test_failed_member_stays_with_critical_check(self) -> None:
        self.duties.leadership_changed(True)
        self.duties.member_event(MemberEvent(EventType.MEMBER_JOIN, (server("s2"),)))
        failed = attrs.evolve(server("s2"), status=MemberStatus.FAILED)
        self.duties.member_event(MemberEvent(EventType.MEMBER_FAILED, (failed,)))
        checks = {c.check_id: (c.status, c.output) for c in self.store.node_checks("s2")}
        self.assertEqual(checks["serfHealth"], (CRITICAL, "Agent not live or unreachable"))
        self.assertIsNotNone(self.store.get_node("s2"))

    def test_left_member_is_deregistered_but_not_self(self) -> None:
        self.duties.leadership_changed(True)
        self.duties.member_event(MemberEvent(EventType.MEMBER_JOIN, (server("s2"),)))
        left = attrs.evolve(server("s2"), status=MemberStatus.LEFT)
        self.duties.member_event(MemberEvent(EventType.MEMBER_LEAVE, (left,)))
        self.assertIsNone(self.store.get_node("s2"))
        me = attrs.evolve(server("s1"), status=MemberStatus.LEFT)
        self.duties.member_event(MemberEvent(EventType.MEMBER_LEAVE, (me,)))
        self.assertIsNotNone(self.store.get_node("s1"))

    def test_a_bad_port_tag_does_not_break_reconciliation(self) -> None:
        """A server whose tags do not parse is not a Consul server (Consul ignores it)."""
        self.duties.leadership_changed(True)
        odd = server("s3")
        odd = attrs.evolve(odd, tags={**odd.tags, "port": "not-a-port"})
        self.duties.member_event(MemberEvent(EventType.MEMBER_JOIN, (odd, server("s4"))))
        self.assertIsNone(self.store.get_node("s3"))
        self.assertEqual([s.port for s in self.store.node_services("s4")], [8300])

    def test_plain_serf_members_and_other_datacenters_are_not_reconciled(self) -> None:
        self.duties.leadership_changed(True)
        written = len(self.written)
        plain = Member(name="web", addr="10.0.0.7", port=7946, tags={"role": "web"})
        elsewhere = Member(
            name="c9",
            addr="10.0.0.8",
            port=8301,
            tags=client_tags(datacenter="dc2", node_id="id-c9"),
        )
        self.duties.member_event(MemberEvent(EventType.MEMBER_JOIN, (plain, elsewhere)))
        self.assertEqual(len(self.written), written)
        self.assertIsNone(self.store.get_node("web"))

    def test_write_failures_are_logged_not_raised(self) -> None:
        self.duties.write = lambda command: fail(RuntimeError("No cluster leader"))
        self.duties.leadership_changed(True)
