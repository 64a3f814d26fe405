# -*- test-case-name: tests.unit.gossip.test_serf -*-
"""
Serf's tunables, as Consul sets them (serf 0.9.4 defaults plus Consul's
``lib.SerfDefaultConfig`` and agent overrides).  All durations are seconds.

``lan()`` and ``wan()`` differ only in the memberlist profile they run on
(:class:`~consul_tw.gossip.memberlist.config.MemberlistConfig`); the Serf
layer's own timers are the same in both pools.  ``dev()`` is ``lan()``:
Consul's ``-dev`` mode only speeds memberlist up.
"""

from __future__ import annotations

import attrs

HOUR = 3600.0


@attrs.frozen(kw_only=True)
class SerfConfig:
    #: How often to try a push/pull with one random failed member.
    reconnect_interval: float = 30.0
    #: A failed member is forgotten (reaped) after this long (Consul: 72 h; serf: 24 h).
    reconnect_timeout: float = 72 * HOUR
    #: A left member is kept, as a tombstone, this long.
    tombstone_timeout: float = 24 * HOUR
    #: How often failed and left members are checked for reaping.
    reap_interval: float = 15.0
    #: After the memberlist leave, keep answering probes this long (Consul: 3 s).
    leave_propagate_delay: float = 3.0
    #: How long leave / force-leave wait for their intent to be sent out.
    broadcast_timeout: float = 5.0
    #: Intents about names we do not know yet are kept this long.
    recent_intent_timeout: float = 300.0
    #: Dedupe windows (Lamport times) for user events and queries.
    event_buffer_size: int = 512
    query_buffer_size: int = 512
    #: Default query timeout = gossip interval × this × ceil(log10(N + 1)).
    query_timeout_mult: int = 16
    #: Encoded size limits.
    query_size_limit: int = 1024
    query_response_size_limit: int = 1024
    user_event_size_limit: int = 512
    #: Broadcast queues are pruned beyond max(min_queue_depth, 2 × members).
    min_queue_depth: int = 4096

    @classmethod
    def lan(cls) -> SerfConfig:
        return cls()

    @classmethod
    def wan(cls) -> SerfConfig:
        return cls()

    @classmethod
    def dev(cls) -> SerfConfig:
        return cls()

    def scaled(self, factor: float) -> SerfConfig:
        """Every duration multiplied by ``factor`` (simulations)."""
        return attrs.evolve(
            self,
            reconnect_interval=self.reconnect_interval * factor,
            reconnect_timeout=self.reconnect_timeout * factor,
            tombstone_timeout=self.tombstone_timeout * factor,
            reap_interval=self.reap_interval * factor,
            leave_propagate_delay=self.leave_propagate_delay * factor,
            broadcast_timeout=self.broadcast_timeout * factor,
            recent_intent_timeout=self.recent_intent_timeout * factor,
        )
