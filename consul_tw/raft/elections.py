# -*- test-case-name: tests.unit.raft.test_elections -*-
"""
Raft's election rules: pre-votes, votes, and asking for them.

A follower that stops hearing from its leader first asks for *pre-votes*
(Ongaro's thesis §9.6): "would you vote for me in the next term?".  Nobody
changes term or records a vote for a pre-vote, so a server that was cut off
and comes back cannot force a healthy cluster into a new term.  Voters also
practise leader stickiness (:meth:`RaftCore.heard_from_leader_recently`):
while they hear from a live leader they refuse both kinds of vote, unless
the leader itself asked for the election (a leadership transfer).
"""

from __future__ import annotations

from consul_tw.raft.core import RaftCore
from consul_tw.raft.effects import Send
from consul_tw.raft.messages import RequestVote, RequestVoteResponse


def ask_for_votes(core: RaftCore, *, term: int, pre_vote: bool, transfer: bool = False) -> None:
    request = RequestVote(
        term=term,
        candidate_id=core.node_id,
        candidate_address=core.address,
        last_log_index=core.log.last_index,
        last_log_term=core.log.last_term,
        pre_vote=pre_vote,
        transfer=transfer,
    )
    for peer in core.peers:
        core.outbox.append(Send(peer.id, request, peer.address))


def _reply(core: RaftCore, msg: RequestVote, granted: bool, term: int) -> None:
    core.outbox.append(
        Send(
            msg.candidate_id,
            RequestVoteResponse(
                term=term, voter_id=core.node_id, granted=granted, pre_vote=msg.pre_vote
            ),
            msg.candidate_address,
        )
    )


def answer_vote(core: RaftCore, msg: RequestVote) -> bool:
    """Grant at most one vote per term, only to a candidate whose log is up to date."""
    granted = (
        msg.term == core.term
        and core.voted_for in (None, msg.candidate_id)
        and core.log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        and (msg.transfer or not _sticky(core, msg))
    )
    if granted:
        core.set_hard_state(core.term, msg.candidate_id)
    _reply(core, msg, granted, core.term)
    return granted


def answer_pre_vote(core: RaftCore, msg: RequestVote) -> bool:
    """
    Would we vote for this candidate in ``msg.term``?  Nothing is recorded.

    A granted pre-vote answers with the term asked about, so the candidate
    counts it; a refusal carries our own term, which teaches a candidate
    that is behind the term it must catch up with.
    """
    granted = (
        msg.term > core.term
        and core.log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        and not _sticky(core, msg)
    )
    _reply(core, msg, granted, msg.term if granted else core.term)
    return granted


def _sticky(core: RaftCore, msg: RequestVote) -> bool:
    """We follow a live leader other than the candidate: refuse to help depose it."""
    return core.heard_from_leader_recently() and (
        core.leader is None or core.leader.id != msg.candidate_id
    )
