# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
Entering a role: the data factories of the Raft states.

Each builds the role's data (its timers above all) and queues the effects
of taking the role: a candidate's new term and RequestVotes, a leader's
no-op entry and first AppendEntries round.  The machine
(:mod:`consul_tw.raft.machine`) attaches them to its states; the split-vote
and pre-vote retry behaviours call them again to start a new round.
"""

from __future__ import annotations

from consul_tw.raft.core import CandidateData, FollowerData, LeaderData, Progress, RaftCore
from consul_tw.raft.effects import LeadershipChanged
from consul_tw.raft.elections import ask_for_votes
from consul_tw.raft.inputs import RaftInputs
from consul_tw.raft.messages import EntryType, Server
from consul_tw.raft.quorum import votes_needed
from consul_tw.raft.replication import broadcast


def enter_follower(inputs: RaftInputs, core: RaftCore, *args: object) -> FollowerData:
    leader = core.leader
    core.logger.info(
        "entering follower state",
        follower=core.describe_node("Follower"),
        leader=leader.address if leader else None,
    )
    return FollowerData(core.follower_timer(inputs.election_timeout))


def enter_pre_candidate(inputs: RaftInputs, core: RaftCore, *args: object) -> CandidateData:
    core.leader = None
    core.logger.debug("pre-vote campaign", term=core.term + 1)
    ask_for_votes(core, term=core.term + 1, pre_vote=True)
    return CandidateData(
        core.candidate_timer(inputs.election_timeout), {core.node_id}, pre_vote=True
    )


def enter_candidate(inputs: RaftInputs, core: RaftCore, *args: object) -> CandidateData:
    """Start an election in a new term (also reused for a split vote)."""
    core.leader = None
    core.set_hard_state(core.term + 1, core.node_id)
    core.logger.info(
        "entering candidate state", node=core.describe_node("Candidate"), term=core.term
    )
    transfer, core.transfer_election = core.transfer_election, False
    ask_for_votes(core, term=core.term, pre_vote=False, transfer=transfer)
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
    # A no-op in the new term lets the leader commit everything before it,
    # and reads wait for it (Raft §8).
    noop = core.append_local(EntryType.NOOP)
    data = LeaderData(
        heartbeat=core.loop(inputs.heartbeat_due),
        lease_check=core.loop(inputs.lease_due),
        progress=progress,
        pending={},
        noop_index=noop.index,
        started_at=core.clock.seconds(),
    )
    keep_in_touch(core, data)
    broadcast(core, data)
    core.outbox.append(LeadershipChanged(True))
    return data


def keep_in_touch(core: RaftCore, data: LeaderData) -> None:
    """
    Heartbeat only when there is someone to hear from (peers, or a removed
    server still owed the entry removing it); check the quorum only with peers.
    """
    timings = core.timings
    for loop, interval, needed in (
        (data.heartbeat, timings.heartbeat_interval, bool(core.peers or data.departing)),
        (data.lease_check, timings.leader_lease_timeout, bool(core.peers)),
    ):
        if needed and not loop.running:
            loop.start(interval, now=False)
        elif not needed and loop.running:
            loop.stop()
