# -*- test-case-name: tests.unit.raft.test_machine -*-
"""The Raft machine's states, as one value the transition modules share."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class States:
    """The machine's states, handed to the modules that declare transitions."""

    Stopped: Any
    Follower: Any
    PreCandidate: Any
    Candidate: Any
    Leader: Any
    ShutDown: Any

    @property
    def campaigning(self) -> tuple[Any, ...]:
        return (self.PreCandidate, self.Candidate)

    @property
    def not_leading(self) -> tuple[Any, ...]:
        return (self.Follower, self.PreCandidate, self.Candidate)
