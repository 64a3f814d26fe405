# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
A Raft server's role as an automat typed state machine.

States are Stopped, Follower, Candidate, Leader and ShutDown.  Each role's
timers live in that role's data, created by the state's data factory on entry
and cancelled by every behaviour that leaves the role, so that after
``stop()`` the clock has no delayed calls left.  Behaviours never do I/O:
they append effects to ``core.outbox`` (see :mod:`consul_tw.raft.effects`),
which :class:`consul_tw.raft.node.RaftNode` drains after every input.

Terms are compared at one choke point, ``RaftNode.receive``; the machine
sees ``higher_term_seen`` first and then the message, so no behaviour here
steps down on its own.  The transition table is in docs/architecture.md.
"""

from __future__ import annotations

from typing import Any, Protocol

from automat import TypeMachineBuilder
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import LoopingCall

from consul_tw.raft.core import (
    CandidateData,
    FollowerData,
    LeaderData,
    NotLeader,
    Progress,
    RaftCore,
    RaftShutdown,
    RaftStatus,
    cancel_timer,
    fire_eventually,
)
from consul_tw.raft.effects import LeadershipChanged, Send
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    RequestVote,
    RequestVoteResponse,
    Server,
)
from consul_tw.raft.quorum import votes_needed
from consul_tw.raft.rules import (
    accept_entries,
    answer_vote,
    leader_commit,
    leave_leadership,
    replicate,
)

__all__ = ["NotLeader", "RaftCore", "RaftInputs", "RaftMachine", "RaftShutdown", "RaftStatus"]


class RaftInputs(Protocol):
    def start(self) -> None:
        "Begin as a follower."

    def stop(self) -> None:
        "Shut down for good: cancel timers, fail pending writes."

    def election_timeout(self) -> None:
        "No leader heard from (follower), or no decision (candidate), in time."

    def heartbeat_due(self) -> None:
        "Leader: time to send AppendEntries to every peer."

    def higher_term_seen(self, term: int, leader: Server | None) -> None:
        "A message carried a newer term: adopt it and follow."

    def request_vote_received(self, msg: RequestVote) -> None:
        "A candidate asks for our vote (its term is not newer than ours)."

    def vote_response_received(self, msg: RequestVoteResponse) -> None:
        "A voter answered our RequestVote."

    def append_entries_received(self, msg: AppendEntries) -> None:
        "A leader replicates entries or heartbeats (its term is not newer than ours)."

    def append_entries_response_received(self, msg: AppendEntriesResponse) -> None:
        "A follower answered our AppendEntries."

    def log_persisted(self, index: int) -> None:
        "The driver has stored our log durably up to ``index``."

    def applied(self, index: int, result: object) -> None:
        "The FSM applied the entry at ``index``; result is its return value or a Failure."

    def apply(self, command: bytes) -> Deferred[Any]:
        "Replicate a command; fires with the FSM's result once committed and applied."

    def describe(self) -> RaftStatus:
        "A snapshot of the server's Raft state."

    def _won_election(self, tally: int) -> None:
        "A candidate's tally reached a majority."

    def _start_election(self) -> None:
        "A follower that is a voter gave up waiting for a leader."


def _make_raft_machine():  # type: ignore[no-untyped-def]
    builder = TypeMachineBuilder(RaftInputs, RaftCore)

    # -- data factories ---------------------------------------------------

    def enter_follower(inputs: RaftInputs, core: RaftCore, *args: object) -> FollowerData:
        leader = core.leader
        core.logger.info(
            "entering follower state",
            follower=core.describe_node("Follower"),
            leader=leader.address if leader else None,
        )
        timer = core.follower_timer(inputs.election_timeout)
        return FollowerData(timer)

    def enter_candidate(inputs: RaftInputs, core: RaftCore, *args: object) -> CandidateData:
        """Start an election in a new term (also reused for a split vote)."""
        core.leader = None
        core.set_hard_state(core.term + 1, core.node_id)
        core.logger.info(
            "entering candidate state", node=core.describe_node("Candidate"), term=core.term
        )
        request = RequestVote(
            term=core.term,
            candidate_id=core.node_id,
            candidate_address=core.address,
            last_log_index=core.log.last_index,
            last_log_term=core.log.last_term,
        )
        for peer in core.peers:
            core.outbox.append(Send(peer.id, request))
        needed = votes_needed(len(core.voters))
        core.logger.debug("votes", needed=needed)
        core.logger.debug("vote granted", **{"from": core.node_id, "term": core.term, "tally": 1})
        timer = core.candidate_timer(inputs.election_timeout)
        if needed <= 1:
            inputs._won_election(1)
        return CandidateData(timer, {core.node_id})

    def enter_leader(inputs: RaftInputs, core: RaftCore, tally: int) -> LeaderData:
        core.logger.info("election won", tally=tally)
        core.logger.info("entering leader state", leader=core.describe_node("Leader"))
        core.leader = Server(id=core.node_id, address=core.address)
        core.last_contact = None
        progress = {p.id: Progress(next_index=core.log.last_index + 1) for p in core.peers}
        # A no-op in the new term lets the leader commit everything before it.
        core.append_local(EntryType.NOOP)
        # Announce ourselves at once, then heartbeat; with no peers (a lone
        # server) there is no one to heartbeat to.
        replicate(core, progress)
        heartbeat = LoopingCall(core.drive, inputs.heartbeat_due)
        heartbeat.clock = core.clock
        if core.peers:
            heartbeat.start(core.timings.heartbeat_interval, now=False)
        core.outbox.append(LeadershipChanged(True))
        return LeaderData(heartbeat, progress, {})

    Stopped = builder.state("Stopped")
    Follower = builder.state("Follower", enter_follower)
    Candidate = builder.state("Candidate", enter_candidate)
    Leader = builder.state("Leader", enter_leader)
    ShutDown = builder.state("ShutDown")

    # -- lifecycle ---------------------------------------------------------

    Stopped.upon(RaftInputs.start).to(Follower).returns(None)
    Stopped.upon(RaftInputs.stop).to(ShutDown).returns(None)
    ShutDown.upon(RaftInputs.stop).loop().returns(None)

    @Follower.upon(RaftInputs.stop).to(ShutDown)
    def stop_follower(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        cancel_timer(data.timer)

    @Candidate.upon(RaftInputs.stop).to(ShutDown)
    def stop_candidate(inputs: RaftInputs, core: RaftCore, data: CandidateData) -> None:
        cancel_timer(data.timer)

    @Leader.upon(RaftInputs.stop).to(ShutDown)
    def stop_leader(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        leave_leadership(core, data, RaftShutdown("raft is shutting down"))
        core.leader = None

    # -- elections -----------------------------------------------------------

    @Follower.upon(RaftInputs.election_timeout).loop()
    def follower_timed_out(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        if core.is_voter:
            core.logger.warn(
                "heartbeat timeout reached, starting election",
                **{"last-leader": core.leader.address if core.leader else None},
            )
            inputs._start_election()
            return
        # Not bootstrapped, or removed from the configuration: keep waiting
        # for a leader to contact us, as hashicorp/raft does.
        if not data.warned_no_election:
            data.warned_no_election = True
            core.logger.warn(
                "no known peers, aborting election"
                if not core.voters
                else "not part of stable configuration, aborting election"
            )
        data.timer = core.follower_timer(inputs.election_timeout)

    @Follower.upon(RaftInputs._start_election).to(Candidate)
    def become_candidate(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        cancel_timer(data.timer)

    for state in (Candidate, Leader):
        state.upon(RaftInputs._start_election).loop().returns(None)

    @Candidate.upon(RaftInputs.election_timeout).loop()
    def split_vote(inputs: RaftInputs, core: RaftCore, data: CandidateData) -> None:
        core.logger.warn("Election timeout reached, restarting election")
        fresh = enter_candidate(inputs, core)
        data.timer, data.votes = fresh.timer, fresh.votes

    @Candidate.upon(RaftInputs.vote_response_received).loop()
    def count_vote(
        inputs: RaftInputs, core: RaftCore, data: CandidateData, msg: RequestVoteResponse
    ) -> None:
        if msg.term != core.term or not msg.granted:
            return
        data.votes.add(msg.voter_id)
        core.logger.debug(
            "vote granted", **{"from": msg.voter_id, "term": core.term, "tally": len(data.votes)}
        )
        if len(data.votes) >= votes_needed(len(core.voters)):
            inputs._won_election(len(data.votes))

    @Candidate.upon(RaftInputs._won_election).to(Leader)
    def won(inputs: RaftInputs, core: RaftCore, data: CandidateData, tally: int) -> None:
        cancel_timer(data.timer)

    # Late or stale answers are normal in Raft: ignored on purpose.
    for state in (Follower, Leader):
        state.upon(RaftInputs.vote_response_received).loop().returns(None)
    Leader.upon(RaftInputs._won_election).loop().returns(None)

    @Follower.upon(RaftInputs.request_vote_received).loop()
    def vote_as_follower(
        inputs: RaftInputs, core: RaftCore, data: FollowerData, msg: RequestVote
    ) -> None:
        if answer_vote(core, msg):
            cancel_timer(data.timer)
            data.timer = core.follower_timer(inputs.election_timeout)

    @Candidate.upon(RaftInputs.request_vote_received, nodata=True).loop()
    @Leader.upon(RaftInputs.request_vote_received, nodata=True).loop()
    def refuse_vote(inputs: RaftInputs, core: RaftCore, msg: RequestVote) -> None:
        # Same term: we voted for ourselves already.
        answer_vote(core, msg)

    # -- the higher-term rule -------------------------------------------------

    @Follower.upon(RaftInputs.higher_term_seen).loop()
    def follower_new_term(
        inputs: RaftInputs, core: RaftCore, data: FollowerData, term: int, leader: Server | None
    ) -> None:
        core.set_hard_state(term, None)
        core.leader = leader

    @Candidate.upon(RaftInputs.higher_term_seen).to(Follower)
    def candidate_steps_down(
        inputs: RaftInputs, core: RaftCore, data: CandidateData, term: int, leader: Server | None
    ) -> None:
        cancel_timer(data.timer)
        core.set_hard_state(term, None)
        core.leader = leader

    @Leader.upon(RaftInputs.higher_term_seen).to(Follower)
    def leader_steps_down(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, term: int, leader: Server | None
    ) -> None:
        leave_leadership(core, data, NotLeader("leadership lost while committing log"))
        core.set_hard_state(term, None)
        core.leader = leader

    # -- replication -----------------------------------------------------------

    @Follower.upon(RaftInputs.append_entries_received).loop()
    def follow(inputs: RaftInputs, core: RaftCore, data: FollowerData, msg: AppendEntries) -> None:
        cancel_timer(data.timer)
        data.timer = core.follower_timer(inputs.election_timeout)
        accept_entries(core, msg)

    @Candidate.upon(RaftInputs.append_entries_received).to(Follower)
    def candidate_finds_leader(
        inputs: RaftInputs, core: RaftCore, data: CandidateData, msg: AppendEntries
    ) -> None:
        cancel_timer(data.timer)
        accept_entries(core, msg)

    @Leader.upon(RaftInputs.append_entries_received, nodata=True).loop()
    def rival_leader(inputs: RaftInputs, core: RaftCore, msg: AppendEntries) -> None:
        # Two leaders in one term cannot happen; refuse rather than corrupt the log.
        core.logger.error("two leaders in one term", term=msg.term, other=msg.leader_address)
        core.outbox.append(
            Send(
                msg.leader_id,
                AppendEntriesResponse(term=core.term, peer_id=core.node_id, success=False),
            )
        )

    @Leader.upon(RaftInputs.heartbeat_due).loop()
    def send_heartbeats(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        replicate(core, data.progress)

    @Leader.upon(RaftInputs.append_entries_response_received).loop()
    def follower_answered(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, msg: AppendEntriesResponse
    ) -> None:
        progress = data.progress.get(msg.peer_id)
        if progress is None or msg.term != core.term:
            return
        if msg.success:
            progress.match_index = max(progress.match_index, msg.match_index)
            progress.next_index = progress.match_index + 1
            leader_commit(core, data)
        else:
            progress.next_index = max(1, min(progress.next_index - 1, msg.match_index + 1))

    for state in (Follower, Candidate):
        state.upon(RaftInputs.append_entries_response_received).loop().returns(None)
        state.upon(RaftInputs.heartbeat_due).loop().returns(None)

    # -- persistence and application ---------------------------------------------

    @Leader.upon(RaftInputs.log_persisted).loop()
    def leader_persisted(inputs: RaftInputs, core: RaftCore, data: LeaderData, index: int) -> None:
        core.persisted_index = max(core.persisted_index, index)
        leader_commit(core, data)

    @Follower.upon(RaftInputs.log_persisted, nodata=True).loop()
    @Candidate.upon(RaftInputs.log_persisted, nodata=True).loop()
    def persisted(inputs: RaftInputs, core: RaftCore, index: int) -> None:
        core.persisted_index = max(core.persisted_index, index)

    @Leader.upon(RaftInputs.applied).loop()
    def leader_applied(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, index: int, result: object
    ) -> None:
        core.applied_index = max(core.applied_index, index)
        waiting = data.pending.pop(index, None)
        if waiting is not None:
            fire_eventually(core, waiting, result)

    @Follower.upon(RaftInputs.applied, nodata=True).loop()
    @Candidate.upon(RaftInputs.applied, nodata=True).loop()
    def follower_applied(inputs: RaftInputs, core: RaftCore, index: int, result: object) -> None:
        core.applied_index = max(core.applied_index, index)

    @Leader.upon(RaftInputs.apply).loop()
    def leader_apply(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, command: bytes
    ) -> Deferred[Any]:
        entry = core.append_local(EntryType.COMMAND, command)
        waiting: Deferred[Any] = Deferred()
        data.pending[entry.index] = waiting
        return waiting

    @Stopped.upon(RaftInputs.apply).loop()
    @Follower.upon(RaftInputs.apply, nodata=True).loop()
    @Candidate.upon(RaftInputs.apply, nodata=True).loop()
    def not_leader_apply(inputs: RaftInputs, core: RaftCore, command: bytes) -> Deferred[Any]:
        return fail(NotLeader("node is not the leader"))

    @ShutDown.upon(RaftInputs.apply).loop()
    def shutdown_apply(inputs: RaftInputs, core: RaftCore, command: bytes) -> Deferred[Any]:
        return fail(RaftShutdown("raft is shutting down"))

    # Messages and timers that arrive before start() or after stop() are
    # dropped on purpose: a transport may deliver them at any time.
    for name in (
        "election_timeout",
        "heartbeat_due",
        "_start_election",
        "_won_election",
        "log_persisted",
        "applied",
        "vote_response_received",
        "append_entries_received",
        "append_entries_response_received",
        "request_vote_received",
        "higher_term_seen",
    ):
        ShutDown.upon(getattr(RaftInputs, name)).loop().returns(None)
        Stopped.upon(getattr(RaftInputs, name)).loop().returns(None)

    # -- describe() in every state -------------------------------------------------

    def describer(name: str):  # type: ignore[no-untyped-def]
        def describe(inputs: RaftInputs, core: RaftCore) -> RaftStatus:
            config_index, voters = core.log.configuration()
            return RaftStatus(
                state=name,
                term=core.term,
                node_id=core.node_id,
                address=core.address,
                leader_id=core.leader.id if core.leader else None,
                leader_address=core.leader.address if core.leader else None,
                last_contact=core.last_contact,
                commit_index=core.commit_index,
                applied_index=core.applied_index,
                last_log_index=core.log.last_index,
                last_log_term=core.log.last_term,
                configuration_index=config_index,
                voters=voters,
            )

        return describe

    Stopped.upon(RaftInputs.describe).loop()(describer("Shutdown"))
    ShutDown.upon(RaftInputs.describe).loop()(describer("Shutdown"))
    for state, name in ((Follower, "Follower"), (Candidate, "Candidate"), (Leader, "Leader")):
        state.upon(RaftInputs.describe, nodata=True).loop()(describer(name))

    return builder.build()


RaftMachine = _make_raft_machine()
