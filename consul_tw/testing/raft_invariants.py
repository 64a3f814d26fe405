# -*- test-case-name: tests.sim.test_raft_sim -*-
"""
Raft's safety properties, checked against a running simulated cluster.

:class:`InvariantChecker` watches the :class:`~consul_tw.raft.node.RaftNode`
objects of a cluster (live and crashed: a crashed node's state is its disk)
and keeps *history* across calls, because Raft's guarantees are about all
of time, not one instant: a second leader in term 7 is a violation even if
the first one crashed long ago.  The properties are those of Figure 3 of
the Raft paper, plus the one clients care about:

- **Election safety**: at most one leader per term, ever.
- **Log matching**: an (index, term) pair names one entry, and two logs
  holding it are identical up to it.  Checked as a global map
  ``(index, term) → (entry, previous term)``: only one leader ever creates
  the entry at (index, term), so every log that holds it must hold the same
  entry after the same previous term, and by induction the same prefix.
  That costs one pass over the *new* part of each log, not a comparison of
  every pair of logs at every step.
- **Leader completeness**: a leader of term T holds every entry committed
  in a term before T.  The term an entry was committed in is not visible,
  so each committed index records an upper *bound*: the lowest term of a
  node seen with that index committed.  A node's commit index only covers
  entries committed in its own term or earlier (a follower learns it from
  its term's leader), and since the checker runs after every delivery the
  first node seen is nearly always the committing leader itself, which
  makes the bound exact.  Checked when a node is first seen as leader of a
  term (a leader never drops entries of its own log).
- **State machine safety**: no two nodes commit or apply different entries
  at one index; a node commits only forwards and never truncates what it
  committed; an FSM sees strictly increasing, committed indexes.
- **Lease safety** (``check_leases``): a leader whose read lease is still
  valid (``describe().lease_expires`` in the future) must not have been
  superseded: no entry of a newer term may be committed anywhere, since a
  newer leader that commits has a quorum behind it, and a default (lease)
  read on the old one would then miss acknowledged writes.  And
  (:meth:`InvariantChecker.check_read`) a read barrier answers with an
  index at least that of every write acknowledged before the read began.
- **Acknowledged writes** (:meth:`InvariantChecker.check_converged`): once
  the cluster is healed and quiet, every write whose ``apply()`` Deferred
  succeeded is applied on every node, at the index it was acknowledged
  with, and every node applied the same sequence.

Only public facade state is read (``describe()``, ``fsm``, the stores),
plus ``node.core`` read-only: ``core.log`` (the retained entries),
``core.term``, ``core.leader`` and ``core.commit_index``, which
``describe()`` also reports but at the cost of building a status record
and scanning the log for its configuration on every call.  Once logs are
compacted only the retained range (``log.first_index`` on) is compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

import attrs

from consul_tw.raft.log import RaftLog
from consul_tw.raft.messages import EntryType, LogEntry
from consul_tw.raft.node import RaftNode

WriteOutcome = Literal["pending", "acknowledged", "failed"]


class RecordsApplied(Protocol):
    """An FSM that remembers what it applied (the simulator's ``RecordingFSM``)."""

    applied: list[tuple[int, bytes]]


class HasNodes(Protocol):
    """A cluster that owns its checker (``RaftCluster``)."""

    checker: InvariantChecker

    def all_nodes(self) -> Iterable[RaftNode]: ...


@attrs.define(eq=False)
class Write:
    """
    One client write and what the client was told: the history that the
    final check holds Raft to (Jepsen-style; no retries, so a command is
    submitted once).
    """

    command: bytes
    node_id: str
    term: int
    submitted_at: float
    outcome: WriteOutcome = "pending"
    #: The index the FSM applied it at (the recording FSM returns it).
    index: int | None = None
    error: str | None = None
    completed_at: float | None = None


@attrs.define(eq=False)
class Read:
    """One read barrier (a default or ``?consistent`` read) and its answer."""

    node_id: str
    consistent: bool
    submitted_at: float
    #: The highest index acknowledged to any writer before the read began:
    #: a linearizable read must reflect it.
    floor: int
    outcome: WriteOutcome = "pending"
    index: int | None = None
    error: str | None = None


@attrs.frozen
class _Committed:
    term: int
    type: EntryType
    data: bytes
    #: An upper bound on the term it was committed in (see the module docstring).
    bound: int
    node_id: str


def first_index(log: RaftLog) -> int:
    """The first index held as an entry: 1, or after the snapshot once logs are compacted."""
    return int(getattr(log, "first_index", 1))


def retained_entries(log: RaftLog) -> Sequence[LogEntry]:
    """Every entry the log still holds, in index order."""
    first, last = first_index(log), log.last_index
    return log.slice(first, last) if last >= first else ()


def _describe_entry(entry: LogEntry | _Committed) -> str:
    kind = entry.type.value
    return f"term {entry.term} {kind} {entry.data!r}"


def _common_prefix(old: Sequence[LogEntry], new: Sequence[LogEntry]) -> int:
    """How many leading entries two snapshots of one log share (fast when nothing changed)."""
    n = min(len(old), len(new))
    # Tuple equality tests identity first, element by element, in C: the
    # common case (the log only grew) costs microseconds.
    if tuple(old[:n]) == tuple(new[:n]):
        return n
    k = 0
    while k < n and (old[k] is new[k] or old[k] == new[k]):
        k += 1
    return k


@attrs.define(eq=False)
class InvariantChecker:
    """Raft's safety properties over the whole history of one simulated cluster."""

    #: term → the node seen as its leader.
    leaders: dict[int, str] = attrs.field(factory=dict)
    #: (index, term) → (entry, term of the entry before it, first node seen holding it).
    entries: dict[tuple[int, int], tuple[LogEntry, int | None, str]] = attrs.field(factory=dict)
    #: index → the committed entry, as first seen committed anywhere.
    committed: dict[int, _Committed] = attrs.field(factory=dict)
    #: index → (data, node) applied to an FSM anywhere.
    applied: dict[int, tuple[bytes, str]] = attrs.field(factory=dict)
    #: Check lease safety and read answers (see the module docstring).
    check_leases: bool = True
    #: How many times :meth:`check` ran (for the tests' own sanity).
    checks: int = 0
    #: The newest term of any entry seen committed: a leader of that term
    #: (or a later one) has committed with a quorum behind it.
    newest_committed_term: int = 0
    _logs: dict[RaftNode, tuple[int, Sequence[LogEntry]]] = attrs.field(factory=dict)
    _commit_seen: dict[RaftNode, int] = attrs.field(factory=dict)
    _applied_seen: dict[RaftNode, tuple[list[tuple[int, bytes]], int, int]] = attrs.field(
        factory=dict
    )
    _fingerprints: dict[RaftNode, tuple[object, ...]] = attrs.field(factory=dict)
    _leaders_checked: set[tuple[int, str]] = attrs.field(factory=set)
    #: Nodes last seen in the Leader state (their lease is checked every time).
    _leading: set[RaftNode] = attrs.field(factory=set)

    # -- every step ----------------------------------------------------------

    def check(self, nodes: Iterable[RaftNode]) -> None:
        """Check every property on the nodes' current state; raise AssertionError on a violation."""
        nodes = list(nodes)
        if not nodes:
            return
        self.checks += 1
        for node in nodes:
            self._check_log(node)
        for node in nodes:
            self._check_commits(node)
            self._check_applied(node)
        for node in nodes:
            self._check_leader(node)
        if self.check_leases:
            self._check_leases()

    def _check_log(self, node: RaftNode) -> None:
        """Log matching; a committed entry never leaves the log of the node that committed it."""
        node_id = node.core.node_id
        log = node.core.log
        first = first_index(log)
        entries = retained_entries(log)
        old_first, old = self._logs.get(node, (first, ()))
        shift = first - old_first
        old = old[shift:] if shift >= 0 else ()
        start = _common_prefix(old, entries)
        if start < len(old):
            removed = first + start
            committed = self._commit_seen.get(node, 0)
            if removed <= committed:
                raise AssertionError(
                    f"State machine safety: {node_id} removed its committed entry {removed} "
                    f"({_describe_entry(old[start])}; commit index {committed})"
                )
        for k in range(start, len(entries)):
            entry = entries[k]
            if entry.index != first + k:
                raise AssertionError(
                    f"Log matching: {node_id}'s log has index {entry.index} at position {first + k}"
                )
            if k:
                prev_term: int | None = entries[k - 1].term
            else:
                prev_term = log.term_at(entry.index - 1) if entry.index > 1 else 0
                if entry.index > 1 and not prev_term:
                    prev_term = None  # the snapshot's term is unknown: skip the chain check
            key = (entry.index, entry.term)
            known = self.entries.get(key)
            if known is None:
                self.entries[key] = (entry, prev_term, node_id)
                continue
            other, other_prev, other_node = known
            if other is not entry and other != entry:
                raise AssertionError(
                    f"Log matching: two entries at index {entry.index} term {entry.term}: "
                    f"{_describe_entry(other)} on {other_node}, "
                    f"{_describe_entry(entry)} on {node_id}"
                )
            if prev_term is not None and other_prev is not None and prev_term != other_prev:
                raise AssertionError(
                    f"Log matching: entry {entry.index} (term {entry.term}) follows term "
                    f"{other_prev} on {other_node} but term {prev_term} on {node_id}"
                )
        self._logs[node] = (first, entries)

    def _check_commits(self, node: RaftNode) -> None:
        """Committed entries agree everywhere; a node's commit index only moves forwards."""
        core = node.core
        commit = core.commit_index
        seen = self._commit_seen.get(node, 0)
        if commit < seen:
            raise AssertionError(
                f"State machine safety: {core.node_id}'s commit index went back from "
                f"{seen} to {commit}"
            )
        if commit == seen:
            return
        if commit > core.log.last_index:
            raise AssertionError(
                f"{core.node_id} committed {commit} beyond its last log index {core.log.last_index}"
            )
        for index in range(max(seen + 1, first_index(core.log)), commit + 1):
            entry = core.log.entry(index)
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = _Committed(
                    entry.term, entry.type, entry.data, core.term, core.node_id
                )
                self.newest_committed_term = max(self.newest_committed_term, entry.term)
                continue
            if (known.term, known.type, known.data) != (entry.term, entry.type, entry.data):
                raise AssertionError(
                    f"State machine safety: index {index} committed as {_describe_entry(known)} "
                    f"on {known.node_id} but as {_describe_entry(entry)} on {core.node_id}"
                )
            if core.term < known.bound:
                self.committed[index] = attrs.evolve(known, bound=core.term)
        self._commit_seen[node] = commit

    def _check_applied(self, node: RaftNode) -> None:
        """No two FSMs apply different commands at one index; each applies in commit order."""
        applied = getattr(node.fsm, "applied", None)
        if applied is None:
            return
        node_id = node.core.node_id
        previous = self._applied_seen.get(node)
        if previous is not None and previous[0] is applied:
            _, done, last = previous
        else:
            # A new FSM, or one restored from a snapshot: recheck from its start.
            done, last = 0, 0
        for index, data in applied[done:]:
            if index <= last:
                raise AssertionError(
                    f"State machine safety: {node_id} applied index {index} after {last}"
                )
            if index > node.core.commit_index:
                raise AssertionError(
                    f"State machine safety: {node_id} applied index {index} beyond its commit "
                    f"index {node.core.commit_index}"
                )
            known = self.applied.get(index)
            if known is None:
                self.applied[index] = (data, node_id)
            elif known[0] != data:
                raise AssertionError(
                    f"State machine safety: index {index} applied as {known[0]!r} on "
                    f"{known[1]} but as {data!r} on {node_id}"
                )
            committed = self.committed.get(index)
            if committed is not None and committed.data != data:
                raise AssertionError(
                    f"State machine safety: {node_id} applied {data!r} at index {index}, "
                    f"committed as {_describe_entry(committed)}"
                )
            last = index
        self._applied_seen[node] = (applied, len(applied), last)

    def _check_leader(self, node: RaftNode) -> None:
        """Election safety and leader completeness, for a node whose role may have changed."""
        core = node.core
        # describe() is the authority on the role; call it only when something
        # a role change must touch has moved (a new term, leader or log end).
        fingerprint = (core.term, core.leader, core.log.last_index)
        if self._fingerprints.get(node) == fingerprint:
            return
        self._fingerprints[node] = fingerprint
        status = node.describe()
        if status.state != "Leader":
            self._leading.discard(node)
            return
        self._leading.add(node)
        holder = self.leaders.setdefault(status.term, status.node_id)
        if holder != status.node_id:
            raise AssertionError(
                f"Election safety: {holder} and {status.node_id} were both leader in term "
                f"{status.term}"
            )
        key = (status.term, status.node_id)
        if key in self._leaders_checked:
            return
        self._leaders_checked.add(key)
        log = core.log
        first = first_index(log)
        for index, committed in sorted(self.committed.items()):
            if committed.bound >= status.term or index < first:
                continue
            held = log.entry(index) if index <= log.last_index else None
            if held is None or (held.term, held.type, held.data) != (
                committed.term,
                committed.type,
                committed.data,
            ):
                raise AssertionError(
                    f"Leader completeness: {status.node_id} became leader of term "
                    f"{status.term} without committed entry {index} "
                    f"({_describe_entry(committed)}, committed by term {committed.bound}); "
                    f"it holds {_describe_entry(held) if held else 'nothing'} there"
                )

    def _check_leases(self) -> None:
        """No leader may trust its lease once a newer term has committed anything."""
        for node in list(self._leading):
            status = node.describe()
            if status.state != "Leader":
                self._leading.discard(node)
                continue
            now = node.core.clock.seconds()
            lease = status.lease_expires
            if lease is not None and lease > now and self.newest_committed_term > status.term:
                raise AssertionError(
                    f"Lease safety: {status.node_id}, leader of term {status.term}, holds its "
                    f"read lease until {lease:.4f} (now {now:.4f}), but entries of term "
                    f"{self.newest_committed_term} are already committed: its default reads "
                    f"can miss acknowledged writes"
                )

    def check_read(self, read: Read) -> None:
        """
        A read that began after a write was acknowledged must see that write.
        Default reads rely on the lease, so they are held to it only with
        ``check_leases``; consistent reads (a quorum round) always are.
        """
        if read.outcome != "acknowledged" or read.index is None:
            return
        if not read.consistent and not self.check_leases:
            return
        if read.index < read.floor:
            kind = "consistent" if read.consistent else "default (lease)"
            raise AssertionError(
                f"Read safety: a {kind} read on {read.node_id} at {read.submitted_at:.4f} "
                f"answered index {read.index}, but a write at index {read.floor} had been "
                f"acknowledged before it began (a stale read)"
            )

    # -- at chosen moments ------------------------------------------------------

    def check_durable(self, node: RaftNode) -> None:
        """
        What the node's stores hold is what its memory holds: called at a
        crash, because a restart rebuilds the node from the stores alone.
        """
        core = node.core
        stored = node.stable_store.load_hard_state()
        if stored != (core.term, core.voted_for):
            raise AssertionError(
                f"Durability: {core.node_id} is in term {core.term} voting for "
                f"{core.voted_for} but stored {stored}"
            )
        on_disk = {e.index: e for e in node.log_store.entries()}
        last_stored = max(on_disk, default=core.log.last_index)
        if last_stored != core.log.last_index:
            raise AssertionError(
                f"Durability: {core.node_id}'s log ends at {core.log.last_index} in memory "
                f"but at {last_stored} in its store"
            )
        for entry in retained_entries(core.log):
            stored_entry = on_disk.get(entry.index)
            if stored_entry is not None and stored_entry != entry:
                raise AssertionError(
                    f"Durability: {core.node_id} holds {_describe_entry(entry)} at "
                    f"{entry.index} in memory but {_describe_entry(stored_entry)} in its store"
                )

    def check_converged(self, nodes: Iterable[RaftNode], writes: Iterable[Write]) -> None:
        """
        After heal, restart and quiet: one leader, identical logs and FSMs,
        no write left pending, and every acknowledged write applied
        everywhere at the index it was acknowledged with (and only there).
        """
        nodes = list(nodes)
        self.check(nodes)
        statuses = [node.describe() for node in nodes]
        leaders = [s.node_id for s in statuses if s.state == "Leader"]
        if len(leaders) != 1:
            raise AssertionError(f"Not converged: leaders {leaders}")
        shape = {(s.term, s.last_log_index, s.commit_index, s.applied_index) for s in statuses}
        if len(shape) != 1:
            raise AssertionError(
                "Not converged: (node, term, last index, commit, applied) = "
                + ", ".join(
                    f"({s.node_id}, {s.term}, {s.last_log_index}, {s.commit_index}, "
                    f"{s.applied_index})"
                    for s in statuses
                )
            )
        sequences: dict[str, list[tuple[int, bytes]]] = {
            node.core.node_id: list(getattr(node.fsm, "applied", [])) for node in nodes
        }
        reference_id, reference = next(iter(sequences.items()))
        for node_id, sequence in sequences.items():
            if sequence != reference:
                raise AssertionError(
                    f"State machine safety: {node_id} applied {len(sequence)} commands, "
                    f"{reference_id} {len(reference)}; first difference at position "
                    f"{_common_prefix_pairs(sequence, reference)}"
                )
        applied_at: dict[bytes, list[int]] = {}
        for index, data in reference:
            applied_at.setdefault(data, []).append(index)
        for write in writes:
            where = applied_at.get(write.command, [])
            if len(where) > 1:
                raise AssertionError(f"{write.command!r} was applied {len(where)} times: {where}")
            if write.outcome == "pending":
                raise AssertionError(
                    f"{write.command!r} (submitted to {write.node_id} in term {write.term} at "
                    f"{write.submitted_at:.3f}) is still pending after convergence"
                )
            if write.outcome == "acknowledged" and where != [write.index]:
                raise AssertionError(
                    f"Acknowledged write lost: {write.command!r} was acknowledged by "
                    f"{write.node_id} at index {write.index} (term {write.term}) but is "
                    f"applied at {where or 'no index'}"
                )


def _common_prefix_pairs(a: Sequence[tuple[int, bytes]], b: Sequence[tuple[int, bytes]]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def check_invariants(
    target: HasNodes | Iterable[RaftNode], checker: InvariantChecker | None = None
) -> InvariantChecker:
    """
    Check a cluster with its own checker (keeping its history), or bare
    nodes with ``checker`` (a fresh one when None: no history, so only what
    the nodes show now is checked).  Returns the checker used.
    """
    if hasattr(target, "checker") and hasattr(target, "all_nodes"):
        cluster: HasNodes = target  # type: ignore[assignment]
        cluster.checker.check(cluster.all_nodes())
        return cluster.checker
    checker = checker if checker is not None else InvariantChecker()
    checker.check(target)  # type: ignore[arg-type]
    return checker


__all__ = [
    "InvariantChecker",
    "Read",
    "RecordsApplied",
    "Write",
    "WriteOutcome",
    "check_invariants",
    "first_index",
    "retained_entries",
]
