# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
The Raft log as the machine sees it: pure, in memory, no I/O.

The machine appends here and emits :class:`~consul_tw.raft.effects.AppendToLog`
so the driver stores the same entries; on start the log is rebuilt from the
store.  It also tracks the configuration (the voters), which in Raft is
taken from the latest configuration entry in the log, committed or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from consul_tw.raft.messages import EntryType, LogEntry, Server


@attrs.define
class RaftLog:
    _entries: list[LogEntry] = attrs.field(factory=list)

    @classmethod
    def from_entries(cls, entries: Iterable[LogEntry]) -> RaftLog:
        return cls(list(entries))

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else 0

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else 0

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; 0 for index 0; None when absent."""
        if index == 0:
            return 0
        if 1 <= index <= len(self._entries):
            return self._entries[index - 1].term
        return None

    def entry(self, index: int) -> LogEntry:
        return self._entries[index - 1]

    def slice(self, first: int, last: int) -> Sequence[LogEntry]:
        """Entries ``first``..``last`` inclusive."""
        return tuple(self._entries[first - 1 : last])

    def append(self, entry: LogEntry) -> None:
        if entry.index != self.last_index + 1:
            raise ValueError(f"log gap: got index {entry.index} after {self.last_index}")
        self._entries.append(entry)

    def truncate_after(self, index: int) -> None:
        del self._entries[index:]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up to date as ours?"""
        if last_term != self.last_term:
            return last_term > self.last_term
        return last_index >= self.last_index

    def configuration(self) -> tuple[int, tuple[Server, ...]]:
        """(index, voters) of the latest configuration entry; (0, ()) when none."""
        for entry in reversed(self._entries):
            if entry.type is EntryType.CONFIGURATION:
                return entry.index, entry.servers
        return 0, ()
