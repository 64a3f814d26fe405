"""
The Raft role machine, driven through RaftNode on a task.Clock.

No real time passes: the clock is advanced by hand, messages are delivered
by the test (or by a tiny in-memory network), and after ``stop()`` no
delayed call may be left behind.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.raft.core import NotLeader, RaftShutdown
from consul_tw.raft.effects import PersistHardState, Send
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    LogEntry,
    Message,
    RequestVote,
    RequestVoteResponse,
    Server,
)
from consul_tw.raft.node import RaftNode
from consul_tw.raft.storage.memory import MemoryLogStore, MemoryStableStore
from consul_tw.raft.timings import RaftTimings

TIMINGS = RaftTimings.dev()


class RecordingFSM:
    def __init__(self) -> None:
        self.applied: list[tuple[int, bytes]] = []

    def apply(self, index: int, data: bytes) -> object:
        if data == b"boom":
            raise ValueError("rejected by the FSM")
        self.applied.append((index, data))
        return f"ok {index}"


class RaftTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def make_node(
        self, node_id: str = "n1", sent: list[tuple[str, Message]] | None = None, seed: int = 1
    ) -> tuple[RaftNode, RecordingFSM, MemoryLogStore, MemoryStableStore]:
        fsm, log_store, stable = RecordingFSM(), MemoryLogStore(), MemoryStableStore()
        node = RaftNode.create(
            node_id=node_id,
            address=f"{node_id}:8300",
            timings=TIMINGS,
            clock=self.clock,
            fsm=fsm,
            log_store=log_store,
            stable_store=stable,
            logger=HcLogger("agent.server.raft"),
            send=(lambda peer, msg: sent.append((peer, msg))) if sent is not None else None,
            rng=random.Random(seed),
        )
        if sent is None:
            node.send = lambda peer, msg: None
        return node, fsm, log_store, stable

    def messages(self) -> list[str]:
        return [e["hclog_message"] for e in self.events if "hclog_message" in e]

    def assert_no_timers(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SingleVoterTests(RaftTestCase):
    def elect(self) -> tuple[RaftNode, RecordingFSM, MemoryLogStore, MemoryStableStore]:
        node, fsm, log_store, stable = self.make_node()
        self.assertTrue(node.bootstrap((Server(id="n1", address="n1:8300"),)))
        node.start()
        self.assertEqual(node.describe().state, "Follower")
        self.clock.advance(2 * TIMINGS.heartbeat_timeout)
        return node, fsm, log_store, stable

    def test_elects_itself_in_term_two(self) -> None:
        """Bootstrap writes term 1; the first election is term 2, as in hashicorp/raft."""
        node, _, log_store, stable = self.elect()
        status = node.describe()
        self.assertEqual((status.state, status.term, status.leader_id), ("Leader", 2, "n1"))
        self.assertEqual(stable.load_hard_state(), (2, "n1"))
        # Index 1 is the configuration, index 2 the leader's no-op, committed at once.
        self.assertEqual(
            [e.type for e in log_store.entries()], [EntryType.CONFIGURATION, EntryType.NOOP]
        )
        self.assertEqual(status.commit_index, 2)

    def test_logs_the_tutorial_election_story(self) -> None:
        self.elect()
        self.assertEqual(
            self.messages(),
            [
                "initial configuration",
                "entering follower state",
                "heartbeat timeout reached, starting election",
                "entering candidate state",
                "votes",
                "vote granted",
                "election won",
                "entering leader state",
            ],
        )

    def test_apply_fires_one_turn_after_commit(self) -> None:
        node, fsm, _, _ = self.elect()
        result = node.apply(b"cmd")
        self.assertEqual(fsm.applied, [(3, b"cmd")])
        self.assertNoResult(result)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(result), "ok 3")

    def test_fsm_error_reaches_the_writer(self) -> None:
        node, _, _, _ = self.elect()
        result = node.apply(b"boom")
        self.clock.advance(0)
        self.assertEqual(
            self.failureResultOf(result, ValueError).getErrorMessage(), "rejected by the FSM"
        )

    def test_follower_refuses_writes(self) -> None:
        node, _, _, _ = self.make_node()
        node.bootstrap((Server(id="n1", address="n1:8300"),))
        node.start()
        self.failureResultOf(node.apply(b"x"), NotLeader)
        node.stop()
        self.assert_no_timers()

    def test_step_down_on_higher_term(self) -> None:
        node, _, _, stable = self.elect()
        node.receive(
            AppendEntries(
                term=7, leader_id="n9", leader_address="n9:8300", prev_log_index=0, prev_log_term=0
            )
        )
        status = node.describe()
        self.assertEqual(
            (status.state, status.term, status.leader_address), ("Follower", 7, "n9:8300")
        )
        self.assertEqual(stable.load_hard_state(), (7, None))
        self.failureResultOf(node.apply(b"x"), NotLeader)

    def test_step_down_fails_pending_writes(self) -> None:
        sent: list[tuple[str, Message]] = []
        node, _, _, _ = self.make_node(sent=sent)
        voters = tuple(Server(id=n, address=f"{n}:8300") for n in ("n1", "n2", "n3"))
        node.bootstrap(voters)
        node.start()
        self.clock.advance(2 * TIMINGS.heartbeat_timeout)
        node.receive(RequestVoteResponse(term=2, voter_id="n2", granted=True, pre_vote=True))
        node.receive(RequestVoteResponse(term=2, voter_id="n2", granted=True))
        self.assertEqual(node.describe().state, "Leader")
        pending = node.apply(b"needs a quorum")
        self.assertNoResult(pending)
        node.receive(
            AppendEntries(
                term=3, leader_id="n3", leader_address="n3:8300", prev_log_index=0, prev_log_term=0
            )
        )
        self.assertEqual(node.describe().state, "Follower")
        self.clock.advance(0)
        self.failureResultOf(pending, NotLeader)

    def test_stop_leaves_no_timers(self) -> None:
        node, _, _, _ = self.elect()
        node.stop()
        self.assertEqual(node.describe().state, "Shutdown")
        self.clock.advance(0)
        self.assert_no_timers()
        self.failureResultOf(node.apply(b"x"), RaftShutdown)

    def test_unbootstrapped_server_does_not_elect(self) -> None:
        node, _, _, _ = self.make_node()
        node.start()
        self.clock.advance(10)
        self.assertEqual(node.describe().state, "Follower")
        self.assertEqual(self.messages().count("no known peers, aborting election"), 1)
        node.stop()
        self.assert_no_timers()

    def test_messages_before_start_and_after_stop_are_dropped(self) -> None:
        node, _, _, stable = self.make_node()
        heartbeat = AppendEntries(
            term=5, leader_id="n9", leader_address="n9:8300", prev_log_index=0, prev_log_term=0
        )
        node.receive(heartbeat)
        node.receive(RequestVoteResponse(term=5, voter_id="n9", granted=True))
        self.assertEqual((node.describe().state, stable.load_hard_state()), ("Shutdown", (0, None)))
        node.start()
        node.stop()
        node.receive(heartbeat)
        self.assertEqual(node.describe().state, "Shutdown")
        self.assert_no_timers()

    def test_lone_leader_does_not_heartbeat(self) -> None:
        node, _, _, _ = self.elect()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        node.stop()

    def test_bootstrap_only_once(self) -> None:
        node, _, _, _ = self.elect()
        self.assertFalse(node.bootstrap((Server(id="n1", address="n1:8300"),)))


class VotingTests(RaftTestCase):
    def follower(self) -> tuple[RaftNode, list[tuple[str, Message]], MemoryStableStore]:
        sent: list[tuple[str, Message]] = []
        node, _, _, stable = self.make_node(sent=sent)
        node.bootstrap(tuple(Server(id=n, address=f"{n}:8300") for n in ("n1", "n2", "n3")))
        node.start()
        # A freshly started server refuses votes for one heartbeat timeout
        # (VoteBlockingTests); these tests are about what comes after.
        node.core.votes_blocked_until = 0.0
        return node, sent, stable

    def test_one_vote_per_term_persisted_before_reply(self) -> None:
        node, sent, stable = self.follower()
        node.receive(
            RequestVote(
                term=2,
                candidate_id="n2",
                candidate_address="n2:8300",
                last_log_index=1,
                last_log_term=1,
            )
        )
        node.receive(
            RequestVote(
                term=2,
                candidate_id="n3",
                candidate_address="n3:8300",
                last_log_index=1,
                last_log_term=1,
            )
        )
        self.assertEqual(
            sent,
            [
                ("n2", RequestVoteResponse(term=2, voter_id="n1", granted=True)),
                ("n3", RequestVoteResponse(term=2, voter_id="n1", granted=False)),
            ],
        )
        self.assertEqual(stable.load_hard_state(), (2, "n2"))
        node.stop()
        self.assert_no_timers()

    def test_refuses_candidate_with_stale_log(self) -> None:
        node, sent, _ = self.follower()
        node.receive(
            RequestVote(
                term=2,
                candidate_id="n2",
                candidate_address="n2:8300",
                last_log_index=0,
                last_log_term=0,
            )
        )
        self.assertEqual(sent, [("n2", RequestVoteResponse(term=2, voter_id="n1", granted=False))])
        node.stop()

    def test_answers_old_term_with_current_term(self) -> None:
        node, sent, _ = self.follower()
        node.receive(
            RequestVote(
                term=0,
                candidate_id="n2",
                candidate_address="n2:8300",
                last_log_index=5,
                last_log_term=1,
            )
        )
        self.assertEqual(sent, [("n2", RequestVoteResponse(term=1, voter_id="n1", granted=False))])
        node.stop()

    def test_follower_appends_and_commits(self) -> None:
        node, sent, _ = self.follower()
        entry = LogEntry(index=2, term=2, type=EntryType.COMMAND, data=b"x")
        node.receive(
            AppendEntries(
                term=2,
                leader_id="n2",
                leader_address="n2:8300",
                prev_log_index=1,
                prev_log_term=1,
                entries=(entry,),
                leader_commit=2,
            )
        )
        self.assertEqual(
            sent[-1],
            ("n2", AppendEntriesResponse(term=2, peer_id="n1", success=True, match_index=2)),
        )
        status = node.describe()
        self.assertEqual(
            (status.commit_index, status.leader_id, status.applied_index), (2, "n2", 2)
        )
        node.stop()

    def test_follower_rejects_log_gap(self) -> None:
        node, sent, _ = self.follower()
        node.receive(
            AppendEntries(
                term=2, leader_id="n2", leader_address="n2:8300", prev_log_index=5, prev_log_term=2
            )
        )
        self.assertFalse(sent[-1][1].success)  # type: ignore[union-attr]
        node.stop()

    def test_candidate_outbox_asks_every_peer(self) -> None:
        node, sent, stable = self.follower()
        self.clock.advance(2 * TIMINGS.heartbeat_timeout)
        # First a pre-vote round: nobody's term changes yet.
        self.assertEqual(node.describe().state, "Candidate")
        self.assertEqual(sorted(peer for peer, _ in sent), ["n2", "n3"])
        self.assertTrue(all(m.pre_vote and m.term == 2 for _, m in sent))  # type: ignore[union-attr]
        self.assertEqual(stable.load_hard_state(), (1, None))
        del sent[:]
        node.receive(RequestVoteResponse(term=2, voter_id="n3", granted=True, pre_vote=True))
        self.assertEqual(sorted(peer for peer, _ in sent), ["n2", "n3"])
        self.assertFalse(any(m.pre_vote for _, m in sent))  # type: ignore[union-attr]
        self.assertEqual(stable.load_hard_state(), (2, "n1"))
        self.assertEqual(
            [type(e) for e in node.core.outbox], [], "the driver drains the outbox after each input"
        )
        node.stop()
        self.assert_no_timers()

    def test_split_vote_starts_a_new_term(self) -> None:
        node, _, _ = self.follower()
        self.clock.advance(2 * TIMINGS.heartbeat_timeout)
        node.receive(RequestVoteResponse(term=2, voter_id="n3", granted=True, pre_vote=True))
        self.assertEqual(node.describe().term, 2)
        self.clock.advance(2 * TIMINGS.election_timeout)
        status = node.describe()
        self.assertEqual((status.state, status.term), ("Candidate", 3))
        node.stop()
        self.assert_no_timers()


class ThreeNodeClusterTests(RaftTestCase):
    """Three machines on one clock with an in-memory network: one leader, replication."""

    def test_elects_one_leader_and_replicates(self) -> None:
        voters = tuple(Server(id=n, address=f"{n}:8300") for n in ("n1", "n2", "n3"))
        nodes: dict[str, RaftNode] = {}
        fsms: dict[str, RecordingFSM] = {}

        def deliver(peer: str, msg: Message) -> None:
            self.clock.callLater(0.001, nodes[peer].receive, msg)

        for seed, name in enumerate(("n1", "n2", "n3")):
            node, fsm, _, _ = self.make_node(name, sent=[], seed=seed)
            node.send = deliver
            node.bootstrap(voters)
            nodes[name], fsms[name] = node, fsm
        for node in nodes.values():
            node.start()
        for _ in range(200):
            self.clock.advance(0.005)
        leaders = [n for n in nodes.values() if n.describe().state == "Leader"]
        self.assertEqual(len(leaders), 1)
        leader = leaders[0]
        result = leader.apply(b"replicated")
        for _ in range(100):
            self.clock.advance(0.005)
        self.assertEqual(self.successResultOf(result).split()[0], "ok")
        for fsm in fsms.values():
            self.assertEqual([data for _, data in fsm.applied], [b"replicated"])
        terms = {n.describe().term for n in nodes.values()}
        self.assertEqual(len(terms), 1)
        for node in nodes.values():
            node.stop()
        self.clock.advance(1)
        self.assert_no_timers()


class EffectOrderTests(RaftTestCase):
    def test_vote_is_persisted_before_it_is_sent(self) -> None:
        """The driver runs PersistHardState before Send, whatever the outbox order."""
        order: list[str] = []
        node, _, _, stable = self.make_node(sent=[])
        node.send = lambda peer, msg: order.append(f"send {stable.load_hard_state()}")
        node.bootstrap(tuple(Server(id=n, address=f"{n}:8300") for n in ("n1", "n2")))
        node.start()
        node.core.votes_blocked_until = 0.0  # see VoteBlockingTests
        node.receive(
            RequestVote(
                term=2,
                candidate_id="n2",
                candidate_address="n2:8300",
                last_log_index=1,
                last_log_term=1,
            )
        )
        self.assertEqual(order, ["send (2, 'n2')"])
        self.assertIsInstance(PersistHardState(2, "n2"), PersistHardState)
        self.assertIsInstance(
            Send("n2", RequestVoteResponse(term=2, voter_id="n1", granted=True)), Send
        )
        node.stop()


class VoteBlockingTests(RaftTestCase):
    def test_restarted_server_refuses_votes_for_one_heartbeat_timeout(self) -> None:
        """It does not remember whom it followed: it must not help depose a leased leader."""
        sent: list[tuple[str, Message]] = []
        node, _, _, stable = self.make_node(sent=sent)
        node.bootstrap(tuple(Server(id=n, address=f"{n}:8300") for n in ("n1", "n2", "n3")))
        node.start()
        request = RequestVote(
            term=2,
            candidate_id="n2",
            candidate_address="n2:8300",
            last_log_index=1,
            last_log_term=1,
        )
        node.receive(request)
        self.assertEqual(stable.load_hard_state(), (1, None), "term not adopted, no vote")
        self.assertFalse(sent[-1][1].granted)  # type: ignore[union-attr]
        self.clock.advance(TIMINGS.heartbeat_timeout * 0.999)
        node.receive(request)
        self.assertFalse(sent[-1][1].granted)  # type: ignore[union-attr]
        node.stop()


class GroupCommitTests(RaftTestCase):
    def test_writes_in_one_turn_share_one_sync(self) -> None:
        """Group commit: every write that arrives in the same reactor turn shares one fsync."""
        syncs: list[int] = []

        class CountingLogStore(MemoryLogStore):
            def sync(self) -> None:
                syncs.append(len(self.entries()))

        fsm, log_store, stable = RecordingFSM(), CountingLogStore(), MemoryStableStore()
        node = RaftNode.create(
            node_id="n1",
            address="n1:8300",
            timings=TIMINGS,
            clock=self.clock,
            fsm=fsm,
            log_store=log_store,
            stable_store=stable,
            logger=HcLogger("agent.server.raft"),
            rng=random.Random(1),
            group_commit=True,
        )
        node.bootstrap((Server(id="n1", address="n1:8300"),))
        node.start()
        self.clock.advance(2 * TIMINGS.heartbeat_timeout)
        self.assertEqual(node.describe().state, "Leader")
        del syncs[:]
        writes = [node.apply(f"w{i}".encode()) for i in range(10)]
        self.assertEqual(syncs, [], "nothing is stored mid-turn")
        self.clock.advance(0)
        self.assertEqual(len(syncs), 1, "one sync for the ten")
        self.clock.advance(0)
        self.assertEqual([self.successResultOf(w) for w in writes][-1], f"ok {syncs[0]}")
        node.stop()
