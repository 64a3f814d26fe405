# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
The Raft machine's state: the core shared by every role and each role's data.

The core holds what is persistent (term, vote, log) or configuration, plus
the outbox of effects; everything that exists in only one role lives in that
role's data (a candidate has no replication progress, a follower no votes).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.raft.effects import AppendToLog, ApplyCommitted, Effect, PersistHardState
from consul_tw.raft.log import RaftLog
from consul_tw.raft.messages import EntryType, LogEntry, Server
from consul_tw.raft.storage.interfaces import SnapshotMeta
from consul_tw.raft.timings import RaftTimings


class NotLeader(Exception):
    """A write or read reached a server that is not (or no longer) the leader."""


class RaftShutdown(Exception):
    """The Raft server stopped before the request completed."""


class ConfigurationBusy(Exception):
    """A configuration change is still uncommitted: Raft changes one server at a time."""


class ConfigurationError(Exception):
    """A configuration Raft must refuse (e.g. one without voters)."""


class TransferFailed(Exception):
    """Leadership could not be handed over in time; this server stays leader."""


@attrs.frozen(kw_only=True)
class RaftStatus:
    """What HTTP, the CLI and tests may know about a Raft server, in any state."""

    state: str
    term: int
    node_id: str
    address: str
    leader_id: str | None
    leader_address: str | None
    last_contact: float | None
    commit_index: int
    applied_index: int
    last_log_index: int
    last_log_term: int
    configuration_index: int
    voters: tuple[Server, ...]
    snapshot_index: int = 0
    #: On a leader: until when (clock time) a quorum is known to follow it.
    lease_expires: float | None = None


SnapshotSource = Callable[[], "tuple[SnapshotMeta, bytes] | None"]


@attrs.define(kw_only=True)
class RaftCore:
    """Persistent state (term, vote, log), configuration and the outbox."""

    node_id: str
    address: str
    timings: RaftTimings
    clock: IReactorTime
    rng: random.Random
    log: RaftLog
    logger: HcLogger
    term: int = 0
    voted_for: str | None = None
    commit_index: int = 0
    applied_index: int = 0
    persisted_index: int = 0
    leader: Server | None = None
    last_contact: float | None = None
    #: Set by TimeoutNow: the next election asks voters to skip leader stickiness.
    transfer_election: bool = False
    #: No (pre-)votes granted before this clock time: a restarted server
    #: does not remember whom it followed, so it keeps leader stickiness for
    #: one heartbeat timeout after start, as if it had just heard a leader.
    #: Otherwise it could help elect a new leader while the old leader's
    #: lease, which counted on this server, still runs.
    votes_blocked_until: float = 0.0
    outbox: list[Effect] = attrs.field(factory=list)
    #: The latest stored snapshot, for followers that need InstallSnapshot.
    load_snapshot: SnapshotSource = lambda: None
    #: How timers deliver their input: the node facade routes it through its
    #: driver so the outbox is drained afterwards, exactly as for messages.
    drive: Callable[..., None] = lambda input_method, *args: input_method(*args)

    def after(self, delay: float, input_method: Callable[[], None]) -> IDelayedCall:
        """Schedule a timer input on the injected clock."""
        return self.clock.callLater(delay, self.drive, input_method)

    def loop(self, input_method: Callable[[], None]) -> LoopingCall:
        """A LoopingCall on the injected clock, not started yet."""
        loop = LoopingCall(self.drive, input_method)
        loop.clock = self.clock
        return loop

    def follower_timer(self, input_method: Callable[[], None]) -> IDelayedCall:
        """A follower's wait for a leader: 1-2 x the heartbeat timeout."""
        return self.after(self.jittered(self.timings.heartbeat_timeout), input_method)

    def candidate_timer(self, input_method: Callable[[], None]) -> IDelayedCall:
        """A candidate's wait for a decision: 1-2 x the election timeout."""
        return self.after(self.jittered(self.timings.election_timeout), input_method)

    @property
    def voters(self) -> tuple[Server, ...]:
        return self.log.configuration()[1]

    @property
    def peers(self) -> tuple[Server, ...]:
        return tuple(s for s in self.voters if s.id != self.node_id)

    @property
    def is_voter(self) -> bool:
        return any(s.id == self.node_id for s in self.voters)

    def describe_node(self, role: str) -> str:
        return f"Node at {self.address} [{role}]"

    def set_hard_state(self, term: int, voted_for: str | None) -> None:
        self.term, self.voted_for = term, voted_for
        self.outbox.append(PersistHardState(term, voted_for))

    def jittered(self, base: float) -> float:
        """hashicorp/raft's randomised timeout: between base and 2 × base."""
        return base + self.rng.random() * base

    def heard_from_leader_recently(self) -> bool:
        """
        Leader stickiness: a server that heard from a live leader within the
        minimum heartbeat timeout ignores (pre-)votes, so a server coming
        back from a partition cannot depose a healthy leader.  It is also
        what makes the leader lease safe: no quorum can elect anyone else
        before the lease runs out.
        """
        if self.clock.seconds() < self.votes_blocked_until:
            return True
        if self.leader is None:
            return False
        if self.leader.id == self.node_id:
            return True
        return (
            self.last_contact is not None
            and self.clock.seconds() - self.last_contact < self.timings.heartbeat_timeout
        )

    def append_local(self, entry_type: EntryType, data: bytes = b"", **extra: Any) -> LogEntry:
        entry = LogEntry(
            index=self.log.last_index + 1, term=self.term, type=entry_type, data=data, **extra
        )
        self.log.append(entry)
        self.outbox.append(AppendToLog((entry,)))
        return entry

    def advance_commit(self, index: int) -> None:
        """Raise the commit index and ask for the newly committed entries to be applied."""
        index = min(index, self.log.last_index)
        if index > self.commit_index:
            first = max(self.commit_index + 1, self.log.first_index)
            self.commit_index = index
            if first <= index:
                self.outbox.append(ApplyCommitted(first, index))


