# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
The Raft server facade: storage, transport and FSM around the role machine.

:class:`RaftNode` is the only code that feeds the machine.  It applies the
higher-term rule at one choke point (``receive``), and it drains the
machine's outbox in Raft's order: store term, vote, log and snapshots and
``sync()`` them, then send messages that depended on them and apply
committed entries to the FSM.

Group commit: with ``group_commit`` on (the agent's setting) the drain runs
once per reactor turn, not once per input, so every write that arrived in
the same turn shares one fsync and one AppendEntries round; requests that
arrive while the fsync blocks the reactor wait in the kernel and make up
the next batch.  The fsync runs inline on purpose: a worker thread was
measured slower here (GIL hand-offs cost more than a 0.3 ms fdatasync), and
the leader pushes its AppendEntries to the sockets before it, so followers
store in parallel anyway.  It knows
nothing about sockets: ``send`` is any callable, so tests and a simulated
cluster wire nodes together in memory on one ``task.Clock``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.durations import format_duration
from consul_tw.raft.core import RaftCore, RaftStatus
from consul_tw.raft.effects import (
    AppendToLog,
    ApplyCommitted,
    Effect,
    InstallSnapshotData,
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
    InstallSnapshot,
    InstallSnapshotResponse,
    LogEntry,
    Message,
    RequestVote,
    RequestVoteResponse,
    Server,
    TimeoutNow,
)
from consul_tw.raft.storage.interfaces import (
    ILogStore,
    ISnapshotStore,
    IStableStore,
    SnapshotMeta,
)
from consul_tw.raft.storage.memory import MemorySnapshotStore
from consul_tw.raft.timings import RaftTimings


class IFSM(Protocol):
    """The replicated state machine (for Consul: the state store)."""

    def apply(self, index: int, data: bytes) -> object:
        """Apply one committed command; the return value (or exception) goes to the writer."""

    def snapshot(self) -> bytes:
        """The whole state, for log compaction and InstallSnapshot."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's."""


@attrs.frozen(kw_only=True)
class SnapshotPolicy:
    """When to snapshot and how much log to keep behind it (Consul's raft_snapshot_*)."""

    #: Snapshot once this many entries were applied since the last one (Consul: 16384).
    threshold: int = 16384
    #: Entries kept behind a snapshot so slow followers can catch up without one (10240).
    trailing_logs: int = 10240


def format_servers(servers: tuple[Server, ...]) -> str:
    """hashicorp/raft's Go rendering of a configuration, as log lines show it."""
    return (
        "[" + " ".join(f"{{Suffrage:Voter ID:{s.id} Address:{s.address}}}" for s in servers) + "]"
    )


#: Messages a leader may send before its own log is durable (Raft §10.2.1):
#: followers store the entries in parallel with the leader's fsync.
_EARLY = (AppendEntries, InstallSnapshot, TimeoutNow)


@attrs.define(eq=False)
class RaftNode:
    """One Raft server: machine + stores + FSM + a send function."""

    machine: RaftInputs
    core: RaftCore
    fsm: IFSM
    log_store: ILogStore
    stable_store: IStableStore
    send: Callable[[str, Message], None]
    snapshot_store: ISnapshotStore = attrs.field(factory=MemorySnapshotStore)
    snapshot_policy: SnapshotPolicy = attrs.field(factory=SnapshotPolicy)
    #: When set, sends go here with the peer's address (the real transport).
    send_to: Callable[[str, str, Message], None] | None = None
    #: Called with True/False when this server gains or loses leadership,
    #: after the transition has finished (so observers may call ``apply``).
    leadership_observers: list[Callable[[bool], None]] = attrs.field(factory=list)
    group_commit: bool = False
    #: Puts the messages sent so far on the wire now (before an inline fsync).
    push_sends: Callable[[], None] | None = None
    _draining: bool = False
    _flush_call: IDelayedCall | None = None
    #: The highest index the FSM has applied (or restored from a snapshot).
    _fsm_index: int = 0
    #: The newest snapshot taken, installed or loaded, and its index.
    _latest_snapshot: tuple[SnapshotMeta, bytes] | None = None
    _snapshot_index: int = 0

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
        send: Callable[[str, Message], None] | None = None,
        rng: random.Random | None = None,
        snapshot_store: ISnapshotStore | None = None,
        snapshot_policy: SnapshotPolicy | None = None,
        group_commit: bool = False,
    ) -> RaftNode:
        """Rebuild the machine's core from what the stores hold: snapshot, then log."""
        snapshots = snapshot_store if snapshot_store is not None else MemorySnapshotStore()
        term, voted_for = stable_store.load_hard_state()
        log = RaftLog()
        fsm_index = 0
        latest = snapshots.latest()
        if latest is not None:
            meta, blob = latest
            fsm.restore(blob)
            fsm_index = meta.index
            log.compact_through(meta.index, meta.term, meta.servers, meta.configuration_index)
        for entry in log_store.entries():
            if entry.index <= log.snapshot_index:
                continue
            if entry.index != log.last_index + 1:
                logger.error(
                    "log does not follow the snapshot, discarding it",
                    snapshot=log.snapshot_index,
                    first=entry.index,
                )
                log_store.truncate_after(0)
                log_store.sync()
                break
            log.append(entry)
        core = RaftCore(
            node_id=node_id,
            address=address,
            timings=timings,
            clock=clock,
            rng=rng if rng is not None else random.Random(),
            log=log,
            logger=logger,
            term=term,
            voted_for=voted_for,
            commit_index=fsm_index,
            applied_index=fsm_index,
        )
        core.persisted_index = core.log.last_index
        node = cls(
            RaftMachine(core),
            core,
            fsm,
            log_store,
            stable_store,
            send if send is not None else (lambda peer, msg: None),
            snapshot_store=snapshots,
            snapshot_policy=snapshot_policy or SnapshotPolicy(),
            group_commit=group_commit,
        )
        node._fsm_index = fsm_index
        if latest is not None:
            node._remember_snapshot(*latest)
        core.load_snapshot = lambda: node._latest_snapshot
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
        self.log_store.sync()
        self.stable_store.sync()
        self.core.term = 1
        self.core.log.append(entry)
        self.core.persisted_index = 1
        return True

    def start(self) -> None:
        index, servers = self.core.log.configuration()
        self.core.logger.info("initial configuration", index=index, servers=format_servers(servers))
        self._feed(self.machine.start)

    def stop(self) -> Deferred[None]:
        """Stop for good, storing the last batch first (nothing half-written)."""
        self._feed(self.machine.stop)
        self._drain()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        return succeed(None)

    # -- inputs --------------------------------------------------------------

    def receive(self, message: Message) -> None:
        """Deliver a message from a peer; newer terms are adopted before anything else."""
        core = self.core
        if isinstance(message, RequestVote):
            if message.pre_vote:
                # Asks about a term nobody is in yet: never a reason to change ours.
                self._feed(self.machine.pre_vote_received, message)
                return
            if (
                message.term > core.term
                and not message.transfer
                and core.heard_from_leader_recently()
            ):
                # Leader stickiness: refuse without adopting the term, so a
                # server returning from a partition cannot depose the leader.
                self._send_now(
                    Send(
                        message.candidate_id,
                        RequestVoteResponse(term=core.term, voter_id=core.node_id, granted=False),
                        message.candidate_address,
                    )
                )
                return
        if isinstance(message, RequestVoteResponse) and message.pre_vote:
            if message.granted:
                self._feed(self.machine.pre_vote_response_received, message)
                return
            if message.term <= core.term:
                return
        if message.term > core.term:
            leader = None
            if isinstance(message, AppendEntries | InstallSnapshot | TimeoutNow):
                leader = Server(id=message.leader_id, address=message.leader_address)
            self._feed(self.machine.higher_term_seen, message.term, leader)
        if message.term < core.term:
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
        elif isinstance(message, InstallSnapshot):
            self._feed(self.machine.install_snapshot_received, message)
        elif isinstance(message, InstallSnapshotResponse):
            self._feed(self.machine.install_snapshot_response_received, message)
        elif isinstance(message, TimeoutNow):
            self._feed(self.machine.timeout_now_received, message)

    def apply(self, command: bytes) -> Deferred[Any]:
        """Replicate a command; fires with the FSM's result, or NotLeader/RaftShutdown."""
        result = self.machine.apply(command)
        self._schedule_drain()
        return result

    def read_barrier(self, consistent: bool = False) -> Deferred[int]:
        """
        Fires with an index once local state up to it may be read linearizably:
        within the leader lease at once (after this term's no-op is applied),
        else or with ``consistent`` after a quorum answered a fresh heartbeat.
        Fails with NotLeader anywhere but on the leader.
        """
        result = self.machine.read_barrier(consistent)
        self._schedule_drain()
        return result

    def add_voter(self, server: Server) -> Deferred[Any]:
        """Add (or re-address) one voter; fires once the new configuration committed."""
        voters = tuple(s for s in self.core.voters if s.id != server.id) + (server,)
        return self._reconfigure(voters)

    def remove_server(self, server_id: str) -> Deferred[Any]:
        """Remove one voter; fires once the new configuration committed."""
        return self._reconfigure(tuple(s for s in self.core.voters if s.id != server_id))

    def transfer_leadership(self) -> Deferred[None]:
        """Hand leadership to the most up-to-date peer (a leaving leader's courtesy)."""
        result = self.machine.transfer_leadership()
        self._schedule_drain()
        return result

    def describe(self) -> RaftStatus:
        return self.machine.describe()

    def leader_hint(self) -> tuple[bool, str | None]:
        """
        (do we lead, the leader's address) from the core, for routing each
        request cheaply; ``describe`` is the full view.  The core's leader
        is set on winning and cleared or replaced on every way out of
        leadership (step-down, check-quorum, removal, shutdown).
        """
        leader = self.core.leader
        if leader is None:
            return False, None
        return leader.id == self.core.node_id, leader.address

    def _reconfigure(self, voters: tuple[Server, ...]) -> Deferred[Any]:
        result = self.machine.change_configuration(voters)
        self._schedule_drain()
        return result

    # -- driver ----------------------------------------------------------------

    def _feed(self, input_method: Callable[..., None], *args: object) -> None:
        """Deliver one input, then carry out its effects (now, or at the end of the turn)."""
        input_method(*args)
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if not self.group_commit:
            self._drain()
        elif self._flush_call is None or not self._flush_call.active():
            self._flush_call = self.core.clock.callLater(0, self._drain)

    def _reject_stale(self, message: Message) -> None:
        """Answer a message from an old term so its sender learns the new one."""
        core = self.core
        reply: Send | None = None
        if isinstance(message, RequestVote):
            reply = Send(
                message.candidate_id,
                RequestVoteResponse(term=core.term, voter_id=core.node_id, granted=False),
                message.candidate_address,
            )
        elif isinstance(message, AppendEntries):
            reply = Send(
                message.leader_id,
                AppendEntriesResponse(term=core.term, peer_id=core.node_id, success=False),
                message.leader_address,
            )
        elif isinstance(message, InstallSnapshot):
            reply = Send(
                message.leader_id,
                InstallSnapshotResponse(
                    term=core.term,
                    peer_id=core.node_id,
                    success=False,
                    last_index=message.last_index,
                ),
                message.leader_address,
            )
        if reply is not None:
            self._send_now(reply)

    def _send_now(self, effect: Send) -> None:
        if self.send_to is not None:
            address = effect.address or self._address_of(effect.peer_id)
            self.send_to(effect.peer_id, address, effect.message)
        else:
            self.send(effect.peer_id, effect.message)

    def _address_of(self, peer_id: str) -> str:
        for server in self.core.voters:
            if server.id == peer_id:
                return server.address
        return ""

    def _drain(self) -> None:
        """Carry out the outbox: storage and sync first, then sends and FSM application."""
        if self._draining:
            return
        self._draining = True
        try:
            self.machine.end_of_batch()
            while self.core.outbox:
                effects, self.core.outbox = self.core.outbox, []
                self._run_batch(effects)
                self.machine.end_of_batch()
        finally:
            self._draining = False

    def _run_batch(self, effects: list[Effect]) -> None:
        stored, persisted = self._store(effects)
        if stored:
            if self.push_sends is not None:
                self.push_sends()  # followers store in parallel with our fsync
            self.log_store.sync()
            self.stable_store.sync()
        self._finish_batch(effects, persisted)

    def _store(self, effects: list[Effect]) -> tuple[bool, int | None]:
        """Write the batch's storage effects (not yet durable); send what need not wait."""
        persisted = None
        stored = False
        for effect in effects:
            if isinstance(effect, Send) and isinstance(effect.message, _EARLY):
                self._send_now(effect)
            elif isinstance(effect, PersistHardState):
                self.stable_store.save_hard_state(effect.term, effect.voted_for)
                stored = True
            elif isinstance(effect, TruncateLog):
                self.log_store.truncate_after(effect.last_kept)
                stored = True
            elif isinstance(effect, AppendToLog):
                self.log_store.append(effect.entries)
                persisted = effect.entries[-1].index
                stored = True
            elif isinstance(effect, InstallSnapshotData):
                self._install_snapshot(effect)
                stored = True
        return stored, persisted

    def _finish_batch(self, effects: list[Effect], persisted: int | None) -> None:
        """After the batch is durable: replies, votes, FSM application, notifications."""
        for effect in effects:
            if isinstance(effect, Send) and not isinstance(effect.message, _EARLY):
                self._send_now(effect)
            elif isinstance(effect, ApplyCommitted):
                self._apply_committed(effect.first, effect.last)
            elif isinstance(effect, LeadershipChanged):
                # One turn later: observers write through Raft, and
                # must not run inside this drain.
                for observer in list(self.leadership_observers):
                    self.core.clock.callLater(0, observer, effect.leader)
        if persisted is not None:
            self.machine.log_persisted(persisted)
        self._maybe_snapshot()

    def _remember_snapshot(self, meta: SnapshotMeta, blob: bytes) -> None:
        """The latest snapshot, kept for InstallSnapshot so no transition reads a file."""
        self._latest_snapshot = (meta, blob)
        self._snapshot_index = meta.index

    def _install_snapshot(self, effect: InstallSnapshotData) -> None:
        meta = effect.meta
        self.snapshot_store.save(meta, effect.data)
        self._remember_snapshot(meta, effect.data)
        if self.core.log.last_index > meta.index:
            self.log_store.delete_through(meta.index)
        else:
            self.log_store.truncate_after(0)
        self.fsm.restore(effect.data)
        self._fsm_index = meta.index

    def _apply_committed(self, first: int, last: int) -> None:
        for index in range(max(first, self._fsm_index + 1), last + 1):
            entry = self.core.log.entry(index)
            result: object = None
            if entry.type is EntryType.COMMAND:
                try:
                    result = self.fsm.apply(index, entry.data)
                except Exception as e:
                    result = Failure(e)
            self._fsm_index = index
            self.machine.applied(index, result)

    # -- snapshots -------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        if self._fsm_index - self._snapshot_index >= self.snapshot_policy.threshold:
            self.take_snapshot()

    def take_snapshot(self) -> SnapshotMeta | None:
        """Snapshot the FSM at its applied index and compact the log behind it."""
        index = self._fsm_index
        log = self.core.log
        if index <= self._snapshot_index:
            return None
        term = log.term_at(index)
        if term is None:
            return None
        config_index, servers = log.configuration_at(index)
        blob = self.fsm.snapshot()
        meta = SnapshotMeta(
            index=index,
            term=term,
            servers=servers,
            configuration_index=config_index,
            size=len(blob),
        )
        self.snapshot_store.save(meta, blob)
        self._remember_snapshot(meta, blob)
        keep_from = index - self.snapshot_policy.trailing_logs
        compact_to = max(keep_from, log.snapshot_index)
        # The log keeps trailing entries; the snapshot's (index, term) becomes
        # the log's anchor only once everything up to it is compacted.
        if compact_to > log.snapshot_index:
            compact_term = log.term_at(compact_to) or 0
            c_index, c_servers = log.configuration_at(compact_to)
            log.compact_through(compact_to, compact_term, c_servers, c_index)
            self.log_store.delete_through(compact_to)
            self.log_store.sync()
        self.core.logger.info("snapshot complete", index=index, size=len(blob))
        return meta


def describe_contact(status: RaftStatus, now: float) -> str:
    """``last_contact`` as /v1/agent/self shows it: "0" on the leader, "never", or a duration."""
    if status.state == "Leader":
        return "0"
    if status.last_contact is None:
        return "never"
    return format_duration(now - status.last_contact)
