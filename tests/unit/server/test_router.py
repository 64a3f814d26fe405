"""The follower's router: hold while no leader is known, retry what never left."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.raft.core import RaftStatus
from consul_tw.server.router import LeaderRouter, NoClusterLeader, RequestNotSent


@attrs.define
class FakeRaft:
    state: str = "Follower"
    leader_address: str | None = None

    def describe(self) -> RaftStatus:
        return RaftStatus(
            state=self.state,
            term=2,
            node_id="me",
            address="10.0.0.1:8300",
            leader_id=None,
            leader_address=self.leader_address,
            last_contact=None,
            commit_index=0,
            applied_index=0,
            last_log_index=0,
            last_log_term=0,
            configuration_index=0,
            voters=(),
        )

    def leader_hint(self) -> tuple[bool, str | None]:
        return self.state == "Leader", self.leader_address


class RouterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.raft = FakeRaft()
        self.router = LeaderRouter(self.raft, self.clock, hold_timeout=7.0)
        self.forwarded: list[tuple[str, int]] = []

    def forward(self, host: str, port: int) -> Deferred[Any]:
        self.forwarded.append((host, port))
        if (host, port) == ("10.0.0.2", 8300):
            return fail(RequestNotSent("dial tcp 10.0.0.2:8300: connect: connection refused"))
        return succeed("done")

    def test_leader_runs_locally(self) -> None:
        self.raft.state = "Leader"
        result = self.router.route(lambda: succeed("local"), self.forward)
        self.assertEqual(self.successResultOf(result), "local")
        self.assertEqual(self.forwarded, [])

    def test_held_until_a_leader_is_known(self) -> None:
        result = self.router.route(lambda: succeed("local"), self.forward)
        self.clock.advance(3)
        self.assertNoResult(result)
        self.raft.leader_address = "10.0.0.3:8300"
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(result), "done")

    def test_no_leader_after_the_hold_timeout(self) -> None:
        result = self.router.route(lambda: succeed("local"), self.forward)
        self.clock.pump([0.5] * 15)
        self.failureResultOf(result, NoClusterLeader)

    def test_a_dead_leader_is_retried_until_a_new_one_answers(self) -> None:
        self.raft.leader_address = "10.0.0.2:8300"  # just killed, not noticed yet
        result = self.router.route(lambda: succeed("local"), self.forward)
        self.clock.pump([0.05] * 10)
        self.assertNoResult(result)
        self.raft.leader_address = "10.0.0.3:8300"
        self.clock.pump([0.05] * 2)
        self.assertEqual(self.successResultOf(result), "done")
        self.assertGreater(self.forwarded.count(("10.0.0.2", 8300)), 5)

    def test_other_failures_are_not_retried(self) -> None:
        self.raft.leader_address = "10.0.0.3:8300"
        result = self.router.route(
            lambda: succeed("local"), lambda host, port: fail(ValueError("lost mid-call"))
        )
        self.failureResultOf(result, ValueError)
