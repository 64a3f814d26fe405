# -*- test-case-name: tests.unit.raft.test_machine -*-
"""In-memory log and stable stores: ``--dev`` and tests (nothing survives exit)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from consul_tw.raft.messages import LogEntry


@attrs.define
class MemoryStableStore:
    term: int = 0
    voted_for: str | None = None

    def load_hard_state(self) -> tuple[int, str | None]:
        return self.term, self.voted_for

    def save_hard_state(self, term: int, voted_for: str | None) -> None:
        self.term, self.voted_for = term, voted_for


@attrs.define
class MemoryLogStore:
    _entries: list[LogEntry] = attrs.field(factory=list)

    def entries(self) -> Sequence[LogEntry]:
        return tuple(self._entries)

    def append(self, entries: Sequence[LogEntry]) -> None:
        for entry in entries:
            expected = len(self._entries) + 1
            if entry.index != expected:
                raise ValueError(f"log gap: got index {entry.index}, expected {expected}")
            self._entries.append(entry)

    def truncate_after(self, index: int) -> None:
        del self._entries[index:]
