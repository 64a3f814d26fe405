"""
Whole memberlist clusters on one clock: the simulation proof for the gossip layer.

Every cluster runs on one :class:`~consul_tw.testing.network.SimClock` (a
``twisted.internet.task.Clock`` that inserts calls in order instead of
re-sorting on every call, and shows each call its own time) with a seeded
:class:`~consul_tw.testing.network.SimNetwork`: 1-5 ms latency, and the
faults each scenario asks for.  Timings are memberlist's LAN defaults,
unscaled (probe 1 s / 500 ms, suspicion ×4 / max ×6, gossip 200 ms to 3,
retransmit ×4, push/pull 30 s, gossip-to-the-dead 30 s).  Nothing sleeps:
simulated minutes take seconds.

The bounds asserted are derived from the config; the figures measured on
these seeds are in the docstrings.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.interfaces import NoopDelegate
from consul_tw.gossip.memberlist.memberlist import Memberlist
from consul_tw.gossip.memberlist.messages import NodeState, Ping
from consul_tw.gossip.memberlist.state import Node
from consul_tw.gossip.memberlist.suspicion import suspicion_timeout
from consul_tw.testing.network import SimClock, SimNetwork

PORT = 8301


@attrs.define
class SimLogger:
    """A cheap stand-in for HcLogger (same methods) that keeps INFO and above."""

    name: str
    lines: list[tuple[float, str, str, str]]
    clock: Clock

    def _add(self, level: str, text: str) -> None:
        self.lines.append((self.clock.seconds(), self.name, level, text))

    def trace(self, text: str, **kw: object) -> None:
        pass

    def debug(self, text: str, **kw: object) -> None:
        pass

    def info(self, text: str, **kw: object) -> None:
        self._add("INFO", text)

    def warn(self, text: str, **kw: object) -> None:
        self._add("WARN", text)

    def error(self, text: str, **kw: object) -> None:
        self._add("ERROR", text)


class WatchingDelegate(NoopDelegate):
    """Records who declared whom dead, and stands in for Serf's failed-member list."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.failed: dict[str, tuple[str, int]] = {}

    def notify_leave(self, node: Node) -> None:
        self.cluster.deaths.append((self.cluster.clock.seconds(), self.name, node.name, node.state))
        if node.state == NodeState.DEAD:
            self.failed[node.name] = (node.addr, node.port)

    def notify_join(self, node: Node) -> None:
        self.failed.pop(node.name, None)


@attrs.define(eq=False)
class Cluster:
    config: MemberlistConfig
    seed: int
    loss: float = 0.0
    clock: SimClock = attrs.field(factory=SimClock)
    net: SimNetwork = attrs.field(init=False)
    nodes: dict[str, Memberlist] = attrs.field(factory=dict)
    delegates: dict[str, WatchingDelegate] = attrs.field(factory=dict)
    lines: list[tuple[float, str, str, str]] = attrs.field(factory=list)
    deaths: list[tuple[float, str, str, NodeState]] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        self.net = SimNetwork(self.clock, random.Random(self.seed), loss=self.loss,
                              tcp_timeout=self.config.tcp_timeout)

    @staticmethod
    def addr(i: int) -> str:
        return f"10.0.{i // 200}.{i % 200 + 1}"

    def add(self, i: int) -> Memberlist:
        name, addr = f"node-{i}", self.addr(i)
        delegate = self.delegates[name] = WatchingDelegate(self, name)
        ml = Memberlist(
            self.config, name, addr, PORT, self.net.clock_for(addr, PORT),
            random.Random(self.seed * 100_003 + i), self.net.transport_for(addr, PORT),
            delegate, SimLogger(name, self.lines, self.clock),  # type: ignore[arg-type]
        )
        self.net.attach(addr, PORT, ml)
        self.nodes[name] = ml
        ml.start()
        return ml

    def start(self, n: int, spacing: float = 0.01) -> None:
        """n nodes; each joins through node-0, ``spacing`` seconds apart."""
        seed = self.add(0)
        for i in range(1, n):
            ml = self.add(i)
            self.clock.callLater(i * spacing, ml.join, [(seed.addr, PORT)])

    def run(self, seconds: float) -> None:
        self.clock.run_until(self.clock.seconds() + seconds)

    def run_until(self, done: Callable[[], bool], limit: float, step: float = 0.1) -> float:
        """Advance until ``done()``; the simulated time it took (fails past ``limit``)."""
        start = self.clock.seconds()
        while not done():
            if self.clock.seconds() - start > limit:
                raise AssertionError(f"not done after {limit} simulated seconds")
            self.clock.advance(step)
        return self.clock.seconds() - start

    def states(self, observer: str, names: list[str] | None = None) -> dict[str, NodeState]:
        ml = self.nodes[observer]
        out = {}
        for name in names if names is not None else list(self.nodes):
            node = ml.node(name)
            out[name] = NodeState.DEAD if node is None else node.state
        return out

    def all_see_all_alive(self, live: list[str] | None = None) -> bool:
        names = live if live is not None else list(self.nodes)
        return all(
            all(s == NodeState.ALIVE for s in self.states(o, names).values()) for o in names
        )

    def count(self, fragment: str) -> int:
        return sum(1 for line in self.lines if fragment in line[3])

    def reconnect_tick(self, interval: float = 30.0) -> None:
        """
        Serf's reconnect, which memberlist leaves to the layer above: every
        ``interval`` each node, with probability failed/alive, push/pulls
        with one random member it holds as failed.
        """
        for name, ml in self.nodes.items():
            failed = self.delegates[name].failed
            if ml.is_shut_down or not failed:
                continue
            alive = max(1, ml.num_members())
            if ml.rng.random() > len(failed) / alive:
                continue
            addr = failed[sorted(failed)[ml.rng.randrange(len(failed))]]
            ml.join([addr]).addErrback(lambda f: f.trap(Exception))
        self.clock.callLater(interval, self.reconnect_tick, interval)

    def stop(self, test: SynchronousTestCase) -> None:
        for ml in self.nodes.values():
            ml.shutdown()
        for call in list(self.clock.getDelayedCalls()):
            if getattr(getattr(call, "func", None), "__name__", "") == "reconnect_tick":
                call.cancel()
        self.net.drain()
        test.assertEqual(self.clock.getDelayedCalls(), [])


