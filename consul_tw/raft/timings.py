# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
Raft timeouts, scaled as Consul scales hashicorp/raft's.

Production uses hashicorp/raft's defaults (heartbeat 1 s, election 1 s,
leader lease 500 ms) times ``performance.raft_multiplier`` (5 unless set).
``-dev`` uses Consul's dev overrides, which are much shorter so a single
server elects itself within tens of milliseconds.
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class RaftTimings:
    heartbeat_timeout: float
    election_timeout: float
    leader_lease_timeout: float
    commit_timeout: float = 0.050

    @classmethod
    def production(cls, multiplier: int) -> RaftTimings:
        return cls(
            heartbeat_timeout=1.0 * multiplier,
            election_timeout=1.0 * multiplier,
            leader_lease_timeout=0.5 * multiplier,
        )

    @classmethod
    def dev(cls) -> RaftTimings:
        return cls(heartbeat_timeout=0.035, election_timeout=0.052, leader_lease_timeout=0.020)

    @property
    def heartbeat_interval(self) -> float:
        """How often a leader sends heartbeats: a tenth of the follower timeout (hashicorp/raft)."""
        return self.heartbeat_timeout / 10
