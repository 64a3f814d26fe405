# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
The Raft machine's election transitions: timeouts, pre-votes, votes,
TimeoutNow, and the higher-term rule (adopt the term, follow).
"""

from __future__ import annotations

from consul_tw.raft.core import (
    CandidateData,
    FollowerData,
    LeaderData,
    NotLeader,
    RaftCore,
    TimedRole,
    cancel_timer,
)
from consul_tw.raft.elections import answer_pre_vote, answer_vote
from consul_tw.raft.inputs import RaftInputs
from consul_tw.raft.messages import RequestVote, RequestVoteResponse, Server, TimeoutNow
from consul_tw.raft.quorum import votes_needed
from consul_tw.raft.roles import enter_candidate, enter_pre_candidate
from consul_tw.raft.rules import leave_leadership
from consul_tw.raft.states import States


def add_election_transitions(s: States) -> None:
    Stopped, Follower, PreCandidate, Candidate, Leader, ShutDown = (
        s.Stopped,
        s.Follower,
        s.PreCandidate,
        s.Candidate,
        s.Leader,
        s.ShutDown,
    )
    Campaigning = s.campaigning

    # -- elections -----------------------------------------------------------

    @Follower.upon(RaftInputs.election_timeout).loop()
    def follower_timed_out(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        if core.is_voter:
            core.logger.warn(
                "heartbeat timeout reached, starting election",
                **{"last-leader": core.leader.address if core.leader else None},
            )
            if core.peers:
                inputs._start_pre_vote()
            else:
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

    @Follower.upon(RaftInputs._start_pre_vote).to(PreCandidate)
    def become_pre_candidate(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        cancel_timer(data.timer)

    @Follower.upon(RaftInputs._start_election).to(Candidate)
    @PreCandidate.upon(RaftInputs._start_election).to(Candidate)
    def become_candidate(inputs: RaftInputs, core: RaftCore, data: TimedRole) -> None:
        cancel_timer(data.timer)

    for state in (Candidate, Leader):
        state.upon(RaftInputs._start_election).loop().returns(None)
    for state in (PreCandidate, Candidate, Leader):
        state.upon(RaftInputs._start_pre_vote).loop().returns(None)

    @PreCandidate.upon(RaftInputs.election_timeout).loop()
    def pre_vote_again(inputs: RaftInputs, core: RaftCore, data: CandidateData) -> None:
        fresh = enter_pre_candidate(inputs, core)
        data.timer, data.votes = fresh.timer, fresh.votes

    @PreCandidate.upon(RaftInputs.pre_vote_response_received).loop()
    def count_pre_vote(
        inputs: RaftInputs, core: RaftCore, data: CandidateData, msg: RequestVoteResponse
    ) -> None:
        if msg.term != core.term + 1 or not msg.granted:
            return
        data.votes.add(msg.voter_id)
        if len(data.votes) >= votes_needed(len(core.voters)):
            inputs._start_election()

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
    for state in (Follower, PreCandidate, Leader):
        state.upon(RaftInputs.vote_response_received).loop().returns(None)
    for state in (Follower, Candidate, Leader):
        state.upon(RaftInputs.pre_vote_response_received).loop().returns(None)
    for state in (Follower, PreCandidate, Leader):
        state.upon(RaftInputs._won_election).loop().returns(None)

    @Follower.upon(RaftInputs.request_vote_received).loop()
    @PreCandidate.upon(RaftInputs.request_vote_received).loop()
    def vote_as_follower(
        inputs: RaftInputs, core: RaftCore, data: TimedRole, msg: RequestVote
    ) -> None:
        if answer_vote(core, msg):
            cancel_timer(data.timer)
            data.timer = core.follower_timer(inputs.election_timeout)

    @Candidate.upon(RaftInputs.request_vote_received, nodata=True).loop()
    @Leader.upon(RaftInputs.request_vote_received, nodata=True).loop()
    def refuse_vote(inputs: RaftInputs, core: RaftCore, msg: RequestVote) -> None:
        # Same term: we voted for ourselves already.
        answer_vote(core, msg)

    for state in (Follower, PreCandidate, Candidate, Leader):
        state.upon(RaftInputs.pre_vote_received, nodata=True).loop()(
            lambda inputs, core, msg: answer_pre_vote(core, msg) and None
        )

    @Follower.upon(RaftInputs.timeout_now_received).loop()
    @PreCandidate.upon(RaftInputs.timeout_now_received).loop()
    def take_over(inputs: RaftInputs, core: RaftCore, data: TimedRole, msg: TimeoutNow) -> None:
        if not core.is_voter:
            return
        core.logger.info("received leadership transfer request", leader=msg.leader_address)
        core.transfer_election = True
        inputs._start_election()

    for state in (Candidate, Leader):
        state.upon(RaftInputs.timeout_now_received).loop().returns(None)

    # -- the higher-term rule -------------------------------------------------

    @Follower.upon(RaftInputs.higher_term_seen).loop()
    def follower_new_term(
        inputs: RaftInputs, core: RaftCore, data: FollowerData, term: int, leader: Server | None
    ) -> None:
        core.set_hard_state(term, None)
        core.leader = leader

    for state in Campaigning:

        @state.upon(RaftInputs.higher_term_seen).to(Follower)
        def candidate_steps_down(
            inputs: RaftInputs,
            core: RaftCore,
            data: CandidateData,
            term: int,
            leader: Server | None,
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

    @Leader.upon(RaftInputs._quorum_lost).to(Follower)
    def quorum_lost(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        core.logger.warn("failed to contact quorum of nodes, stepping down")
        leave_leadership(core, data, NotLeader("leadership lost while committing log"))
        core.leader = None

    @Leader.upon(RaftInputs._removed).to(Follower)
    def removed(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        core.logger.info("removed ourself, transitioning to follower")
        leave_leadership(core, data, NotLeader("leadership lost while committing log"))
        core.leader = None

    for state in (Stopped, Follower, PreCandidate, Candidate, ShutDown):
        state.upon(RaftInputs._quorum_lost).loop().returns(None)
        state.upon(RaftInputs._removed).loop().returns(None)
        state.upon(RaftInputs._transfer_timed_out).loop().returns(None)