LAN = MemberlistConfig.lan()


class GossipClusterTests(SynchronousTestCase):
    def cluster(self, seed: int, loss: float = 0.0,
                config: MemberlistConfig = LAN) -> Cluster:
        cluster = Cluster(config, seed, loss)
        self.addCleanup(cluster.stop, self)
        return cluster

    def test_join_through_a_seed_converges(self) -> None:
        """
        128 nodes join through one seed, 10 ms apart (the last at 1.27 s).
        Everyone lists everyone alive 3.5-4.3 s after the first join (seeds
        1, 11-13); bound 20 s.
        """
        c = self.cluster(seed=1)
        c.start(128)
        took = c.run_until(c.all_see_all_alive, limit=20.0)
        self.assertLess(took, 20.0)
        self.assertEqual(c.deaths, [])
        self.assertEqual({ml.num_members() for ml in c.nodes.values()}, {128})

    def test_crashed_member_is_marked_dead_by_everyone(self) -> None:
        """
        100 nodes; node-17 is killed.  Lifeguard: min = 4 × log10(100) × 1 s
        = 8 s, max = 6 × min = 48 s; independent suspicions from other
        probers bring the timers down to min.  Measured (seeds 2, 21-24):
        first suspected 1.0-3.2 s after the kill, first declared dead exactly
        min = 8 s later, dead everywhere 9.4-11.6 s (probe periods) after
        the kill.  Bound: max + 5 probe intervals, and never before min.
        """
        c = self.cluster(seed=2)
        c.start(100)
        c.run_until(c.all_see_all_alive, limit=20.0)
        c.run(10.0)
        others = [n for n in c.nodes if n != "node-17"]
        crashed_at = c.clock.seconds()
        c.net.crash(c.addr(17), PORT)
        took = c.run_until(
            lambda: all(c.states(o, ["node-17"])["node-17"] == NodeState.DEAD for o in others),
            limit=120.0, step=0.05,
        )
        n = len(c.nodes)
        min_timeout = suspicion_timeout(LAN.suspicion_mult, n, LAN.probe_interval)
        max_timeout = LAN.suspicion_max_timeout_mult * min_timeout
        self.assertLessEqual(took, max_timeout + 5 * LAN.probe_interval)
        first = min(t for t, _, name, _ in c.deaths if name == "node-17") - crashed_at
        self.assertGreaterEqual(first, min_timeout)
        self.assertEqual({name for _, _, name, _ in c.deaths}, {"node-17"})
        self.assertTrue(c.count("Marking node-17 as failed, suspect timeout reached"))

    def test_packet_loss_never_kills_a_healthy_member(self) -> None:
        """
        100 nodes, 10% loss on every packet, 5 simulated minutes (~12,000
        packets lost).  About 1 probe in 130 loses both the direct and all
        three indirect paths; the TCP fallback then keeps the node alive
        ("Was able to connect ...", 220-260 times), so nobody is even
        suspected.
        """
        c = self.cluster(seed=3)
        c.start(100)
        c.run_until(c.all_see_all_alive, limit=20.0)
        c.net.loss = 0.10
        c.run(300.0)
        self.assertGreater(c.net.stats.packets_lost, 10_000)
        self.assertEqual(c.deaths, [])
        self.assertGreater(c.count("Was able to connect to"), 0)
        self.assertTrue(c.all_see_all_alive())

    def test_packet_loss_udp_only_suspects_are_refuted(self) -> None:
        """
        The same without TCP fallback pings, so failed probes do turn into
        suspicions: over 3 simulated minutes 130-145 suspicions are raised
        (seeds 4, 41, 42) and each is refuted before its 8-48 s timer runs
        out.  A suspicion may be open at the end, so the check that everyone
        is alive comes after the loss stops.
        """
        c = self.cluster(seed=4, config=attrs.evolve(LAN, disable_tcp_pings=True))
        c.start(100)
        c.run_until(c.all_see_all_alive, limit=20.0)
        c.net.loss = 0.10
        c.run(180.0)
        self.assertEqual(c.deaths, [])
        self.assertGreater(c.count("has failed, no acks received"), 20)
        self.assertGreater(c.count("Refuting a suspect message"), 20)
        c.net.loss = 0.0
        c.run_until(c.all_see_all_alive, limit=10.0)
        self.assertEqual(c.deaths, [])

    def test_stalled_member_is_not_declared_dead(self) -> None:
        """
        50 nodes; three of them in turn are frozen (SIGSTOP) for 2 s each.
        Their timers and inbound packets wait; probes of them fail and they
        are suspected (0-5 times per run, seeds 5, 51-53, 104), but on resuming
        they read the suspicion and refute it long before the 6.8 s minimum
        timeout.
        """
        c = self.cluster(seed=5)
        c.start(50)
        c.run_until(c.all_see_all_alive, limit=20.0)
        c.run(5.0)
        for i in (7, 21, 33):
            c.net.pause(c.addr(i), PORT, 2.0)
            c.run(12.0)
        self.assertEqual(c.deaths, [])
        self.assertGreater(c.count("has failed, no acks received"), 0)
        refuted = {name for _, name, _, text in c.lines if text.startswith("memberlist: Refuting")}
        self.assertLessEqual(refuted, {"node-7", "node-21", "node-33"})
        self.assertTrue(refuted)
        self.assertTrue(c.all_see_all_alive())

    def test_partition_and_heal(self) -> None:
        """
        40 nodes split 20/20.  Each side marks the whole other side dead in
        16-26 s (15 seeds: failed probes through helpers on the far
        side cost awareness, so probing slows down); bound: max suspicion
        timeout (38.4 s) + 5 probe intervals.  After healing, gossip to the
        recently dead and Serf-style reconnects (push/pull with a failed
        member every 30 s) carry each side's "dead" view across; every node
        told it is dead refutes (~40 refutations), and everyone sees all 40
        alive again 5-15 s after the heal (one seed in 15: 40.5 s, a node
        that missed a refutation in the burst and waited for anti-entropy);
        bound: two reconnect intervals + 20 s.
        """
        c = self.cluster(seed=6)
        c.start(40)
        c.run_until(c.all_see_all_alive, limit=20.0)
        c.run(5.0)
        left = [f"node-{i}" for i in range(20)]
        right = [f"node-{i}" for i in range(20, 40)]
        c.net.partition([c.addr(i) for i in range(20)], [c.addr(i) for i in range(20, 40)])
        c.clock.callLater(30.0, c.reconnect_tick, 30.0)

        def split() -> bool:
            return all(
                all(s == NodeState.DEAD for s in c.states(o, right if o in left else left).values())
                and all(s == NodeState.ALIVE for s in c.states(o, left if o in left else right)
                        .values())
                for o in c.nodes
            )

        took = c.run_until(split, limit=120.0, step=0.5)
        min_timeout = suspicion_timeout(LAN.suspicion_mult, 40, LAN.probe_interval)
        self.assertLessEqual(took, LAN.suspicion_max_timeout_mult * min_timeout
                             + 5 * LAN.probe_interval)
        healed_at = c.clock.seconds()
        c.net.heal()
        healed = c.run_until(c.all_see_all_alive, limit=80.0, step=0.5)
        self.assertLessEqual(healed, 2 * 30.0 + 20.0)
        self.assertGreater(c.count("Refuting a"), 0)
        # While split, nobody declared a node of its own side dead.  (After
        # the heal, "dead" gossip from the other side is briefly believed
        # until the node itself refutes it: memberlist accepts any dead
        # message at the current incarnation.)
        for when, observer, node, _ in c.deaths:
            if when < healed_at:
                self.assertNotEqual(observer in left, node in left)


