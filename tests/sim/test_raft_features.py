"""
The multi-server Raft features, one at a time, on the deterministic simulator:
the leader lease and read barriers, check-quorum, pre-vote, leadership
transfer, configuration changes and InstallSnapshot.

:mod:`tests.sim.test_raft_sim` throws random faults at the cluster and holds
it to Raft's safety properties; these tests pin down what each feature
promises, so a regression names the feature it broke.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.raft.core import NotLeader, TransferFailed
from consul_tw.raft.messages import AppendEntries, Message
from consul_tw.testing.raft_sim import SIM_TIMINGS, RaftCluster

LEASE = SIM_TIMINGS.leader_lease_timeout


def outcome(deferred: Deferred[Any]) -> list[Any]:
    """Collect a Deferred's result (or Failure) without consuming errors silently."""
    box: list[Any] = []
    deferred.addBoth(box.append)
    return box


class LeaseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = RaftCluster(size=3, seed=7)
        self.leader = self.cluster.wait_for_leader()
        self.cluster.run(0.5)  # the no-op committed, heartbeats answered

    def test_default_read_within_the_lease_needs_no_round(self) -> None:
        sent: list[Message] = []
        self.cluster.network.tap = lambda src, dst, msg: sent.append(msg)
        node = self.cluster.nodes[self.leader]
        read = outcome(node.read_barrier(consistent=False))
        self.cluster.run(0)
        self.assertEqual(len(read), 1)
        self.assertIsInstance(read[0], int)
        self.assertEqual(sent, [], "a lease read sends nothing")

    def test_consistent_read_waits_for_a_quorum_round(self) -> None:
        sent: list[Message] = []
        self.cluster.network.tap = lambda src, dst, msg: sent.append(msg)
        node = self.cluster.nodes[self.leader]
        read = outcome(node.read_barrier(consistent=True))
        self.cluster.run(0)
        self.assertEqual(read, [], "not before followers answered")
        self.assertTrue(any(isinstance(m, AppendEntries) for m in sent))
        self.cluster.run(0.05)
        self.assertEqual(len(read), 1)
        self.assertIsInstance(read[0], int)

    def test_cut_off_leader_serves_no_read_after_its_lease(self) -> None:
        old = self.leader
        node = self.cluster.nodes[old]
        self.cluster.isolate(old)
        self.cluster.run(LEASE + 0.01)
        default = outcome(node.read_barrier(consistent=False))
        consistent = outcome(node.read_barrier(consistent=True))
        # Check-quorum: within two lease periods the old leader steps down,
        # and whatever it was asked fails; nothing is ever answered.
        self.cluster.run(2 * LEASE)
        self.assertNotEqual(node.describe().state, "Leader")
        for result in (default, consistent):
            self.assertEqual(len(result), 1)
            self.assertIsInstance(result[0], Failure)
            self.assertTrue(result[0].check(NotLeader))

    def test_never_two_leases_at_once(self) -> None:
        """Across a partition and its healing, at most one server holds a valid lease."""
        old = self.leader
        self.cluster.isolate(old)
        for _ in range(400):
            self.cluster.run(0.01)
            now = self.cluster.clock.seconds()
            holders = [
                node_id
                for node_id in self.cluster.live()
                if (status := self.cluster.nodes[node_id].describe()).state == "Leader"
                and status.lease_expires is not None
                and status.lease_expires > now
            ]
            self.assertLessEqual(len(holders), 1, f"{holders} at {now}")
        new = self.cluster.leader()
        self.assertIsNotNone(new)
        self.assertNotEqual(new, old)
        self.cluster.heal()
        self.cluster.converge()


class PreVoteTests(SynchronousTestCase):
    def test_returning_server_does_not_disrupt_the_leader(self) -> None:
        cluster = RaftCluster(size=3, seed=11)
        leader = cluster.wait_for_leader()
        cluster.run(0.5)
        term = cluster.nodes[leader].describe().term
        follower = next(n for n in cluster.node_ids if n != leader)
        cluster.isolate(follower)
        cluster.run(10)  # many election timeouts: pre-votes only, no new term
        self.assertEqual(cluster.nodes[follower].describe().term, term)
        cluster.heal()
        cluster.run(3)
        self.assertEqual(cluster.leader(), leader)
        self.assertEqual({cluster.nodes[n].describe().term for n in cluster.node_ids}, {term})


