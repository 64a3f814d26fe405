# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
What the Raft machine asks the outside world to do.

Behaviours never touch storage, sockets or the FSM: they append these
records to ``core.outbox``.  :class:`consul_tw.raft.node.RaftNode` drains the
outbox after every batch of inputs in Raft's required order (persist and
sync first, then send and apply), and tests assert the outbox exactly.
"""

from __future__ import annotations

import attrs

from consul_tw.raft.messages import LogEntry, Message
from consul_tw.raft.storage.interfaces import SnapshotMeta


@attrs.frozen
class PersistHardState:
    """Store current term and vote durably before any reply depends on them."""

    term: int
    voted_for: str | None


@attrs.frozen
class AppendToLog:
    """Store entries durably; the driver reports back with ``log_persisted``."""

    entries: tuple[LogEntry, ...]


@attrs.frozen
class TruncateLog:
    """Drop every stored entry after ``last_kept`` (a follower's log conflict)."""

    last_kept: int


@attrs.frozen
class InstallSnapshotData:
    """A follower received a whole snapshot: store it, compact the log, restore the FSM."""

    meta: SnapshotMeta
    data: bytes


@attrs.frozen
class Send:
    peer_id: str
    message: Message
    #: Where to send it (the configuration's address for the peer).
    address: str = ""


@attrs.frozen
class ApplyCommitted:
    """Apply entries ``first``..``last`` (inclusive) to the FSM, in order."""

    first: int
    last: int


@attrs.frozen
class LeadershipChanged:
    """This server became leader (True) or stopped being leader (False)."""

    leader: bool


Effect = (
    PersistHardState
    | AppendToLog
    | TruncateLog
    | InstallSnapshotData
    | Send
    | ApplyCommitted
    | LeadershipChanged
)
