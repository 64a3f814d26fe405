# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
Raft RPC messages and log entries.

Frozen records: the machine produces and consumes these, and
:mod:`consul_tw.rpc.raft_codec` carries them over the server RPC port.
Every message carries its sender's term so that
:meth:`consul_tw.raft.node.RaftNode.receive` can apply Raft's "higher term
wins" rule at one choke point (pre-vote traffic is the one, deliberate,
exception: a pre-vote asks about a term nobody has entered yet).

``seq`` on the leader's messages is a per-leader counter echoed by the
follower's answer.  It tells the leader which of its messages a follower
has seen, so that ``verify_leader`` (``?consistent`` reads) counts only
answers to messages sent after the read arrived, and the leader lease
(default reads, check-quorum) runs from the send time of the newest
message a quorum has answered.
"""

from __future__ import annotations

import enum

import attrs


class EntryType(enum.Enum):
    COMMAND = "command"
    NOOP = "noop"
    CONFIGURATION = "configuration"


@attrs.frozen(kw_only=True)
class Server:
    """One voter of the Raft configuration (raft protocol 3: the ID is the node UUID)."""

    id: str
    address: str


@attrs.frozen(kw_only=True)
class LogEntry:
    index: int
    term: int
    type: EntryType = EntryType.COMMAND
    data: bytes = b""
    #: For CONFIGURATION entries: the voters from this entry on.
    servers: tuple[Server, ...] = ()


@attrs.frozen(kw_only=True)
class RequestVote:
    term: int
    candidate_id: str
    candidate_address: str
    last_log_index: int
    last_log_term: int
    #: A pre-vote: "would you vote for me in ``term``?"  Nobody changes term for it.
    pre_vote: bool = False
    #: Sent on the old leader's request (TimeoutNow): voters skip leader stickiness.
    transfer: bool = False


@attrs.frozen(kw_only=True)
class RequestVoteResponse:
    term: int
    voter_id: str
    granted: bool
    pre_vote: bool = False


@attrs.frozen(kw_only=True)
class AppendEntries:
    term: int
    leader_id: str
    leader_address: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[LogEntry, ...] = ()
    leader_commit: int = 0
    seq: int = 0


@attrs.frozen(kw_only=True)
class AppendEntriesResponse:
    term: int
    peer_id: str
    success: bool
    #: On success the follower's last matching index; on failure a hint
    #: (the highest index the leader may try next).
    match_index: int = 0
    seq: int = 0


@attrs.frozen(kw_only=True)
class InstallSnapshot:
    """One chunk of a snapshot, for a follower whose next entry was compacted away."""

    term: int
    leader_id: str
    leader_address: str
    last_index: int
    last_term: int
    #: The configuration as of ``last_index``.
    servers: tuple[Server, ...]
    configuration_index: int
    #: Byte offset of ``data`` in the whole snapshot; ``done`` marks the last chunk.
    offset: int
    data: bytes
    done: bool
    seq: int = 0


@attrs.frozen(kw_only=True)
class InstallSnapshotResponse:
    term: int
    peer_id: str
    success: bool
    last_index: int
    #: Bytes of the snapshot received so far (the next chunk's offset).
    offset: int = 0
    seq: int = 0


@attrs.frozen(kw_only=True)
class TimeoutNow:
    """The leader hands over: the receiver starts an election at once."""

    term: int
    leader_id: str
    leader_address: str


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)