class TransferTests(SynchronousTestCase):
    def test_leadership_moves_to_a_caught_up_peer(self) -> None:
        cluster = RaftCluster(size=3, seed=3)
        leader = cluster.wait_for_leader()
        for _ in range(5):
            cluster.submit()
        cluster.run(0.5)
        done = outcome(cluster.nodes[leader].transfer_leadership())
        cluster.run(0.5)
        self.assertEqual(done, [None])
        self.assertNotIn(cluster.leader(), (None, leader))
        cluster.converge()

    def test_lone_server_cannot_transfer(self) -> None:
        cluster = RaftCluster(size=1, seed=3)
        leader = cluster.wait_for_leader()
        done = outcome(cluster.nodes[leader].transfer_leadership())
        cluster.run(0.1)
        self.assertTrue(done[0].check(TransferFailed))


class ConfigurationTests(SynchronousTestCase):
    def test_remove_and_add_back_a_server(self) -> None:
        cluster = RaftCluster(size=3, seed=5)
        leader = cluster.wait_for_leader()
        cluster.run(0.5)
        other = next(n for n in cluster.node_ids if n != leader)
        removed = outcome(cluster.nodes[leader].remove_server(other))
        cluster.run(0.5)
        self.assertEqual(len(removed), 1)
        self.assertNotIsInstance(removed[0], Failure)
        voters = {s.id for s in cluster.nodes[leader].describe().voters}
        self.assertEqual(voters, set(cluster.node_ids) - {other})
        # The removed server learned it is out, so it does not campaign.
        self.assertNotIn(other, {s.id for s in cluster.nodes[other].describe().voters})
        cluster.run(5)
        self.assertEqual(cluster.leader(), leader)
        self.assertEqual(cluster.nodes[other].describe().state, "Follower")
        # Writes commit with the two remaining voters.
        write = cluster.submit()
        cluster.run(0.2)
        assert write is not None
        self.assertEqual(write.outcome, "acknowledged")
        server = next(s for s in cluster.servers if s.id == other)
        added = outcome(cluster.nodes[leader].add_voter(server))
        cluster.run(0.5)
        self.assertEqual(len(added), 1)
        self.assertEqual(len(cluster.nodes[leader].describe().voters), 3)
        cluster.converge()

    def test_one_change_at_a_time(self) -> None:
        cluster = RaftCluster(size=3, seed=5)
        leader = cluster.wait_for_leader()
        cluster.run(0.5)
        first, second = (n for n in cluster.node_ids if n != leader)
        node = cluster.nodes[leader]
        one = outcome(node.remove_server(first))
        two = outcome(node.remove_server(second))
        cluster.run(0.5)
        self.assertNotIsInstance(one[0], Failure)
        self.assertIn("already in progress", two[0].getErrorMessage())


class SnapshotTests(SynchronousTestCase):
    def test_far_behind_follower_catches_up_by_snapshot(self) -> None:
        cluster = RaftCluster(size=3, seed=9)
        leader = cluster.wait_for_leader()
        lagging = next(n for n in cluster.node_ids if n != leader)
        cluster.crash(lagging)
        for _ in range(150):  # many snapshots (every 40 entries, 10 kept behind)
            cluster.submit()
            cluster.run(0.01)
        leader_log = cluster.nodes[leader].core.log
        self.assertGreater(leader_log.snapshot_index, 100, "the leader compacted its log")
        installs: list[Message] = []
        cluster.network.tap = lambda src, dst, msg: (
            installs.append(msg) if type(msg).__name__ == "InstallSnapshot" else None
        )
        cluster.restart(lagging)
        cluster.converge()
        self.assertTrue(installs, "the follower was sent a snapshot")
        self.assertEqual(cluster.fsm(lagging).applied[-150:], cluster.fsm(leader).applied[-150:])
