# -*- test-case-name: tests.sim.test_raft_sim -*-
"""
A deterministic Raft cluster: N real :class:`~consul_tw.raft.node.RaftNode`
objects on one simulated clock, wired by an in-memory network with faults.

Why a simulator: Raft's bugs live in interleavings (a vote that arrives
after a new term began, an old leader's AppendEntries delivered after a
partition heals, a crash between storing a vote and answering it).  Real
time cannot reproduce them; one :class:`~consul_tw.testing.network.SimClock`
and one seeded ``random.Random`` can, exactly, from a seed.  Virtual time is
free, so a minute of a five-server cluster runs in well under a second.

- :class:`RaftNetwork` delivers each message with ``clock.callLater(latency)``;
  a random latency per message also reorders them.  Faults: drop and
  duplicate probabilities, partitions (``partition``/``isolate``/``heal``,
  checked when a message is sent *and* when it arrives, as a cut link loses
  what is in flight), and crashes (in-flight messages to and from a crashed
  node are dropped, as its TCP connections die with it).
- :class:`RaftCluster` owns the nodes, their stores (a crashed node's
  "disk": ``restart`` rebuilds a node from them with a fresh FSM, restored
  from the node's latest snapshot if any, then refilled by Raft
  re-applying committed entries), a history of client writes
  (:class:`~consul_tw.testing.raft_invariants.Write`) and an
  :class:`~consul_tw.testing.raft_invariants.InvariantChecker` that runs
  after every delivered message, every fault and every clock step.

Nothing here touches the global reactor.
"""

from __future__ import annotations

import functools
import json
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.raft.messages import Message, Server
from consul_tw.raft.node import RaftNode, SnapshotPolicy
from consul_tw.raft.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from consul_tw.raft.timings import RaftTimings
from consul_tw.testing.network import SimClock
from consul_tw.testing.raft_invariants import InvariantChecker, Read, Write

#: LAN-like timings for the simulation: heartbeats every 50 ms, a follower
#: gives up on its leader after 0.5-1 s.  Latencies are a few milliseconds,
#: so (as in production, where both scale together) a message is much
#: faster than a heartbeat; the dev timings (3.5 ms heartbeats) would only
#: cost more events per simulated second.
SIM_TIMINGS = RaftTimings(
    heartbeat_timeout=0.5, election_timeout=0.5, leader_lease_timeout=0.25, commit_timeout=0.01
)

#: Snapshot every 40 applied entries and keep 10 behind: a few hundred
#: writes then exercise compaction, and a server that was down for a while
#: catches up through InstallSnapshot rather than the log.
SIM_SNAPSHOTS = SnapshotPolicy(threshold=40, trailing_logs=10)

Bootstrap = Literal["all", "first"]


@attrs.frozen(kw_only=True)
class Faults:
    """How the simulated network misbehaves; every draw comes from the network's seeded rng."""

    #: Probability that one copy of a message is lost.
    drop: float = 0.0
    #: Probability that a message is sent twice (each copy with its own latency and fate).
    duplicate: float = 0.0
    #: One-way latency, drawn uniformly per copy; a wide range reorders messages.
    latency: tuple[float, float] = (0.001, 0.005)


@attrs.define
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    #: Lost to a partition (at send or on arrival).
    cut: int = 0
    #: Lost because the sender or the receiver crashed meanwhile.
    crashed: int = 0


