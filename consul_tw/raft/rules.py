# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
Raft's rules that several transitions share: voting, accepting entries,
advancing the leader's commit index and giving up leadership.

They mutate the core and queue effects; which state may apply them is the
machine's business (:mod:`consul_tw.raft.machine`).
"""

from __future__ import annotations

from twisted.python.failure import Failure

from consul_tw.raft.core import LeaderData, Progress, RaftCore, fire_eventually
from consul_tw.raft.effects import AppendToLog, LeadershipChanged, Send, TruncateLog
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    LogEntry,
    RequestVote,
    RequestVoteResponse,
    Server,
)
from consul_tw.raft.quorum import commit_index


def answer_vote(core: RaftCore, msg: RequestVote) -> bool:
    """Grant at most one vote per term, only to a candidate whose log is up to date."""
    granted = (
        msg.term == core.term
        and core.voted_for in (None, msg.candidate_id)
        and core.log.is_up_to_date(msg.last_log_index, msg.last_log_term)
    )
    if granted:
        core.set_hard_state(core.term, msg.candidate_id)
    core.outbox.append(
        Send(
            msg.candidate_id,
            RequestVoteResponse(term=core.term, voter_id=core.node_id, granted=granted),
        )
    )
    return granted


def accept_entries(core: RaftCore, msg: AppendEntries) -> None:
    """A follower's half of AppendEntries: consistency check, conflict truncation, commit."""
    core.leader = Server(id=msg.leader_id, address=msg.leader_address)
    core.last_contact = core.clock.seconds()
    if core.log.term_at(msg.prev_log_index) != msg.prev_log_term:
        core.outbox.append(
            Send(
                msg.leader_id,
                AppendEntriesResponse(
                    term=core.term,
                    peer_id=core.node_id,
                    success=False,
                    match_index=min(core.log.last_index, msg.prev_log_index - 1),
                ),
            )
        )
        return
    new: list[LogEntry] = []
    for entry in msg.entries:
        existing = core.log.term_at(entry.index)
        if existing is not None and existing != entry.term:
            core.log.truncate_after(entry.index - 1)
            core.outbox.append(TruncateLog(entry.index - 1))
            existing = None
        if existing is None:
            core.log.append(entry)
            new.append(entry)
    if new:
        core.outbox.append(AppendToLog(tuple(new)))
    last_new = msg.prev_log_index + len(msg.entries)
    core.advance_commit(min(msg.leader_commit, last_new))
    core.outbox.append(
        Send(
            msg.leader_id,
            AppendEntriesResponse(
                term=core.term, peer_id=core.node_id, success=True, match_index=last_new
            ),
        )
    )


def leader_commit(core: RaftCore, data: LeaderData) -> None:
    """Commit what a majority stores, but only entries of the current term (Raft §5.4.2)."""
    matches = [core.persisted_index] + [
        data.progress[p.id].match_index for p in core.peers if p.id in data.progress
    ]
    candidate = commit_index(matches + [0] * (len(core.voters) - len(matches)))
    if candidate > core.commit_index and core.log.term_at(candidate) == core.term:
        core.advance_commit(candidate)


def leave_leadership(core: RaftCore, data: LeaderData, reason: Exception) -> None:
    if data.heartbeat.running:
        data.heartbeat.stop()
    core.outbox.append(LeadershipChanged(False))
    pending, data.pending = data.pending, {}
    for waiting in pending.values():
        fire_eventually(core, waiting, Failure(reason))


def replicate(core: RaftCore, progress: dict[str, Progress]) -> None:
    """Queue AppendEntries to every peer, carrying what it lacks (none: a heartbeat)."""
    for peer in core.peers:
        state = progress.setdefault(peer.id, Progress(next_index=core.log.last_index + 1))
        prev = state.next_index - 1
        core.outbox.append(
            Send(
                peer.id,
                AppendEntries(
                    term=core.term,
                    leader_id=core.node_id,
                    leader_address=core.address,
                    prev_log_index=prev,
                    prev_log_term=core.log.term_at(prev) or 0,
                    entries=tuple(core.log.slice(state.next_index, core.log.last_index)),
                    leader_commit=core.commit_index,
                ),
            )
        )
