# -*- test-case-name: tests.unit.raft.test_log -*-
"""
The Raft log as the machine sees it: pure, in memory, no I/O.

The machine appends here and emits :class:`~consul_tw.raft.effects.AppendToLog`
so the driver stores the same entries; on start the log is rebuilt from the
latest snapshot plus the stored entries after it.  Entries up to the
snapshot's index are compacted away: only the snapshot's index and term
remain, so the consistency check of the first retained entry still works
(Raft §7).  The log also tracks the configuration (the voters), which in
Raft is taken from the latest configuration entry in the log, committed or
not, falling back to the one the snapshot recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from consul_tw.raft.messages import EntryType, LogEntry, Server


@attrs.define
class RaftLog:
    _entries: list[LogEntry] = attrs.field(factory=list)
    #: The last index and term covered by the latest snapshot (0, 0 when none).
    snapshot_index: int = 0
    snapshot_term: int = 0
    #: The configuration recorded with that snapshot and its entry's index.
    snapshot_servers: tuple[Server, ...] = ()
    snapshot_configuration_index: int = 0
    #: The configuration entries still in the log, oldest first: the voters
    #: are asked for on every write, so they must not cost a scan of the log.
    _configs: list[LogEntry] = attrs.field(factory=list)

    @classmethod
    def from_entries(cls, entries: Iterable[LogEntry]) -> RaftLog:
        log = cls()
        for entry in entries:
            log.append(entry)
        return log

    @property
    def first_index(self) -> int:
        """The first index still held as an entry (snapshot_index + 1)."""
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self.snapshot_index

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; 0 for index 0; None when absent or compacted."""
        if index == 0:
            return 0
        if index == self.snapshot_index:
            return self.snapshot_term
        if self.first_index <= index <= self.last_index:
            return self._entries[index - self.first_index].term
        return None

    def has(self, index: int) -> bool:
        """Is the entry at ``index`` held (not compacted, not beyond the end)?"""
        return self.first_index <= index <= self.last_index

    def entry(self, index: int) -> LogEntry:
        if not self.has(index):
            raise IndexError(f"log entry {index} is not held")
        return self._entries[index - self.first_index]

    def slice(self, first: int, last: int) -> Sequence[LogEntry]:
        """Entries ``first``..``last`` inclusive (``first`` must not be compacted)."""
        if first < self.first_index:
            raise IndexError(f"log entry {first} was compacted")
        offset = self.first_index
        return tuple(self._entries[first - offset : last - offset + 1])

    def append(self, entry: LogEntry) -> None:
        if entry.index != self.last_index + 1 and (self._entries or self.snapshot_index):
            raise ValueError(f"log gap: got index {entry.index} after {self.last_index}")
        if not self._entries and not self.snapshot_index and entry.index != 1:
            # A log restored without its snapshot: treat what precedes as compacted.
            self.snapshot_index, self.snapshot_term = entry.index - 1, 0
        self._entries.append(entry)
        if entry.type is EntryType.CONFIGURATION:
            self._configs.append(entry)

    def truncate_after(self, index: int) -> None:
        if index < self.snapshot_index:
            raise ValueError(f"cannot truncate into the snapshot at {self.snapshot_index}")
        del self._entries[index - self.snapshot_index :]
        while self._configs and self._configs[-1].index > index:
            self._configs.pop()

    def compact_through(
        self, index: int, term: int, servers: tuple[Server, ...], configuration_index: int
    ) -> None:
        """Forget entries up to ``index``, now covered by a snapshot."""
        if index <= self.snapshot_index:
            return
        if self.has(index) and self.term_at(index) == term:
            del self._entries[: index - self.snapshot_index]
        else:
            # The snapshot is ahead of (or conflicts with) the log: drop the log.
            self._entries.clear()
            self._configs.clear()
        self.snapshot_index, self.snapshot_term = index, term
        self.snapshot_servers = servers
        self.snapshot_configuration_index = configuration_index
        self._configs = [e for e in self._configs if e.index > index]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a candidate's log at least as up to date as ours?"""
        if last_term != self.last_term:
            return last_term > self.last_term
        return last_index >= self.last_index

    def configuration(self) -> tuple[int, tuple[Server, ...]]:
        """(index, voters) of the latest configuration; (0, ()) when none."""
        if self._configs:
            latest = self._configs[-1]
            return latest.index, latest.servers
        return self.snapshot_configuration_index, self.snapshot_servers

    def configuration_at(self, index: int) -> tuple[int, tuple[Server, ...]]:
        """(index, voters) of the configuration in force at ``index`` (for snapshots)."""
        for entry in reversed(self._configs):
            if entry.index <= index:
                return entry.index, entry.servers
        return self.snapshot_configuration_index, self.snapshot_servers