@attrs.define(eq=False)
class RaftNetwork:
    """Point-to-point message delivery between node ids, on one clock, with faults."""

    clock: IReactorTime
    rng: random.Random
    faults: Faults = Faults()
    #: Called after every delivered message (the cluster checks invariants there).
    on_delivery: Callable[[], None] | None = None
    #: Called with (src, dst, message) for every message a live node sends,
    #: before any fault applies: lets a test see what a node said.
    tap: Callable[[str, str, Message], None] | None = None
    stats: NetworkStats = attrs.field(factory=NetworkStats)
    _receivers: dict[str, Callable[[Message], None]] = attrs.field(factory=dict)
    #: Bumped on attach and detach, so messages stamped with an older
    #: incarnation (sent before a crash or a restart) are dropped.
    _incarnations: dict[str, int] = attrs.field(factory=dict)
    #: node id → partition side; empty when the network is whole.
    _sides: dict[str, int] = attrs.field(factory=dict)

    def attach(self, node_id: str, receive: Callable[[Message], None]) -> None:
        self._incarnations[node_id] = self._incarnations.get(node_id, 0) + 1
        self._receivers[node_id] = receive

    def detach(self, node_id: str) -> None:
        """The node crashed: it neither sends nor receives, and what it had in flight is lost."""
        self._incarnations[node_id] = self._incarnations.get(node_id, 0) + 1
        self._receivers.pop(node_id, None)

    # -- partitions ------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes in the same group can talk; a node in no group is cut off from all."""
        self._sides = {}
        for side, group in enumerate(groups):
            for node_id in group:
                self._sides[node_id] = side
        for node_id in self._incarnations:
            if node_id not in self._sides:
                self._sides[node_id] = len(self._sides) + len(groups)

    def isolate(self, node_id: str) -> None:
        """Cut one node off from everyone, keeping any partition among the others."""
        if not self._sides:
            self._sides = dict.fromkeys(self._incarnations, 0)
        self._sides[node_id] = max(self._sides.values(), default=0) + 1

    def heal(self) -> None:
        self._sides = {}

    def connected(self, src: str, dst: str) -> bool:
        return not self._sides or self._sides.get(src) == self._sides.get(dst)

    def describe_partition(self) -> list[list[str]]:
        groups: dict[int, list[str]] = {}
        for node_id, side in sorted(self._sides.items()):
            groups.setdefault(side, []).append(node_id)
        return list(groups.values())

    # -- delivery ----------------------------------------------------------------

    def send(self, src: str, dst: str, message: Message) -> None:
        """The ``send`` a node is built with (bound to its id): fire and forget, like TCP RPC."""
        if src not in self._receivers:
            return
        self.stats.sent += 1
        if self.tap is not None:
            self.tap(src, dst, message)
        if not self.connected(src, dst):
            self.stats.cut += 1
            return
        copies = 1
        if self.faults.duplicate and self.rng.random() < self.faults.duplicate:
            copies = 2
            self.stats.duplicated += 1
        stamp = (self._incarnations[src], self._incarnations.get(dst, 0))
        low, high = self.faults.latency
        for _ in range(copies):
            if self.faults.drop and self.rng.random() < self.faults.drop:
                self.stats.dropped += 1
                continue
            self.clock.callLater(
                self.rng.uniform(low, high), self._deliver, src, dst, stamp, message
            )

    def _deliver(self, src: str, dst: str, stamp: tuple[int, int], message: Message) -> None:
        if stamp != (self._incarnations.get(src, 0), self._incarnations.get(dst, 0)):
            self.stats.crashed += 1
            return
        receive = self._receivers.get(dst)
        if receive is None:
            self.stats.crashed += 1
            return
        if not self.connected(src, dst):
            self.stats.cut += 1
            return
        self.stats.delivered += 1
        receive(message)
        if self.on_delivery is not None:
            self.on_delivery()


@attrs.define(eq=False)
class RecordingFSM:
    """
    An FSM that records what it applied and answers with the index, so a
    client's acknowledgement says where its command landed.  ``snapshot`` /
    ``restore`` carry the record itself, so a node restored from a snapshot
    still shows everything applied before it.
    """

    applied: list[tuple[int, bytes]] = attrs.field(factory=list)

    def apply(self, index: int, data: bytes) -> int:
        self.applied.append((index, data))
        return index

    def snapshot(self) -> bytes:
        return json.dumps([[index, data.hex()] for index, data in self.applied]).encode()

    def restore(self, data: bytes) -> None:
        # A new list, so the invariant checker sees a new history and rechecks it.
        self.applied = [(index, bytes.fromhex(hexed)) for index, hexed in json.loads(data)]


