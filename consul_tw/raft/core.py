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
from consul_tw.raft.timings import RaftTimings


class NotLeader(Exception):
    """A write reached a server that is not (or no longer) the leader."""


class RaftShutdown(Exception):
    """The Raft server stopped before the request completed."""


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
    outbox: list[Effect] = attrs.field(factory=list)
    #: How timers deliver their input: the node facade routes it through its
    #: driver so the outbox is drained afterwards, exactly as for messages.
    drive: Callable[..., None] = lambda input_method, *args: input_method(*args)

    def after(self, delay: float, input_method: Callable[[], None]) -> IDelayedCall:
        """Schedule a timer input on the injected clock."""
        return self.clock.callLater(delay, self.drive, input_method)

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

    def append_local(self, entry_type: EntryType, data: bytes = b"") -> LogEntry:
        entry = LogEntry(index=self.log.last_index + 1, term=self.term, type=entry_type, data=data)
        self.log.append(entry)
        self.outbox.append(AppendToLog((entry,)))
        return entry

    def advance_commit(self, index: int) -> None:
        """Raise the commit index and ask for the newly committed entries to be applied."""
        index = min(index, self.log.last_index)
        if index > self.commit_index:
            first = self.commit_index + 1
            self.commit_index = index
            self.outbox.append(ApplyCommitted(first, index))


@attrs.define
class FollowerData:
    timer: IDelayedCall
    #: hashicorp/raft warns once, not every timeout, that it cannot elect.
    warned_no_election: bool = False


@attrs.define
class CandidateData:
    timer: IDelayedCall
    votes: set[str]


@attrs.define
class Progress:
    """A leader's view of one follower's log."""

    next_index: int
    match_index: int = 0


@attrs.define
class LeaderData:
    heartbeat: LoopingCall
    progress: dict[str, Progress]
    pending: dict[int, Deferred[Any]]


def cancel_timer(call: IDelayedCall) -> None:
    if call.active():
        call.cancel()


def fire_eventually(core: RaftCore, deferred: Deferred[Any], result: object) -> None:
    """Fire a user-visible Deferred one reactor turn later, never mid-transition."""
    if isinstance(result, Failure):
        core.clock.callLater(0, deferred.errback, result)
    else:
        core.clock.callLater(0, deferred.callback, result)
