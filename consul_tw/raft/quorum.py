# -*- test-case-name: tests.unit.raft.test_machine -*-
"""Majority arithmetic: votes needed and the commit index from match indexes."""

from __future__ import annotations

from collections.abc import Iterable


def votes_needed(voters: int) -> int:
    """A strict majority of the voters."""
    return voters // 2 + 1


def commit_index(match_indexes: Iterable[int]) -> int:
    """The highest index stored on a majority of voters."""
    ordered = sorted(match_indexes, reverse=True)
    if not ordered:
        return 0
    return ordered[votes_needed(len(ordered)) - 1]