@attrs.define(eq=False)
class NodeDisk:
    """What survives a crash: the node's stores."""

    log_store: MemoryLogStore = attrs.field(factory=MemoryLogStore)
    stable_store: MemoryStableStore = attrs.field(factory=MemoryStableStore)
    snapshot_store: MemorySnapshotStore = attrs.field(factory=MemorySnapshotStore)


@attrs.frozen
class SimLogger(HcLogger):
    """
    An HcLogger that hands INFO and above to the cluster's recent-events
    buffer instead of twisted.logger: cheaper, and a failing invariant can
    print what led up to it.
    """

    sink: Callable[[str, str, str], None] = attrs.field(default=lambda level, name, text: None)

    def named(self, child: str) -> HcLogger:
        return SimLogger(f"{self.name}.{child}", self.sink)

    def _emit(self, level: str, message: str, pairs: dict[str, Any]) -> None:
        if level in ("INFO", "WARN", "ERROR"):
            rendered = " ".join(f"{k}={v}" for k, v in pairs.items())
            self.sink(level, self.name, f"{message} {rendered}".rstrip())


@attrs.define(eq=False)
class RaftCluster:
    """
    N Raft servers on one clock, bootstrapped and started on construction.

    ``check_every_delivery`` runs the invariant checker after each delivered
    message (the default; it is cheap because the checker is incremental);
    it also runs after each fault, submit and clock step.
    """

    size: int = 3
    seed: int = 0
    faults: Faults = Faults()
    timings: RaftTimings = SIM_TIMINGS
    snapshot_policy: SnapshotPolicy = SIM_SNAPSHOTS
    #: The agent's driver mode: effects drained once per reactor turn.
    group_commit: bool = True
    #: "all": every server bootstraps the same configuration (Consul's
    #: bootstrap-expect); "first": only the first does, the others learn it.
    bootstrap: Bootstrap = "all"
    check_every_delivery: bool = True
    clock: SimClock = attrs.field(factory=SimClock)
    network: RaftNetwork = attrs.field(init=False)
    checker: InvariantChecker = attrs.field(factory=InvariantChecker)
    node_ids: tuple[str, ...] = attrs.field(init=False)
    servers: tuple[Server, ...] = attrs.field(init=False)
    nodes: dict[str, RaftNode] = attrs.field(init=False, factory=dict)
    disks: dict[str, NodeDisk] = attrs.field(init=False, factory=dict)
    crashed: set[str] = attrs.field(init=False, factory=set)
    incarnations: dict[str, int] = attrs.field(init=False, factory=dict)
    writes: list[Write] = attrs.field(init=False, factory=list)
    reads: list[Read] = attrs.field(init=False, factory=list)
    #: The highest index acknowledged to a writer so far (a read's floor).
    acknowledged_index: int = attrs.field(init=False, default=0)
    #: A violation found inside a Deferred callback, raised by the next check.
    _violation: AssertionError | None = attrs.field(init=False, default=None)
    #: A configuration change in flight (at most one: Raft changes one server at a time).
    _reconfiguring: bool = attrs.field(init=False, default=False)
    _reconfigured_at: float = attrs.field(init=False, default=-1.0)
    #: The most recent faults, role changes and writes, for failure reports.
    events: deque[str] = attrs.field(init=False, factory=lambda: deque(maxlen=80))

    def __attrs_post_init__(self) -> None:
        self.network = RaftNetwork(self.clock, random.Random(f"net/{self.seed}"), self.faults)
        if self.check_every_delivery:
            self.network.on_delivery = self.check
        self.node_ids = tuple(f"n{i}" for i in range(self.size))
        self.servers = tuple(
            Server(id=n, address=f"10.0.0.{i + 1}:8300") for i, n in enumerate(self.node_ids)
        )
        for server in self.servers:
            self.disks[server.id] = NodeDisk()
            self.incarnations[server.id] = 0
            node = self.nodes[server.id] = self._build_node(server.id)
            if self.bootstrap == "all" or server.id == self.node_ids[0]:
                node.bootstrap(self.servers)
        for node_id, node in self.nodes.items():
            self.network.attach(node_id, node.receive)
            node.start()
        self.check()

    def _build_node(self, node_id: str) -> RaftNode:
        """
        The one place a server is built from its disk: a fresh FSM, a fresh
        rng per incarnation, and ``send`` bound to this node's id.
        """
        disk = self.disks[node_id]
        incarnation = self.incarnations[node_id]
        return RaftNode.create(
            node_id=node_id,
            address=self.address(node_id),
            timings=self.timings,
            clock=self.clock,
            fsm=RecordingFSM(),
            log_store=disk.log_store,
            stable_store=disk.stable_store,
            logger=SimLogger(f"{node_id}", self._log_line),
            send=functools.partial(self.network.send, node_id),
            rng=random.Random(f"node/{self.seed}/{node_id}/{incarnation}"),
            snapshot_store=disk.snapshot_store,
            snapshot_policy=self.snapshot_policy,
            group_commit=self.group_commit,
        )

    # -- looking --------------------------------------------------------------

    def address(self, node_id: str) -> str:
        return self.server(node_id).address

    def server(self, node_id: str) -> Server:
        return next(s for s in self.servers if s.id == node_id)

    def voters(self) -> set[str] | None:
        """The voters in the current leader's configuration (committed or not); None without one."""
        leader = self.leader()
        if leader is None:
            return None
        return {s.id for s in self.nodes[leader].describe().voters}

    def all_nodes(self) -> list[RaftNode]:
        """Every current node object, crashed ones included (their state is their disk)."""
        return list(self.nodes.values())

    def live(self) -> list[str]:
        return [n for n in self.node_ids if n not in self.crashed]

    def fsm(self, node_id: str) -> RecordingFSM:
        fsm = self.nodes[node_id].fsm
        assert isinstance(fsm, RecordingFSM)
        return fsm

    def leaders(self) -> list[tuple[int, str]]:
        """(term, id) of every live node that believes it leads, newest term first."""
        found = []
        for node_id in self.live():
            status = self.nodes[node_id].describe()
            if status.state == "Leader":
                found.append((status.term, node_id))
        return sorted(found, reverse=True)

    def leader(self) -> str | None:
        """The live leader of the newest term, or None (a stale leader may also exist)."""
        found = self.leaders()
        return found[0][1] if found else None

    def pending(self) -> list[Write]:
        return [w for w in self.writes if w.outcome == "pending"]

    def acknowledged(self) -> list[Write]:
        return [w for w in self.writes if w.outcome == "acknowledged"]

    # -- checking ----------------------------------------------------------------

    def check(self) -> None:
        """Run the invariant checker; on a violation, say when, where and what led to it."""
        try:
            if self._violation is not None:
                raise self._violation
            self.checker.check(self.all_nodes())
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.report()}") from None

    def report(self) -> str:
        lines = [
            f"seed={self.seed} size={self.size} faults={self.faults} t={self.clock.seconds():.3f}",
            f"crashed={sorted(self.crashed)} partition={self.network.describe_partition()}",
            f"network={self.network.stats}",
        ]
        for node_id in self.node_ids:
            s = self.nodes[node_id].describe()
            lines.append(
                f"  {node_id}: {s.state} term={s.term} leader={s.leader_id} "
                f"last={s.last_log_index}/{s.last_log_term} commit={s.commit_index} "
                f"applied={s.applied_index}"
            )
        lines.append("recent events:")
        lines.extend(f"  {line}" for line in self.events)
        return "\n".join(lines)

    def _log_line(self, level: str, name: str, text: str) -> None:
        self.events.append(f"{self.clock.seconds():9.3f} {name} [{level}] {text}")

    def _event(self, text: str) -> None:
        self.events.append(f"{self.clock.seconds():9.3f} * {text}")

    # -- time ----------------------------------------------------------------------

    def run(self, seconds: float, step: float = 0.01) -> None:
        """
        Advance virtual time in steps, checking the invariants after each.
        ``run(0)`` finishes the current reactor turn (the group-commit drain).
        """
        end = self.clock.seconds() + seconds
        while True:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.check()
            if self.clock.seconds() >= end:
                return

    def run_until(self, done: Callable[[], bool], limit: float, step: float = 0.01) -> float:
        """Advance until ``done()``; the virtual time it took (AssertionError past ``limit``)."""
        start = self.clock.seconds()
        while not done():
            if self.clock.seconds() - start > limit:
                raise AssertionError(f"not done after {limit} simulated seconds\n{self.report()}")
            self.run(step, step)
        return self.clock.seconds() - start

    def wait_for_leader(self, limit: float = 10.0) -> str:
        self.run_until(lambda: self.leader() is not None, limit)
        leader = self.leader()
        assert leader is not None
        return leader

    # -- clients ---------------------------------------------------------------------

    def submit(self, command: bytes | None = None, *, to: str | None = None) -> Write | None:
        """
        Write through the current leader (or through ``to``); None when there
        is no one to send it to.  The outcome lands in the returned record.
        """
        target = to if to is not None else self.leader()
        if target is None or target in self.crashed:
            return None
        if command is None:
            command = f"w{len(self.writes)}".encode()
        node = self.nodes[target]
        write = Write(
            command=command, node_id=target, term=node.core.term, submitted_at=self.clock.seconds()
        )
        self.writes.append(write)
        node.apply(command).addCallbacks(
            functools.partial(self._acknowledged, write), functools.partial(self._failed, write)
        )
        self.check()
        return write

    def _acknowledged(self, write: Write, result: object) -> None:
        write.outcome, write.completed_at = "acknowledged", self.clock.seconds()
        write.index = result if isinstance(result, int) else None
        self.acknowledged_index = max(self.acknowledged_index, write.index or 0)

    def read(self, *, consistent: bool = False, to: str | None = None) -> Read | None:
        """
        A read barrier through the current leader (or ``to``): a default read
        is served within the leader lease, a consistent one after a quorum
        round.  Its answer is held to every write acknowledged before it.
        """
        target = to if to is not None else self.leader()
        if target is None or target in self.crashed:
            return None
        read = Read(
            node_id=target,
            consistent=consistent,
            submitted_at=self.clock.seconds(),
            floor=self.acknowledged_index,
        )
        self.reads.append(read)

        def answered(index: int) -> None:
            read.outcome, read.index = "acknowledged", index
            try:
                self.checker.check_read(read)
            except AssertionError as e:
                self._violation = self._violation or e

        def failed(failure: Failure) -> None:
            read.outcome, read.error = "failed", failure.getErrorMessage()

        self.nodes[target].read_barrier(consistent).addCallbacks(answered, failed)
        self.check()
        return read

    def transfer_leadership(self) -> str | None:
        """Ask the current leader to hand over (TimeoutNow); its id, or None without one."""
        leader = self.leader()
        if leader is None:
            return None
        self._event(f"transfer leadership from {leader}")

        def done(result: object) -> None:
            outcome = "done" if not isinstance(result, Failure) else result.getErrorMessage()
            self._event(f"transfer from {leader}: {outcome}")

        self.nodes[leader].transfer_leadership().addBoth(done)
        self.check()
        return leader

    def _failed(self, write: Write, failure: Failure) -> None:
        write.outcome, write.completed_at = "failed", self.clock.seconds()
        kind = failure.type.__name__ if failure.type is not None else "Failure"
        write.error = f"{kind}: {failure.getErrorMessage()}"

    def reconfigure(self, node_id: str, *, add: bool) -> str | None:
        """
        Add (``add_voter``) or remove (``remove_server``) one server through
        the current leader; the leader's id, or None without one.  The
        outcome only goes to the recent events: either is legal.
        """
        leader = self.leader()
        if leader is None:
            return None
        node = self.nodes[leader]
        verb = "add" if add else "remove"
        self._event(f"{verb} {node_id} through {leader}")
        self._reconfiguring, self._reconfigured_at = True, self.clock.seconds()

        def done(result: object) -> None:
            self._reconfiguring = False
            outcome = "done" if not isinstance(result, Failure) else result.getErrorMessage()
            self._event(f"{verb} {node_id}: {outcome}")

        change = node.add_voter(self.server(node_id)) if add else node.remove_server(node_id)
        change.addBoth(done)
        self.check()
        return leader

    def _restore_membership(self) -> bool:
        """Add back one missing server at a time; True once every server is a voter again."""
        voters = self.voters()
        if voters is None:
            return False
        missing = [n for n in self.node_ids if n not in voters]
        # Retry a refused change (ConfigurationBusy, NotLeader) a little later, not every step.
        retry = self.clock.seconds() - self._reconfigured_at >= 0.25
        if missing and not self._reconfiguring and retry:
            self.reconfigure(missing[0], add=True)
        return not missing

    # -- faults --------------------------------------------------------------------------

    def crash(self, node_id: str) -> None:
        """
        Kill the process: its in-flight messages are lost, and so is
        whatever it had not yet written (with group commit, the batch
        waiting for the end of the turn).  Its disk is kept as it is at
        this instant: the dead node object gets scratch stores before it is
        stopped (stopping is only how its timers are cancelled), so nothing
        it does after the crash reaches the disk a restart reads.
        """
        if node_id in self.crashed:
            return
        node = self.nodes[node_id]
        if not node.core.outbox:
            # Nothing waiting to be written: memory and disk must agree.
            self.checker.check_durable(node)
        self._event(f"crash {node_id} ({node.describe().state}, term {node.core.term})")
        self.network.detach(node_id)
        node.log_store, node.stable_store = MemoryLogStore(), MemoryStableStore()
        node.snapshot_store = MemorySnapshotStore()
        node.core.outbox.clear()
        node.stop()
        self.crashed.add(node_id)
        self.check()

    def restart(self, node_id: str) -> None:
        """A new process on the old disk: the FSM starts empty and Raft re-applies into it."""
        if node_id not in self.crashed:
            return
        self.incarnations[node_id] += 1
        node = self.nodes[node_id] = self._build_node(node_id)
        self.crashed.discard(node_id)
        self._event(f"restart {node_id} (term {node.core.term}, log {node.core.log.last_index})")
        self.network.attach(node_id, node.receive)
        node.start()
        self.check()

    def partition(self, *groups: Iterable[str]) -> None:
        self.network.partition(*groups)
        self._event(f"partition {self.network.describe_partition()}")

    def isolate(self, node_id: str) -> None:
        self.network.isolate(node_id)
        self._event(f"isolate {node_id}: {self.network.describe_partition()}")

    def heal(self) -> None:
        self.network.heal()
        self._event("heal")

    # -- the end ---------------------------------------------------------------------------

    def converged(self) -> bool:
        """One leader; all live, at its term, its log committed and applied; no write pending."""
        if self.crashed or self.pending():
            return False
        statuses = [self.nodes[n].describe() for n in self.node_ids]
        leaders = [s for s in statuses if s.state == "Leader"]
        if len(leaders) != 1:
            return False
        top = leaders[0]
        if len(top.voters) != self.size:
            return False
        return all(
            s.term == top.term
            and s.last_log_index == top.last_log_index
            and s.commit_index == s.last_log_index
            and s.applied_index == s.commit_index
            for s in statuses
        )

    def converge(self, limit: float = 60.0) -> float:
        """
        Heal the network, restart every crashed node, add back every removed
        server, run until quiet, and hold the result to the
        acknowledged-writes property.  The faults (drop, duplicate, latency)
        stay as they are: Raft must converge through them.  Returns the
        simulated time it took.
        """
        self.heal()
        for node_id in sorted(self.crashed):
            self.restart(node_id)
        took = self.run_until(lambda: self._restore_membership() and self.converged(), limit)
        try:
            self.checker.check_converged(self.all_nodes(), self.writes)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.report()}") from None
        return took

    def stop(self) -> None:
        """Stop every node and let in-flight messages and callbacks run out."""
        for node_id in self.live():
            self.network.detach(node_id)
            self.nodes[node_id].stop()
            self.crashed.add(node_id)
        # In-flight messages and one-turn-later callbacks run out within the
        # longest latency; anything left after that is a leaked timer.
        self.clock.advance(self.faults.latency[1] + 0.001)
        self.clock.advance(0)
        self.check()
