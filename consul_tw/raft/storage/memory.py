# -*- test-case-name: tests.unit.raft.test_storage -*-
"""In-memory stores: ``--dev`` and tests (nothing survives exit, ``sync`` is free)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from consul_tw.raft.messages import LogEntry
from consul_tw.raft.storage.interfaces import SnapshotMeta


@attrs.define
class MemoryStableStore:
    term: int = 0
    voted_for: str | None = None

    def load_hard_state(self) -> tuple[int, str | None]:
        return self.term, self.voted_for

    def save_hard_state(self, term: int, voted_for: str | None) -> None:
        self.term, self.voted_for = term, voted_for

    def sync(self) -> None:
        pass


@attrs.define
class MemoryLogStore:
    _entries: list[LogEntry] = attrs.field(factory=list)

    def entries(self) -> Sequence[LogEntry]:
        return tuple(self._entries)

    def append(self, entries: Sequence[LogEntry]) -> None:
        for entry in entries:
            if self._entries and entry.index != self._entries[-1].index + 1:
                raise ValueError(
                    f"log gap: got index {entry.index}, expected {self._entries[-1].index + 1}"
                )
            self._entries.append(entry)

    def truncate_after(self, index: int) -> None:
        self._entries = [e for e in self._entries if e.index <= index]

    def delete_through(self, index: int) -> None:
        self._entries = [e for e in self._entries if e.index > index]

    def sync(self) -> None:
        pass


@attrs.define
class MemorySnapshotStore:
    _latest: tuple[SnapshotMeta, bytes] | None = None

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        self._latest = (attrs.evolve(meta, size=len(data)), data)

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        return self._latest
