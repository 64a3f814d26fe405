# -*- test-case-name: tests.unit.catalog.test_kv -*-
"""
The KV table's rows and the two structures behind them: keys in sorted
order, and the graveyard of deleted keys.

Consul keeps KV pairs in a radix tree so that a prefix (``?recurse``,
``?keys``) is one contiguous range, ordered by the key's bytes; a sorted
list of keys with :mod:`bisect` gives the same ranges and the same order
(Python orders ``str`` by code point, which is UTF-8 byte order).

A delete leaves a *tombstone* (key → the index of the delete) so that the
index of a prefix read never goes backwards when the newest key under it
disappears; tombstones are reaped later, through Raft, by the leader.

This module only stores: Consul's rules (CAS, what a delete leaves behind,
which table index moves) live in :class:`consul_tw.catalog.store.StateStore`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class DirEntry:
    """One KV pair (Consul's ``structs.DirEntry``)."""

    key: str
    value: bytes = b""
    #: Opaque to Consul; clients keep their own meaning in it (uint64).
    flags: int = 0
    #: How many times a session acquired the key's lock.
    lock_index: int = 0
    #: The session holding the key's lock (sessions are not implemented yet: always None).
    session: str | None = None
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: DirEntry) -> bool:
        """Consul's ``DirEntry.Equal``: a write of the same content changes nothing."""
        return (
            self.key == other.key
            and self.value == other.value
            and self.flags == other.flags
            and self.lock_index == other.lock_index
            and self.session == other.session
        )


def entry_record(entry: DirEntry) -> dict[str, Any]:
    """
    An entry as the KVS reads return it: Consul's field names and order,
    ``Session`` only when held, and the value as raw bytes (msgpack carries
    bytes as they are; the HTTP layer base64-encodes them for JSON).
    """
    record: dict[str, Any] = {
        "LockIndex": entry.lock_index,
        "Key": entry.key,
        "Flags": entry.flags,
        "Value": entry.value,
    }
    if entry.session:
        record["Session"] = entry.session
    record["CreateIndex"] = entry.create_index
    record["ModifyIndex"] = entry.modify_index
    return record


@attrs.define
class KVTable:
    """Entries by key, their keys in order, and the tombstones."""

    _entries: dict[str, DirEntry] = attrs.field(factory=dict)
    _keys: list[str] = attrs.field(factory=list)
    _tombstones: dict[str, int] = attrs.field(factory=dict)

    # -- entries -------------------------------------------------------------

    def get(self, key: str) -> DirEntry | None:
        return self._entries.get(key)

    def with_prefix(self, prefix: str) -> Iterator[DirEntry]:
        """Entries whose key starts with ``prefix`` (all for ""), in key order."""
        for key in self._keys[self._start(prefix) : self._end(prefix)]:
            yield self._entries[key]

    def put(self, entry: DirEntry) -> None:
        if entry.key not in self._entries:
            bisect.insort(self._keys, entry.key)
        self._entries[entry.key] = entry

    def remove(self, key: str) -> DirEntry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]
        return entry

    def remove_prefix(self, prefix: str) -> int:
        """Remove every entry under ``prefix``; returns how many there were."""
        start, end = self._start(prefix), self._end(prefix)
        for key in self._keys[start:end]:
            del self._entries[key]
        del self._keys[start:end]
        return end - start

    def entries(self) -> list[DirEntry]:
        return [self._entries[key] for key in self._keys]

    def _start(self, prefix: str) -> int:
        return bisect.bisect_left(self._keys, prefix)

    def _end(self, prefix: str) -> int:
        end = self._start(prefix)
        while end < len(self._keys) and self._keys[end].startswith(prefix):
            end += 1
        return end

    # -- the graveyard ---------------------------------------------------------

    def bury(self, key: str, index: int) -> None:
        """Leave a tombstone for ``key`` deleted at ``index`` (replacing an older one)."""
        self._tombstones[key] = index

    def tombstone_max(self, prefix: str) -> int:
        """The highest index of the tombstones under ``prefix`` (0 when none)."""
        return max(
            (index for key, index in self._tombstones.items() if key.startswith(prefix)),
            default=0,
        )

    def reap(self, up_to: int) -> int:
        """Drop tombstones with an index up to ``up_to``; returns how many went."""
        dead = [key for key, index in self._tombstones.items() if index <= up_to]
        for key in dead:
            del self._tombstones[key]
        return len(dead)

    def tombstones(self) -> list[tuple[str, int]]:
        return sorted(self._tombstones.items())
