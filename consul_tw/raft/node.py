# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
The Raft server facade: storage, transport and FSM around the role machine.

:class:`RaftNode` is the only code that feeds the machine.  It applies the
higher-term rule at one choke point (``receive``), and after every input it
drains the machine's outbox in Raft's order: persist term, vote and log
first, then send messages and apply committed entries to the FSM.  It knows
nothing about sockets: ``send`` is any callable, so tests and a simulated
cluster wire nodes together in memory on one ``task.Clock``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.durations import format_duration
from consul_tw.raft.core import RaftCore, RaftStatus
from consul_tw.raft.effects import (
    AppendToLog,
    ApplyCommitted,
    LeadershipChanged,
    PersistHardState,
    Send,
    TruncateLog,
)
from consul_tw.raft.log import RaftLog
from consul_tw.raft.machine import RaftInputs, RaftMachine
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    LogEntry,
    Message,
    RequestVote,
    RequestVoteResponse,
    Server,
)
from consul_tw.raft.storage.interfaces import ILogStore, IStableStore
from consul_tw.raft.timings import RaftTimings


class IFSM(Protocol):
    """The replicated state machine (for Consul: the catalog)."""

    def apply(self, index: int, data: bytes) -> object:
        """Apply one committed command; the return value (or exception) goes to the writer."""


def format_servers(servers: tuple[Server, ...]) -> str:
    """hashicorp/raft's Go rendering of a configuration, as log lines show it."""
    return (
        "[" + " ".join(f"{{Suffrage:Voter ID:{s.id} Address:{s.address}}}" for s in servers) + "]"
    )


@attrs.define(eq=False)
class RaftNode:
    """One Raft server: machine + stores + FSM + a send function."""

    machine: RaftInputs
    core: RaftCore
    fsm: IFSM
    log_store: ILogStore
    stable_store: IStableStore
    send: Callable[[str, Message], None]
    #: Called with True/False when this server gains or loses leadership,
    #: after the transition has finished (so observers may call ``apply``).
    leadership_observers: list[Callable[[bool], None]] = attrs.field(factory=list)
    _draining: bool = False

    @classmethod
    def create(
        cls,
        *,
        node_id: str,
        address: str,
        timings: RaftTimings,
        clock: IReactorTime,
        fsm: IFSM,
        log_store: ILogStore,
        stable_store: IStableStore,
        logger: HcLogger,
        send: Callable[[str, Message], None] = lambda peer, msg: None,
        rng: random.Random | None = None,
    ) -> RaftNode:
        """Rebuild the machine's core from what the stores hold."""
        term, voted_for = stable_store.load_hard_state()
        core = RaftCore(
            node_id=node_id,
            address=address,
            timings=timings,
            clock=clock,
            rng=rng if rng is not None else random.Random(),
            log=RaftLog.from_entries(log_store.entries()),
            logger=logger,
            term=term,
            voted_for=voted_for,
        )
        core.persisted_index = core.log.last_index
        node = cls(RaftMachine(core), core, fsm, log_store, stable_store, send)
        core.drive = node._feed
        return node

    # -- lifecycle -------------------------------------------------------

    def bootstrap(self, servers: tuple[Server, ...]) -> bool:
        """
        Write the first configuration (term 1, index 1) if the log is empty,
        as hashicorp/raft's BootstrapCluster; False when state already exists.
        """
        if self.core.log.last_index or self.core.term:
            return False
        entry = LogEntry(index=1, term=1, type=EntryType.CONFIGURATION, servers=servers)
        self.stable_store.save_hard_state(1, None)
        self.log_store.append([entry])
        self.core.term = 1
        self.core.log.append(entry)
        self.core.persisted_index = 1
        return True

    def start(self) -> None:
        index, servers = self.core.log.configuration()
        self.core.logger.info("initial configuration", index=index, servers=format_servers(servers))
        self._feed(self.machine.start)

    def stop(self) -> None:
        self._feed(self.machine.stop)

    # -- inputs --------------------------------------------------------------

    def receive(self, message: Message) -> None:
        """Deliver a message from a peer; newer terms are adopted before anything else."""
        if message.term > self.core.term:
            leader = None
            if isinstance(message, AppendEntries):
                leader = Server(id=message.leader_id, address=message.leader_address)
            self._feed(self.machine.higher_term_seen, message.term, leader)
        if message.term < self.core.term:
            self._reject_stale(message)
            return
        if isinstance(message, RequestVote):
            self._feed(self.machine.request_vote_received, message)
        elif isinstance(message, RequestVoteResponse):
            self._feed(self.machine.vote_response_received, message)
        elif isinstance(message, AppendEntries):
            self._feed(self.machine.append_entries_received, message)
        elif isinstance(message, AppendEntriesResponse):
            self._feed(self.machine.append_entries_response_received, message)

    def apply(self, command: bytes) -> Deferred[Any]:
        """Replicate a command; fires with the FSM's result, or NotLeader/RaftShutdown."""
        result = self.machine.apply(command)
        self._drain()
        return result

    def describe(self) -> RaftStatus:
        return self.machine.describe()

    # -- driver ----------------------------------------------------------------

    def _feed(self, input_method: Callable[..., None], *args: object) -> None:
        """Deliver one input, then carry out its effects (unless already doing so)."""
        input_method(*args)
        self._drain()

    def _reject_stale(self, message: Message) -> None:
        """Answer a message from an old term so its sender learns the new one."""
        if isinstance(message, RequestVote):
            self.send(
                message.candidate_id,
                RequestVoteResponse(term=self.core.term, voter_id=self.core.node_id, granted=False),
            )
        elif isinstance(message, AppendEntries):
            self.send(
                message.leader_id,
                AppendEntriesResponse(
                    term=self.core.term, peer_id=self.core.node_id, success=False
                ),
            )

    def _drain(self) -> None:
        """Carry out the outbox: storage first, then sends and FSM application."""
        if self._draining:
            return
        self._draining = True
        try:
            while self.core.outbox:
                effects, self.core.outbox = self.core.outbox, []
                persisted = None
                for effect in effects:
                    if isinstance(effect, PersistHardState):
                        self.stable_store.save_hard_state(effect.term, effect.voted_for)
                    elif isinstance(effect, TruncateLog):
                        self.log_store.truncate_after(effect.last_kept)
                    elif isinstance(effect, AppendToLog):
                        self.log_store.append(effect.entries)
                        persisted = effect.entries[-1].index
                for effect in effects:
                    if isinstance(effect, Send):
                        self.send(effect.peer_id, effect.message)
                    elif isinstance(effect, ApplyCommitted):
                        self._apply_committed(effect.first, effect.last)
                    elif isinstance(effect, LeadershipChanged):
                        # One turn later: observers write through Raft, and
                        # must not run inside this drain.
                        for observer in list(self.leadership_observers):
                            self.core.clock.callLater(0, observer, effect.leader)
                if persisted is not None:
                    self.machine.log_persisted(persisted)
        finally:
            self._draining = False

    def _apply_committed(self, first: int, last: int) -> None:
        for index in range(first, last + 1):
            entry = self.core.log.entry(index)
            result: object = None
            if entry.type is EntryType.COMMAND:
                try:
                    result = self.fsm.apply(index, entry.data)
                except Exception as e:
                    result = Failure(e)
            self.machine.applied(index, result)


def describe_contact(status: RaftStatus, now: float) -> str:
    """``last_contact`` as /v1/agent/self shows it: "0" on the leader, "never", or a duration."""
    if status.state == "Leader":
        return "0"
    if status.last_contact is None:
        return "never"
    return format_duration(now - status.last_contact)