class SimNetworkTests(SynchronousTestCase):
    """The simulator itself: clock ordering, pauses, streams and faults."""

    def test_sim_clock_runs_calls_at_their_own_time(self) -> None:
        clock = SimClock()
        seen: list[tuple[str, float]] = []
        clock.callLater(2.0, lambda: seen.append(("b", clock.seconds())))
        first = clock.callLater(1.0, lambda: seen.append(("a", clock.seconds())))
        late = clock.callLater(0.5, lambda: seen.append(("late", clock.seconds())))
        gone = clock.callLater(0.7, lambda: seen.append(("gone", clock.seconds())))
        late.delay(2.0)
        gone.cancel()
        first.reset(1.5)
        clock.advance(10.0)
        self.assertEqual(seen, [("a", 1.5), ("b", 2.0), ("late", 2.5)])
        self.assertEqual(clock.seconds(), 10.0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_pause_holds_timers_and_packets(self) -> None:
        clock = SimClock()
        net = SimNetwork(clock, random.Random(0), latency=(0.01, 0.01))
        got: list[tuple[str, float]] = []

        class Receiver:
            def packet_received(self, addr: str, port: int, messages: list[object]) -> None:
                got.append(("packet", clock.seconds()))

        net.attach("10.0.0.2", PORT, Receiver())  # type: ignore[arg-type]
        node_clock = net.clock_for("10.0.0.2", PORT)
        node_clock.callLater(0.5, lambda: got.append(("timer", clock.seconds())))
        cancelled = node_clock.callLater(0.6, lambda: got.append(("cancelled", 0.0)))
        net.pause("10.0.0.2", PORT, 2.0)
        net.transport_for("10.0.0.1", PORT).send_packet("10.0.0.2", PORT, [])
        clock.advance(1.9)
        self.assertEqual(got, [])
        # Held timers are still pending for the node, and still cancellable.
        self.assertEqual(len(node_clock.getDelayedCalls()), 2)
        self.assertTrue(cancelled.active())
        cancelled.cancel()
        self.assertEqual(len(node_clock.getDelayedCalls()), 1)
        clock.advance(0.1)
        self.assertEqual(got, [("packet", 2.0), ("timer", 2.0)])
        self.assertEqual(node_clock.getDelayedCalls(), [])

    def test_streams_fail_across_a_partition_and_to_a_crashed_node(self) -> None:
        clock = SimClock()
        net = SimNetwork(clock, random.Random(0), tcp_timeout=10.0)
        delegate = NoopDelegate()
        nodes = []
        for last in (1, 2):
            addr = f"10.0.0.{last}"
            ml = Memberlist(LAN, f"n{last}", addr, PORT, net.clock_for(addr, PORT),
                            random.Random(last), net.transport_for(addr, PORT), delegate,
                            SimLogger(addr, [], clock))  # type: ignore[arg-type]
            net.attach(addr, PORT, ml)
            nodes.append(ml)
        t = net.transport_for("10.0.0.1", PORT)
        ok = t.push_pull("10.0.0.2", PORT, nodes[0].sync.local_state(join=True))
        clock.advance(0.02)
        self.assertEqual([n.name for n in self.successResultOf(ok).nodes], ["n2"])
        net.partition(["10.0.0.1"], ["10.0.0.2"])
        blocked = t.stream_ping("10.0.0.2", PORT, Ping(seq_no=1, node="n2"))
        clock.advance(9.9)
        self.assertNoResult(blocked)
        clock.advance(0.1)
        self.failureResultOf(blocked)
        net.heal()
        net.crash("10.0.0.2", PORT)
        refused = t.stream_ping("10.0.0.2", PORT, Ping(seq_no=1, node="n2"))
        clock.advance(0.01)
        self.failureResultOf(refused, ConnectionRefusedError)
        nodes[0].shutdown()
        net.drain()
        self.assertEqual(clock.getDelayedCalls(), [])


    def test_loss_and_duplication(self) -> None:
        clock = SimClock()
        net = SimNetwork(clock, random.Random(0), duplicate=1.0)
        got: list[list[object]] = []

        class Receiver:
            def packet_received(self, addr: str, port: int, messages: list[object]) -> None:
                got.append(messages)

        net.attach("10.0.0.2", PORT, Receiver())  # type: ignore[arg-type]
        t = net.transport_for("10.0.0.1", PORT)
        t.send_packet("10.0.0.2", PORT, [Ping(seq_no=1, node="x")])
        clock.advance(0.01)
        self.assertEqual(len(got), 2)
        net.duplicate, net.loss = 0.0, 1.0
        t.send_packet("10.0.0.2", PORT, [Ping(seq_no=2, node="x")])
        clock.advance(0.01)
        self.assertEqual(len(got), 2)
        self.assertEqual((net.stats.packets_sent, net.stats.packets_lost,
                          net.stats.packets_delivered), (2, 1, 2))
