"""The leader's Raft-membership reconciler and -bootstrap-expect, on fakes."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.gossip.members import Member, MemberStatus, server_tags
from consul_tw.gossip.serf import EventType, MemberEvent
from consul_tw.raft.core import RaftStatus
from consul_tw.raft.messages import Server
from consul_tw.server.bootstrap import BootstrapExpect
from consul_tw.server.raft_peers import RaftPeerReconciler


def server(n: int, status: MemberStatus = MemberStatus.ALIVE, **extra: str) -> Member:
    tags = server_tags(
        datacenter="dc1",
        node_id=f"id{n}",
        server_port=8300,
        wan_port=-1,
        bootstrap=False,
        wan=False,
    )
    return Member(
        name=f"s{n}", addr=f"10.0.0.{n}", port=8301, tags={**tags, **extra}, status=status
    )


def raft_server(n: int) -> Server:
    return Server(id=f"id{n}", address=f"10.0.0.{n}:8300")


@attrs.define
class FakeLan:
    members_: list[Member]
    subscribers: list[Any] = attrs.field(factory=list)

    def members(self) -> list[Member]:
        return list(self.members_)

    def subscribe(self, callback: Any) -> None:
        self.subscribers.append(callback)

    def set(self, *members: Member) -> None:
        self.members_ = list(members)
        for callback in self.subscribers:
            callback(MemberEvent(EventType.MEMBER_UPDATE, tuple(members)))


@attrs.define
class FakeRaft:
    voters: list[Server]
    changes: list[tuple[str, str]] = attrs.field(factory=list)
    bootstrapped: tuple[Server, ...] | None = None
    last_index: int = 0
    term: int = 0

    def describe(self) -> RaftStatus:
        return RaftStatus(
            state="Leader",
            term=self.term,
            node_id="id1",
            address="10.0.0.1:8300",
            leader_id="id1",
            leader_address="10.0.0.1:8300",
            last_contact=None,
            commit_index=0,
            applied_index=0,
            last_log_index=self.last_index,
            last_log_term=0,
            configuration_index=0,
            voters=tuple(self.voters),
        )

    def add_voter(self, s: Server) -> Deferred[Any]:
        self.changes.append(("add", s.id))
        self.voters = [v for v in self.voters if v.id != s.id] + [s]
        return succeed(None)

    def remove_server(self, server_id: str) -> Deferred[Any]:
        self.changes.append(("remove", server_id))
        self.voters = [v for v in self.voters if v.id != server_id]
        return succeed(None)

    def bootstrap(self, servers: tuple[Server, ...]) -> bool:
        self.bootstrapped = servers
        return True


class ReconcilerTests(SynchronousTestCase):
    def make(self, members: list[Member], voters: list[int]) -> tuple[FakeLan, FakeRaft]:
        lan = FakeLan(members)
        raft = FakeRaft([raft_server(n) for n in voters])
        reconciler = RaftPeerReconciler(
            raft=raft,
            lan=lan,
            datacenter="dc1",
            clock=Clock(),
            logger=HcLogger("t"),  # type: ignore[arg-type]
        )
        reconciler.leadership_changed(True)
        return lan, raft

    def test_alive_servers_are_added_one_at_a_time(self) -> None:
        _, raft = self.make([server(1), server(2), server(3)], voters=[1])
        self.assertEqual(raft.changes, [("add", "id2"), ("add", "id3")])

    def test_clients_and_other_datacenters_are_not_voters(self) -> None:
        other_dc = server(4, dc="dc2")
        client = attrs.evolve(server(5), tags={"role": "node", "dc": "dc1", "id": "id5"})
        _, raft = self.make([server(1), other_dc, client], voters=[1])
        self.assertEqual(raft.changes, [])

    def test_left_servers_are_removed_failed_ones_kept(self) -> None:
        lan, raft = self.make([server(1), server(2), server(3)], voters=[1, 2, 3])
        lan.set(server(1), server(2, MemberStatus.FAILED), server(3, MemberStatus.LEFT))
        self.assertEqual(raft.changes, [("remove", "id3")])

    def test_a_new_server_replaces_a_failed_one(self) -> None:
        lan, raft = self.make([server(1), server(2), server(3)], voters=[1, 2, 3])
        lan.set(server(1), server(2, MemberStatus.FAILED), server(3))
        self.assertEqual(raft.changes, [])
        lan.set(server(1), server(2, MemberStatus.FAILED), server(3), server(4))
        self.assertEqual(raft.changes, [("add", "id4"), ("remove", "id2")])

    def test_cleanup_never_removes_a_majority(self) -> None:
        lan, raft = self.make([server(1), server(2), server(3)], voters=[1, 2, 3])
        failed = [server(2, MemberStatus.FAILED), server(3, MemberStatus.FAILED)]
        lan.set(server(1), *failed, server(4))
        # 4 voters with 2 failed: removing both would leave 2 of 4 -- refused.
        self.assertEqual(raft.changes, [("add", "id4")])

    def test_a_refused_change_is_retried(self) -> None:
        clock = Clock()
        lan = FakeLan([server(1), server(2)])
        calls: list[str] = []

        class BusyOnce(FakeRaft):
            def add_voter(self, s: Server) -> Deferred[Any]:
                calls.append(s.id)
                if len(calls) == 1:
                    return fail(RuntimeError("configuration change already in progress"))
                return super().add_voter(s)

        raft = BusyOnce([raft_server(1)])
        reconciler = RaftPeerReconciler(
            raft=raft,
            lan=lan,
            datacenter="dc1",
            clock=clock,
            logger=HcLogger("t"),  # type: ignore[arg-type]
        )
        reconciler.leadership_changed(True)
        self.assertEqual(calls, ["id2"])
        clock.advance(1.0)
        self.assertEqual(calls, ["id2", "id2"])
        self.assertEqual([v.id for v in raft.voters], ["id1", "id2"])


@attrs.define
class FakeRpc:
    answers: dict[str, Any]
    calls: list[str] = attrs.field(factory=list)

    def call(
        self, host: str, port: int, method: str, args: Any = None, *, timeout: Any = None
    ) -> Deferred[Any]:
        self.calls.append(host)
        return succeed(self.answers.get(host, {"LastIndex": 0}))


class BootstrapExpectTests(SynchronousTestCase):
    def test_bootstraps_all_expected_servers_once_seen(self) -> None:
        lan = FakeLan([server(1, expect="3")])
        raft = FakeRaft([])
        expect = BootstrapExpect(
            raft=raft,
            lan=lan,
            rpc=FakeRpc({}),
            expect=3,
            datacenter="dc1",  # type: ignore[arg-type]
            logger=HcLogger("t"),
        )
        expect.start()
        self.assertIsNone(raft.bootstrapped)
        lan.set(server(1, expect="3"), server(2, expect="3"), server(3, expect="3"))
        self.assertEqual(raft.bootstrapped, (raft_server(1), raft_server(2), raft_server(3)))

    def test_never_bootstraps_beside_existing_raft_state(self) -> None:
        members = [server(n, expect="3") for n in (1, 2, 3)]
        lan = FakeLan(members)
        raft = FakeRaft([])
        rpc = FakeRpc({"10.0.0.2": {"LastIndex": 42}})
        expect = BootstrapExpect(
            raft=raft,
            lan=lan,
            rpc=rpc,
            expect=3,
            datacenter="dc1",  # type: ignore[arg-type]
            logger=HcLogger("t"),
        )
        expect.start()
        self.assertIsNone(raft.bootstrapped)
        self.assertTrue(expect.done)

    def test_own_raft_state_disables_it(self) -> None:
        raft = FakeRaft([], last_index=5)
        rpc = FakeRpc({})
        expect = BootstrapExpect(
            raft=raft,
            lan=FakeLan([server(1)]),
            rpc=rpc,
            expect=1,  # type: ignore[arg-type]
            datacenter="dc1",
            logger=HcLogger("t"),
        )
        expect.start()
        self.assertEqual((raft.bootstrapped, rpc.calls), (None, []))
