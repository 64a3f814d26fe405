# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
Raft RPC messages and log entries.

Frozen records: the machine produces and consumes these, the server-RPC
transport (a later issue) encodes them.  Every message carries its sender's
term so that :meth:`consul_tw.raft.node.RaftNode.receive` can apply Raft's
"higher term wins" rule at one choke point.
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


@attrs.frozen(kw_only=True)
class RequestVoteResponse:
    term: int
    voter_id: str
    granted: bool


@attrs.frozen(kw_only=True)
class AppendEntries:
    term: int
    leader_id: str
    leader_address: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[LogEntry, ...] = ()
    leader_commit: int = 0


@attrs.frozen(kw_only=True)
class AppendEntriesResponse:
    term: int
    peer_id: str
    success: bool
    match_index: int = 0


Message = RequestVote | RequestVoteResponse | AppendEntries | AppendEntriesResponse
