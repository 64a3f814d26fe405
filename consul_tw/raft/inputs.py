# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
The inputs of the Raft role machine: every event a Raft server reacts to.

Messages arrive here already term-checked by ``RaftNode.receive``; timers
arrive through the node's driver; the underscored inputs are the machine's
own, fed from inside a behaviour (automat queues them until it finishes).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred

from consul_tw.raft.core import RaftStatus
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    Server,
    TimeoutNow,
)


class RaftInputs(Protocol):
    def start(self) -> None:
        "Begin as a follower."

    def stop(self) -> None:
        "Shut down for good: cancel timers, fail pending writes."

    def election_timeout(self) -> None:
        "No leader heard from (follower), or no decision (candidates), in time."

    def heartbeat_due(self) -> None:
        "Leader: time to send AppendEntries to every peer."

    def commit_due(self) -> None:
        "Leader: tell followers about a commit that no other message carried yet."

    def lease_due(self) -> None:
        "Leader: check that a quorum confirmed us within the lease (check-quorum)."

    def end_of_batch(self) -> None:
        "The driver is about to drain: a leader sends the entries appended since the last round."

    def higher_term_seen(self, term: int, leader: Server | None) -> None:
        "A message carried a newer term: adopt it and follow."

    def request_vote_received(self, msg: RequestVote) -> None:
        "A candidate asks for our vote (its term is not newer than ours)."

    def pre_vote_received(self, msg: RequestVote) -> None:
        "A would-be candidate asks whether we would vote for it (no term change)."

    def vote_response_received(self, msg: RequestVoteResponse) -> None:
        "A voter answered our RequestVote."

    def pre_vote_response_received(self, msg: RequestVoteResponse) -> None:
        "A voter granted our pre-vote."

    def append_entries_received(self, msg: AppendEntries) -> None:
        "A leader replicates entries or heartbeats (its term is not newer than ours)."

    def append_entries_response_received(self, msg: AppendEntriesResponse) -> None:
        "A follower answered our AppendEntries."

    def install_snapshot_received(self, msg: InstallSnapshot) -> None:
        "A leader sends a chunk of a snapshot."

    def install_snapshot_response_received(self, msg: InstallSnapshotResponse) -> None:
        "A follower answered an InstallSnapshot chunk."

    def timeout_now_received(self, msg: TimeoutNow) -> None:
        "Our leader hands leadership to us: start an election at once."

    def log_persisted(self, index: int) -> None:
        "The driver has stored our log durably up to ``index``."

    def applied(self, index: int, result: object) -> None:
        "The FSM applied the entry at ``index``; result is its return value or a Failure."

    def apply(self, command: bytes) -> Deferred[Any]:
        "Replicate a command; fires with the FSM's result once committed and applied."

    def read_barrier(self, consistent: bool) -> Deferred[int]:
        "Fires with an index once reading local state up to it is linearizable."

    def change_configuration(self, servers: tuple[Server, ...]) -> Deferred[Any]:
        "Replace the voters (differing by one server); fires once committed."

    def transfer_leadership(self) -> Deferred[None]:
        "Hand leadership to the most up-to-date peer; fires once we are no longer leader."

    def describe(self) -> RaftStatus:
        "A snapshot of the server's Raft state."

    def _won_election(self, tally: int) -> None:
        "A candidate's tally reached a majority."

    def _start_election(self) -> None:
        "Become a candidate in a new term."

    def _start_pre_vote(self) -> None:
        "A follower that is a voter gave up waiting for a leader."

    def _quorum_lost(self) -> None:
        "Check-quorum failed: no quorum confirmed us within the lease."

    def _removed(self) -> None:
        "A configuration without us committed: stop leading."

    def _transfer_timed_out(self) -> None:
        "The transfer target did not take over in time."
