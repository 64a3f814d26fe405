# -*- test-case-name: tests.unit.gossip.test_memberlist -*-
"""
memberlist's tunables, as hashicorp/memberlist 0.2.2 ships them.

``lan()`` and ``wan()`` are ``DefaultLANConfig``/``DefaultWANConfig``;
``dev()`` is the LAN profile with Consul's ``-dev`` gossip overrides
(gossip, probe interval and probe timeout 100 ms, suspicion multiplier 3).
All durations are seconds as floats.
"""

from __future__ import annotations

import attrs

#: Largest node meta a node may advertise (memberlist ``MetaMaxSize``).
META_MAX_SIZE = 512


@attrs.frozen(kw_only=True)
class MemberlistConfig:
    #: How often one node is probed (before awareness scaling).
    probe_interval: float = 1.0
    #: How long to wait for a direct ack before asking for indirect probes.
    probe_timeout: float = 0.5
    #: Helpers asked to probe a node indirectly.
    indirect_checks: int = 3
    #: Suspicion min = mult × max(1, log10 N) × probe_interval.
    suspicion_mult: int = 4
    #: Suspicion max = this × min.
    suspicion_max_timeout_mult: int = 6
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    #: Broadcasts go out retransmit_mult × ceil(log10(N + 1)) times.
    retransmit_mult: int = 4
    #: Periodic full-state sync (scaled up beyond 32 nodes); 0 disables it.
    push_pull_interval: float = 30.0
    #: Dead nodes still receive gossip (and stay listed) this long.
    gossip_to_the_dead_time: float = 30.0
    #: Awareness scales the probe interval up to this many times.
    awareness_max_multiplier: int = 8
    #: A dead node's name may be taken by another address after this long; 0 never.
    dead_node_reclaim_time: float = 0.0
    #: Byte budget for one UDP packet.
    udp_buffer_size: int = 1400
    #: Never fall back to a TCP ping when UDP probes fail.
    disable_tcp_pings: bool = False
    #: Deadline of one TCP exchange (push/pull, fallback ping) — used by transports.
    tcp_timeout: float = 10.0
    #: How long ``leave()`` and ``update_meta()`` wait for their broadcast.
    broadcast_timeout: float = 5.0

    @classmethod
    def lan(cls) -> MemberlistConfig:
        return cls()

    @classmethod
    def wan(cls) -> MemberlistConfig:
        return cls(
            tcp_timeout=30.0,
            suspicion_mult=6,
            push_pull_interval=60.0,
            probe_timeout=3.0,
            probe_interval=5.0,
            gossip_nodes=4,
            gossip_interval=0.5,
            gossip_to_the_dead_time=60.0,
        )

    @classmethod
    def local(cls) -> MemberlistConfig:
        """memberlist's ``DefaultLocalConfig`` (Serf's "local" profile)."""
        return cls(
            tcp_timeout=1.0,
            indirect_checks=1,
            retransmit_mult=2,
            suspicion_mult=3,
            push_pull_interval=15.0,
            probe_timeout=0.2,
            probe_interval=1.0,
            gossip_interval=0.1,
            gossip_to_the_dead_time=15.0,
        )

    @classmethod
    def dev(cls) -> MemberlistConfig:
        """LAN with Consul's dev-mode gossip overrides."""
        return attrs.evolve(
            cls.lan(),
            gossip_interval=0.1,
            probe_interval=0.1,
            probe_timeout=0.1,
            suspicion_mult=3,
        )

    def scaled(self, factor: float) -> MemberlistConfig:
        """Every duration multiplied by ``factor``; counts and ratios unchanged (simulations)."""
        return attrs.evolve(
            self,
            probe_interval=self.probe_interval * factor,
            probe_timeout=self.probe_timeout * factor,
            gossip_interval=self.gossip_interval * factor,
            push_pull_interval=self.push_pull_interval * factor,
            gossip_to_the_dead_time=self.gossip_to_the_dead_time * factor,
            dead_node_reclaim_time=self.dead_node_reclaim_time * factor,
            tcp_timeout=self.tcp_timeout * factor,
            broadcast_timeout=self.broadcast_timeout * factor,
        )
