# -*- test-case-name: tests.unit.raft.test_storage -*-
"""
Storage seams of a Raft server.

``--dev`` keeps everything in memory (:mod:`consul_tw.raft.storage.memory`);
outside dev, :mod:`consul_tw.raft.storage.sqlite` keeps term, vote and log in
one SQLite database under ``--data-dir`` and snapshots as files beside it.

Writes may be buffered: nothing is durable until ``sync()`` returns.  The
driver (:class:`consul_tw.raft.node.RaftNode`) calls ``sync()`` once per
batch of effects, before releasing any message or acknowledgement that
depends on them, so writes that arrive together share one fsync (group
commit).  They are ``typing.Protocol``s, not zope interfaces, because only
our own code calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from consul_tw.raft.messages import LogEntry, Server


class IStableStore(Protocol):
    """Current term and vote: must be durable before a vote is answered."""

    def load_hard_state(self) -> tuple[int, str | None]:
        """(current term, voted for), (0, None) when nothing was stored."""

    def save_hard_state(self, term: int, voted_for: str | None) -> None:
        """Store both together (durable after the next ``sync``)."""

    def sync(self) -> None:
        """Make every write so far durable."""


class ILogStore(Protocol):
    """The Raft log, indexed from 1, possibly compacted at the front."""

    def entries(self) -> Sequence[LogEntry]:
        """Every stored entry in index order (used to rebuild the in-memory log).

        Contiguous; the first one follows the latest snapshot's index (or is
        index 1).  A durable store checks each entry and drops a corrupt or
        torn tail here, reporting it, rather than return bad data.
        """

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Store entries (durable after the next ``sync``); their indexes follow the last one."""

    def truncate_after(self, index: int) -> None:
        """Drop every entry with a higher index (a follower's conflict)."""

    def delete_through(self, index: int) -> None:
        """Drop every entry up to and including ``index`` (compaction behind a snapshot)."""

    def sync(self) -> None:
        """Make every write so far durable."""


@attrs.frozen(kw_only=True)
class SnapshotMeta:
    """What a snapshot covers: the FSM state after applying entry ``index``."""

    index: int
    term: int
    #: The configuration in force at ``index`` and the index of its entry.
    servers: tuple[Server, ...]
    configuration_index: int
    size: int = 0


class ISnapshotStore(Protocol):
    """Snapshots of the FSM; a save is atomic (all or nothing, even on a crash)."""

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        """Store durably and atomically; older snapshots beyond the retained count go."""

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        """The newest intact snapshot, or None; a damaged one is reported and skipped."""