@attrs.define
class TimedRole:
    """A role waiting on one timer (follower and both kinds of candidate)."""

    timer: IDelayedCall


@attrs.define
class FollowerData(TimedRole):
    #: hashicorp/raft warns once, not every timeout, that it cannot elect.
    warned_no_election: bool = False
    #: A snapshot being received in chunks: (last_index, last_term) and the bytes so far.
    incoming_snapshot: tuple[int, int] | None = None
    snapshot_chunks: bytearray = attrs.field(factory=bytearray)


@attrs.define
class CandidateData(TimedRole):
    votes: set[str]
    #: True while asking for pre-votes (nobody has changed term yet).
    pre_vote: bool = False


@attrs.define
class Progress:
    """A leader's view of one follower's log and of its answers."""

    next_index: int
    match_index: int = 0
    #: The newest ``seq`` this follower answered, and when the leader sent it.
    acked_seq: int = 0
    acked_at: float = 0.0
    #: The snapshot being sent: its meta, bytes and the offset to send next.
    snapshot: tuple[SnapshotMeta, bytes] | None = None
    snapshot_offset: int = 0
    #: When the snapshot chunk now in flight was sent (None: none in flight).
    chunk_sent_at: float | None = None


@attrs.define
class ReadWaiter:
    """A read barrier: fires once a quorum answered ``seq`` and ``index`` is applied."""

    seq: int
    index: int
    deferred: Deferred[int]


@attrs.define
class Transfer:
    """A leadership hand-over in progress."""

    target: Server
    deferred: Deferred[None]
    timer: IDelayedCall
    sent: bool = False


@attrs.define
class LeaderData:
    """What exists only while leading: timers, follower progress, waiting writers and reads."""

    heartbeat: LoopingCall
    lease_check: LoopingCall
    progress: dict[str, Progress]
    pending: dict[int, Deferred[Any]]
    #: The no-op that opened this term: reads wait until it is applied.
    noop_index: int
    #: When leadership began: a follower that has not answered yet counts
    #: as last heard from then, giving a new leader one lease of grace.
    started_at: float
    #: The ``seq`` of the latest round sent, and when each recent one went
    #: out (bounded): an answer echoing a seq dates the follower's contact.
    seq: int = 0
    sent_at: dict[int, float] = attrs.field(factory=dict)
    #: New entries since the last replication round (sent at the end of the batch).
    dirty: bool = False
    commit_timer: IDelayedCall | None = None
    reads: list[ReadWaiter] = attrs.field(factory=list)
    transfer: Transfer | None = None
    #: Set when TimeoutNow went out: lease reads are over for this term.
    lease_revoked: bool = False
    #: Servers removed by a configuration change, still sent entries up to
    #: the one removing them: id -> (server, that entry's index).
    departing: dict[str, tuple[Server, int]] = attrs.field(factory=dict)


def cancel_timer(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


def fire_eventually(core: RaftCore, deferred: Deferred[Any], result: object) -> None:
    """Fire a user-visible Deferred one reactor turn later, never mid-transition."""
    if isinstance(result, Failure):
        core.clock.callLater(0, deferred.errback, result)
    else:
        core.clock.callLater(0, deferred.callback, result)
