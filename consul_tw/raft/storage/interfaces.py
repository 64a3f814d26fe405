# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
Storage seams of a Raft server.

``--dev`` keeps both in memory (:mod:`consul_tw.raft.storage.memory`); the
durable SQLite implementations come with multi-server Raft.  They are
``typing.Protocol``s, not zope interfaces, because only our own code calls
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from consul_tw.raft.messages import LogEntry


class IStableStore(Protocol):
    """Current term and vote: must be durable before a vote is answered."""

    def load_hard_state(self) -> tuple[int, str | None]:
        """(current term, voted for), (0, None) when nothing was stored."""

    def save_hard_state(self, term: int, voted_for: str | None) -> None:
        """Store both together, durably."""


class ILogStore(Protocol):
    """The Raft log, indexed from 1."""

    def entries(self) -> Sequence[LogEntry]:
        """Every stored entry in index order (used to rebuild the in-memory log)."""

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Store entries durably; their indexes follow the last stored one."""

    def truncate_after(self, index: int) -> None:
        """Drop every entry with a higher index."""
