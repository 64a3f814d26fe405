"""
One memberlist node driven by hand: fake transport, fake clock.

Each test feeds records in through ``packet_received``/``push_pull_received``
and asserts what went out through the transport, what the node now believes,
what the delegate was told and what was logged.
"""

from __future__ import annotations

import random
import socket
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.interfaces import NoopDelegate
from consul_tw.gossip.memberlist.memberlist import (
    BroadcastTimeout,
    Memberlist,
    MemberlistShutdown,
)
from consul_tw.gossip.memberlist.messages import (
    CONSUL_VSN,
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
)
from consul_tw.gossip.memberlist.pushpull import JoinError, push_pull_scale
from consul_tw.gossip.memberlist.state import Node
from consul_tw.testing.network import SimNetwork

ME = "10.0.0.1"


def ip(text: str) -> bytes:
    return socket.inet_aton(text)


@attrs.define
class FakeTransport:
    packets: list[tuple[str, int, list[Message]]] = attrs.field(factory=list)
    push_pulls: list[tuple[str, int, PushPull, Deferred[PushPull]]] = attrs.field(factory=list)
    stream_pings: list[tuple[str, int, Ping, Deferred[Ack]]] = attrs.field(factory=list)

    def send_packet(self, addr: str, port: int, messages: list[Message]) -> None:
        self.packets.append((addr, port, list(messages)))

    def push_pull(self, addr: str, port: int, message: PushPull) -> Deferred[PushPull]:
        d: Deferred[PushPull] = Deferred()
        self.push_pulls.append((addr, port, message, d))
        return d

    def stream_ping(self, addr: str, port: int, ping: Ping) -> Deferred[Ack]:
        d: Deferred[Ack] = Deferred()
        self.stream_pings.append((addr, port, ping, d))
        return d

    def primaries(self) -> list[tuple[str, int, Message]]:
        """The first message of every packet (the rest is piggybacked gossip)."""
        return [(a, p, msgs[0]) for a, p, msgs in self.packets]


class RecordingDelegate(NoopDelegate):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, NodeState]] = []
        self.user: list[bytes] = []
        self.meta = b"meta"
        self.outgoing: list[bytes] = []
        self.alive_error: str | None = None
        self.merge_error: str | None = None
        self.merged: list[tuple[bytes, bool]] = []
        self.conflicts: list[tuple[Node, Node]] = []
        self.pings: list[tuple[str, float, bytes]] = []

    def node_meta(self, limit: int) -> bytes:
        return self.meta

    def notify_user(self, payload: bytes) -> None:
        self.user.append(payload)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out, self.outgoing = self.outgoing, []
        return out

    def local_state(self, join: bool) -> bytes:
        return b"serf-state" + (b"-join" if join else b"")

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        self.merged.append((data, join))

    def notify_join(self, node: Node) -> None:
        self.events.append(("join", node.name, node.state))

    def notify_leave(self, node: Node) -> None:
        self.events.append(("leave", node.name, node.state))

    def notify_update(self, node: Node) -> None:
        self.events.append(("update", node.name, node.state))

    def notify_alive(self, node: Node) -> str | None:
        return self.alive_error if node.name != "me" else None

    def notify_merge(self, nodes: list[Node]) -> str | None:
        return self.merge_error

    def notify_conflict(self, existing: Node, other: Node) -> None:
        self.conflicts.append((existing, other))

    def ack_payload(self) -> bytes:
        return b"coord"

    def notify_ping_complete(self, node: Node, rtt: float, payload: bytes) -> None:
        self.pings.append((node.name, rtt, payload))


class Harness(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = FakeTransport()
        self.delegate = RecordingDelegate()
        self.log = EventLoggingObserver.createWithCleanup(
            self,
            globalLogPublisher,  # type: ignore[arg-type]
        )
        self.ml = Memberlist(
            MemberlistConfig.lan(),
            "me",
            ME,
            8301,
            self.clock,
            random.Random(3),
            self.transport,
            self.delegate,
            HcLogger("agent.server.memberlist.lan"),
        )

    def tearDown(self) -> None:
        self.ml.shutdown()
        self.clock.advance(0)  # one-turn-later Deferreds
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def lines(self, level: str | None = None) -> list[str]:
        return [
            e["hclog_message"]
            for e in self.log
            if "hclog_message" in e and (level is None or e["hclog_level"] == level)
        ]

    def add(self, name: str, last: int, inc: int = 1, vsn: bytes = CONSUL_VSN) -> None:
        self.ml.apply_alive(
            Alive(incarnation=inc, node=name, addr=ip(f"10.0.0.{last}"), port=8301, vsn=vsn)
        )

    def receive(self, *messages: Message, addr: str = "10.0.0.9", port: int = 7946) -> None:
        self.ml.packet_received(addr, port, list(messages))

    def queued(self) -> list[Any]:
        """Our queued broadcasts (then forget them, so each test sees only what is new)."""
        pending = self.ml.broadcasts.pending()
        self.ml.broadcasts.reset()
        return pending

    def state(self, name: str) -> NodeState | None:
        node = self.ml.node(name)
        return None if node is None else node.state


class PingTests(Harness):
    def test_ack_goes_to_source_addr_and_port(self) -> None:
        self.receive(
            Ping(seq_no=5, node="me", source_addr=ip("10.0.0.2"), source_port=8302, source_node="b")
        )
        addr, port, msgs = self.transport.packets[-1]
        self.assertEqual((addr, port, msgs[0]), ("10.0.0.2", 8302, Ack(seq_no=5, payload=b"coord")))

    def test_ack_goes_to_sender_without_source(self) -> None:
        self.receive(Ping(seq_no=6, node=""))
        self.assertEqual(
            self.transport.primaries(), [("10.0.0.9", 7946, Ack(seq_no=6, payload=b"coord"))]
        )

    def test_ping_for_another_name_is_ignored(self) -> None:
        self.receive(Ping(seq_no=7, node="other"))
        self.assertEqual(self.transport.packets, [])
        self.assertEqual(
            self.lines("WARN"),
            ["memberlist: Got ping for unexpected node 'other' from=10.0.0.9:7946"],
        )

    def test_ack_piggybacks_gossip_and_user_messages(self) -> None:
        self.delegate.outgoing = [b"\x01serf"]
        self.receive(Ping(seq_no=8, node="me"))
        msgs = self.transport.packets[-1][2]
        self.assertEqual(msgs[0], Ack(seq_no=8, payload=b"coord"))
        self.assertIn(User(payload=b"\x01serf"), msgs)
        self.assertTrue(any(isinstance(m, Alive) and m.node == "me" for m in msgs))

    def test_stream_ping(self) -> None:
        self.assertEqual(self.ml.stream_ping_received(Ping(seq_no=3, node="me")), Ack(seq_no=3))
        self.assertIsNone(self.ml.stream_ping_received(Ping(seq_no=3, node="x")))

    def test_user_message(self) -> None:
        self.receive(User(payload=b"\x02event"))
        self.assertEqual(self.delegate.user, [b"\x02event"])


class ProbeTests(Harness):
    def setUp(self) -> None:
        super().setUp()
        self.add("b", 2)
        for name, last in (("c", 3), ("d", 4), ("e", 5)):
            self.add(name, last)
        self.queued()  # drop the alive broadcasts
        self.transport.packets.clear()
        self.target = self.ml.table.get("b")

    def probe(self) -> Ping:
        assert self.target is not None
        self.ml.prober.probe_node(self.target)
        addr, port, ping = self.transport.primaries()[-1]
        self.assertEqual((addr, port), ("10.0.0.2", 8301))
        assert isinstance(ping, Ping)
        self.assertEqual(
            (ping.node, ping.source_addr, ping.source_port, ping.source_node),
            ("b", ip(ME), 8301, "me"),
        )
        return ping

    def test_direct_ack(self) -> None:
        self.ml.awareness.apply_delta(2)
        ping = self.probe()
        self.clock.advance(0.01)
        self.receive(Ack(seq_no=ping.seq_no, payload=b"c1"))
        self.clock.advance(5)
        self.assertEqual(self.state("b"), NodeState.ALIVE)
        self.assertEqual(self.ml.health_score(), 1)
        self.assertEqual(len(self.transport.packets), 1)
        self.assertEqual(self.delegate.pings, [("b", 0.01, b"c1")])

    def test_indirect_probe_with_nacks_then_suspect_then_dead(self) -> None:
        ping = self.probe()
        self.clock.advance(0.5)
        inds = [(a, m) for a, _, m in self.transport.primaries() if isinstance(m, IndirectPing)]
        self.assertEqual(sorted(a for a, _ in inds), ["10.0.0.3", "10.0.0.4", "10.0.0.5"])
        for _, ind in inds:
            self.assertEqual(
                (ind.seq_no, ind.target, ind.port, ind.node, ind.nack),
                (ping.seq_no, ip("10.0.0.2"), 8301, "b", True),
            )
        [(addr, _, tcp_ping, fallback)] = self.transport.stream_pings
        self.assertEqual((addr, tcp_ping), ("10.0.0.2", ping))
        fallback.errback(ConnectionRefusedError("10.0.0.2:8301"))
        for _ in inds:
            self.receive(Nack(seq_no=ping.seq_no))
        self.clock.advance(0.5)
        self.assertEqual(self.state("b"), NodeState.SUSPECT)
        self.assertEqual(self.ml.health_score(), 0)  # every helper answered: we are fine
        self.assertIn("memberlist: Suspect b has failed, no acks received", self.lines("INFO"))
        self.assertIn(Suspect(incarnation=1, node="b", from_node="me"), self.queued())
        # 5 nodes: k = 2 confirmations expected, so the timer starts at max = 6 × 4 s.
        self.clock.advance(23.9)
        self.assertEqual(self.state("b"), NodeState.SUSPECT)
        self.clock.advance(0.1)
        self.assertEqual(self.state("b"), NodeState.DEAD)
        self.assertIn(
            "memberlist: Marking b as failed, suspect timeout reached (0 peer confirmations)",
            self.lines("INFO"),
        )
        self.assertEqual(self.delegate.events[-1], ("leave", "b", NodeState.DEAD))
        self.assertIn(Dead(incarnation=1, node="b", from_node="me"), self.queued())

    def test_missing_nacks_count_against_our_health(self) -> None:
        ping = self.probe()
        self.clock.advance(0.5)
        self.receive(Nack(seq_no=ping.seq_no))
        self.clock.advance(0.5)
        self.assertEqual(self.state("b"), NodeState.SUSPECT)
        self.assertEqual(self.ml.health_score(), 2)

    def test_helpers_without_nack_support(self) -> None:
        for name, last in (("c", 3), ("d", 4), ("e", 5)):
            self.add(name, last, inc=2, vsn=bytes([1, 3, 2, 2, 5, 4]))
        ping = self.probe()
        self.clock.advance(0.5)
        inds = [m for _, _, m in self.transport.primaries() if isinstance(m, IndirectPing)]
        self.assertEqual([m.nack for m in inds], [False] * 3)
        self.clock.advance(0.5)
        self.assertEqual(self.ml.health_score(), 1)  # no nacks to go by: +1
        del ping

    def test_indirect_ack_saves_the_node(self) -> None:
        ping = self.probe()
        self.clock.advance(0.6)
        self.receive(Ack(seq_no=ping.seq_no))
        self.clock.advance(1)
        self.assertEqual(self.state("b"), NodeState.ALIVE)
        self.assertEqual(self.delegate.pings, [])  # RTT only from direct acks

    def test_tcp_fallback_keeps_the_node_alive(self) -> None:
        ping = self.probe()
        self.clock.advance(0.5)
        self.transport.stream_pings[0][3].callback(Ack(seq_no=ping.seq_no))
        self.clock.advance(0.5)
        self.assertEqual(self.state("b"), NodeState.ALIVE)
        self.assertEqual(
            self.lines("WARN"),
            [
                "memberlist: Was able to connect to b but other probes failed, network may be misconfigured"
            ],
        )

    def test_no_tcp_fallback_for_old_protocol(self) -> None:
        self.add("b", 2, inc=2, vsn=bytes([1, 2, 2, 2, 5, 4]))
        self.probe()
        self.clock.advance(1)
        self.assertEqual(self.transport.stream_pings, [])

    def test_awareness_stretches_the_probe(self) -> None:
        self.ml.awareness.apply_delta(2)
        self.probe()
        self.clock.advance(2.9)
        self.assertEqual(self.state("b"), NodeState.ALIVE)
        self.clock.advance(0.1)
        self.assertEqual(self.state("b"), NodeState.SUSPECT)

    def test_suspect_is_told_it_is_suspected(self) -> None:
        self.receive(Suspect(incarnation=1, node="b", from_node="c"))
        self.probe()
        self.assertEqual(
            self.transport.packets[-1][2][1], Suspect(incarnation=1, node="b", from_node="me")
        )

    def test_confirmations_shorten_the_suspicion(self) -> None:
        self.receive(Suspect(incarnation=1, node="b", from_node="c"))
        self.assertEqual(self.queued(), [Suspect(incarnation=1, node="b", from_node="c")])
        self.receive(Suspect(incarnation=1, node="b", from_node="d"))
        self.receive(Suspect(incarnation=1, node="b", from_node="d"))
        self.assertEqual(self.queued(), [Suspect(incarnation=1, node="b", from_node="d")])
        self.receive(Suspect(incarnation=1, node="b", from_node="e"))  # k = 2 reached: min 4 s
        self.clock.advance(3.9)
        self.assertEqual(self.state("b"), NodeState.SUSPECT)
        self.clock.advance(0.1)
        self.assertEqual(self.state("b"), NodeState.DEAD)
        self.assertIn(
            "memberlist: Marking b as failed, suspect timeout reached (2 peer confirmations)",
            self.lines("INFO"),
        )

    def test_refuted_suspicion_cancels_the_timer(self) -> None:
        self.receive(Suspect(incarnation=1, node="b", from_node="c"))
        self.receive(Alive(incarnation=2, node="b", addr=ip("10.0.0.2"), port=8301))
        self.assertEqual(self.state("b"), NodeState.ALIVE)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_scheduled_probing_round_robin(self) -> None:
        self.ml.start()
        seen = []
        for _ in range(8):
            self.clock.advance(1.0)
            for _addr, _, msg in self.transport.primaries():
                if isinstance(msg, Ping):
                    seen.append(msg.node)
                    self.receive(Ack(seq_no=msg.seq_no))
            self.transport.packets.clear()
        self.assertEqual(sorted(seen[:4]), ["b", "c", "d", "e"])
        self.assertEqual(sorted(seen[4:8]), ["b", "c", "d", "e"])


class IndirectPingTests(Harness):
    def request(self, nack: bool) -> Ping:
        self.receive(
            IndirectPing(
                seq_no=77,
                target=ip("10.0.0.2"),
                port=8301,
                node="b",
                nack=nack,
                source_addr=ip("10.0.0.3"),
                source_port=8301,
                source_node="c",
            )
        )
        addr, port, ping = self.transport.primaries()[-1]
        assert isinstance(ping, Ping)
        self.assertEqual((addr, port, ping.node, ping.source_node), ("10.0.0.2", 8301, "b", "me"))
        self.assertNotEqual(ping.seq_no, 77)  # our own sequence number
        return ping

    def test_ack_is_relayed(self) -> None:
        ping = self.request(nack=True)
        self.receive(Ack(seq_no=ping.seq_no), addr="10.0.0.2")
        self.clock.advance(1)
        self.assertEqual(self.transport.primaries()[-1], ("10.0.0.3", 8301, Ack(seq_no=77)))
        self.assertEqual(len(self.transport.packets), 2)  # and no nack

    def test_nack_after_probe_timeout(self) -> None:
        self.request(nack=True)
        self.clock.advance(0.5)
        self.assertEqual(self.transport.primaries()[-1], ("10.0.0.3", 8301, Nack(seq_no=77)))

    def test_no_nack_unless_asked(self) -> None:
        self.request(nack=False)
        self.clock.advance(1)
        self.assertEqual(len(self.transport.packets), 1)


class RefutationTests(Harness):
    def test_suspect_about_us(self) -> None:
        self.queued()
        self.receive(Suspect(incarnation=1, node="me", from_node="b"))
        self.assertEqual(self.lines("WARN"), ["memberlist: Refuting a suspect message (from: b)"])
        self.assertEqual(
            self.queued(), [Alive(incarnation=2, node="me", addr=ip(ME), port=8301, meta=b"meta")]
        )
        self.assertEqual(self.ml.health_score(), 1)
        self.assertEqual(self.ml.local_node().state, NodeState.ALIVE)

    def test_dead_about_us(self) -> None:
        self.queued()
        self.receive(Dead(incarnation=5, node="me", from_node="b"))
        self.assertEqual(self.queued()[0].incarnation, 6)
        self.assertEqual(self.lines("WARN"), ["memberlist: Refuting a dead message (from: b)"])

    def test_stale_alive_about_us_with_other_meta(self) -> None:
        self.queued()
        self.receive(Alive(incarnation=1, node="me", addr=ip(ME), port=8301, meta=b"old"))
        self.assertEqual(self.queued()[0].incarnation, 2)
        self.receive(Alive(incarnation=2, node="me", addr=ip(ME), port=8301, meta=b"meta"))
        self.assertEqual(self.queued(), [])


class ClaimTests(Harness):
    def test_alive_veto_and_conflict(self) -> None:
        self.delegate.alive_error = "Member 'x' part of wrong datacenter 'dc2'"
        self.receive(Alive(incarnation=1, node="x", addr=ip("10.0.0.7"), port=8301))
        self.assertIsNone(self.ml.node("x"))
        self.delegate.alive_error = None
        self.add("x", 7)
        self.receive(Alive(incarnation=9, node="x", addr=ip("10.0.0.8"), port=8301))
        [(existing, other)] = self.delegate.conflicts
        self.assertEqual((existing.addr, other.addr), ("10.0.0.7", "10.0.0.8"))
        self.assertEqual(self.ml.node("x").incarnation, 1)  # type: ignore[union-attr]

    def test_alive_is_regossiped_and_joined(self) -> None:
        self.queued()
        a = Alive(incarnation=1, node="x", addr=ip("10.0.0.7"), port=8301, meta=b"t")
        self.receive(a)
        self.assertEqual(self.queued(), [a])
        self.assertIn(("join", "x", NodeState.ALIVE), self.delegate.events)
        self.assertEqual(sorted(n.name for n in self.ml.members()), ["me", "x"])


class PushPullTests(Harness):
    def remote(self, join: bool, *nodes: tuple[str, int, NodeState], inc: int = 1) -> PushPull:
        states: Any = [
            PushNodeState(
                name=n,
                addr=ip(f"10.0.0.{last}"),
                port=8301,
                meta=b"",
                incarnation=inc,
                state=s,
                vsn=CONSUL_VSN,
            )
            for n, last, s in nodes
        ]
        return PushPull(join=join, user_state=b"their-state", nodes=states)

    def test_join(self) -> None:
        self.add("c", 3)
        self.add("d", 4)
        d = self.ml.join([("10.0.0.2", 8301)])
        [(addr, port, sent, reply)] = self.transport.push_pulls
        self.assertEqual(
            (addr, port, sent.join, sent.user_state), ("10.0.0.2", 8301, True, b"serf-state-join")
        )
        self.assertEqual(sorted(n.name for n in sent.nodes), ["c", "d", "me"])
        reply.callback(
            self.remote(
                True,
                ("b", 2, NodeState.ALIVE),
                ("c", 3, NodeState.LEFT),
                ("d", 4, NodeState.DEAD),
                ("z", 9, NodeState.DEAD),
            )
        )
        self.assertNoResult(d)  # fires one turn later
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual(self.state("b"), NodeState.ALIVE)
        self.assertEqual(self.state("c"), NodeState.LEFT)  # left: as dead-from-itself
        self.assertEqual(self.state("d"), NodeState.SUSPECT)  # dead: only a suspicion
        self.assertIsNone(self.ml.node("z"))  # never heard of: ignored
        self.assertEqual(self.delegate.merged, [(b"their-state", True)])

    def test_join_tries_each_address_in_turn(self) -> None:
        d = self.ml.join([("10.0.0.2", 8301), ("10.0.0.3", 8301)])
        self.assertEqual(len(self.transport.push_pulls), 1)
        self.transport.push_pulls[0][3].errback(ConnectionRefusedError("10.0.0.2:8301"))
        self.assertEqual(len(self.transport.push_pulls), 2)
        self.transport.push_pulls[1][3].callback(self.remote(True, ("c", 3, NodeState.ALIVE)))
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 1)

    def test_join_fails_when_no_address_works(self) -> None:
        d = self.ml.join([("10.0.0.2", 8301)])
        self.transport.push_pulls[0][3].errback(ConnectionRefusedError("10.0.0.2:8301"))
        self.clock.advance(0)
        error = self.failureResultOf(d, JoinError).value
        self.assertIn("Failed to join 10.0.0.2:8301", str(error))

    def test_merge_delegate_vetoes_a_join(self) -> None:
        self.delegate.merge_error = "Member 'b' part of wrong datacenter 'dc2'"
        d = self.ml.join([("10.0.0.2", 8301)])
        self.transport.push_pulls[0][3].callback(self.remote(True, ("b", 2, NodeState.ALIVE)))
        self.clock.advance(0)
        self.assertIn("wrong datacenter", str(self.failureResultOf(d, JoinError).value))
        self.assertIsNone(self.ml.node("b"))
        self.assertEqual(self.delegate.merged, [])

    def test_version_check(self) -> None:
        states: Any = [
            PushNodeState(
                name="b",
                addr=ip("10.0.0.2"),
                port=8301,
                meta=b"",
                incarnation=1,
                state=NodeState.ALIVE,
                vsn=bytes([1, 5, 2, 2, 5, 9]),
            )
        ]
        bad = PushPull(join=False, nodes=states)
        reply = self.ml.push_pull_received("10.0.0.2", 5555, bad)
        self.assertEqual(reply.join, False)
        self.assertIsNone(self.ml.node("b"))
        self.assertEqual(
            self.lines("ERROR"),
            [
                "memberlist: Failed push/pull merge: Node 'b' delegate protocol version (9) is"
                " incompatible: [2, 5] from=10.0.0.2:5555"
            ],
        )

    def test_answer_is_built_before_merging(self) -> None:
        reply = self.ml.push_pull_received(
            "10.0.0.2", 5555, self.remote(True, ("b", 2, NodeState.ALIVE))
        )
        self.assertEqual(
            (reply.join, [n.name for n in reply.nodes], reply.user_state),
            (True, ["me"], b"serf-state-join"),
        )
        self.assertEqual(self.state("b"), NodeState.ALIVE)

    def test_periodic_push_pull(self) -> None:
        self.add("b", 2)
        self.ml.start()
        self.clock.advance(30)
        [(addr, _, sent, reply)] = self.transport.push_pulls
        self.assertEqual((addr, sent.join), ("10.0.0.2", False))
        reply.errback(ConnectionRefusedError("10.0.0.2:8301"))
        self.assertIn(
            "memberlist: Push/Pull with b failed: Connection was refused by other side: 10.0.0.2:8301.",
            self.lines("ERROR"),
        )

    def test_push_pull_scale(self) -> None:
        self.assertEqual(push_pull_scale(30.0, 32), 30.0)
        self.assertEqual(push_pull_scale(30.0, 33), 60.0)
        self.assertEqual(push_pull_scale(30.0, 100), 90.0)


class GossipTests(Harness):
    def test_gossip_goes_to_live_and_recently_dead_nodes(self) -> None:
        self.add("b", 2)
        self.add("c", 3)
        self.add("d", 4)
        self.ml.apply_dead(Dead(incarnation=1, node="c", from_node="me"))
        self.ml.apply_dead(Dead(incarnation=1, node="d", from_node="d"))
        self.ml.start()
        self.clock.advance(0.2)
        targets = {a for a, _, _ in self.transport.packets}
        self.assertEqual(targets, {"10.0.0.2", "10.0.0.3"})  # not the left one
        self.clock.advance(60)  # c is dead for longer than gossip_to_the_dead_time
        self.transport.packets.clear()
        self.ml.apply_alive(Alive(incarnation=5, node="x", addr=ip("10.0.0.9"), port=8301))
        self.clock.advance(0.2)
        self.assertNotIn("10.0.0.3", {a for a, _, _ in self.transport.packets})

    def test_nothing_to_gossip_sends_nothing(self) -> None:
        self.add("b", 2)
        self.queued()
        self.ml.start()
        self.clock.advance(0.2)
        self.assertEqual(
            [m for _, _, m in self.transport.primaries() if not isinstance(m, Ping)], []
        )


class LeaveAndMetaTests(Harness):
    def test_leave_alone_fires_at_once(self) -> None:
        d = self.ml.leave()
        self.clock.advance(0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.ml.local_node().state, NodeState.LEFT)

    def test_leave_waits_for_the_broadcast(self) -> None:
        self.add("b", 2)
        self.queued()
        d = self.ml.leave()
        self.assertEqual(self.ml.local_node().state, NodeState.LEFT)
        self.assertNoResult(d)
        for _ in range(4):  # retransmit limit for 2 nodes: 4 × 1
            self.ml.send("10.0.0.2", 8301, Ping(seq_no=1, node="b"))
        self.assertIn(Dead(incarnation=1, node="me", from_node="me"), self.transport.packets[0][2])
        self.clock.advance(0)
        self.assertIsNone(self.successResultOf(d))
        self.receive(Suspect(incarnation=1, node="me", from_node="b"))  # no refuting any more
        self.assertEqual(self.queued(), [])

    def test_leave_timeout(self) -> None:
        self.add("b", 2)
        d = self.ml.leave(timeout=2.0)
        self.clock.advance(2.0)
        self.failureResultOf(d, BroadcastTimeout)

    def test_update_meta(self) -> None:
        self.add("b", 2)
        self.queued()
        self.delegate.meta = b"new tags"
        d = self.ml.update_meta(timeout=1.0)
        [alive] = self.queued()
        self.assertEqual((alive.incarnation, alive.meta), (2, b"new tags"))
        self.assertEqual(self.ml.local_node().meta, b"new tags")
        self.assertIn(("update", "me", NodeState.ALIVE), self.delegate.events)
        self.clock.advance(1.0)
        self.failureResultOf(d, BroadcastTimeout)

    def test_shutdown_cancels_everything(self) -> None:
        for name, last in (("b", 2), ("c", 3), ("d", 4)):
            self.add(name, last)
        self.ml.start()
        self.receive(Suspect(incarnation=1, node="b", from_node="c"))
        self.receive(IndirectPing(seq_no=1, target=ip("10.0.0.3"), port=8301, node="c", nack=True))
        self.clock.advance(0.7)
        joining = self.ml.join([("10.0.0.5", 8301)])
        leaving = self.ml.leave()
        self.assertNotEqual(self.clock.getDelayedCalls(), [])
        self.ml.shutdown()
        self.failureResultOf(leaving, MemberlistShutdown)
        self.clock.advance(0)
        self.assertIn(
            "Failed to join 10.0.0.5:8301: CancelledError",
            str(self.failureResultOf(joining, JoinError).value),
        )
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.receive(Ping(seq_no=1, node="me"))  # deaf now
        self.assertNotIn(
            Ack(seq_no=1, payload=b"coord"), [m for _, _, m in self.transport.primaries()]
        )


class TwoNodeTests(SynchronousTestCase):
    """Two real nodes talking through the in-memory network (1-5 ms latency)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.net = SimNetwork(self.clock, random.Random(0))
        self.a, self.da = self.node(1)
        self.b, self.db = self.node(2)

    def node(self, last: int) -> tuple[Memberlist, RecordingDelegate]:
        addr = f"10.0.0.{last}"
        delegate = RecordingDelegate()
        ml = Memberlist(
            MemberlistConfig.lan(),
            f"n{last}",
            addr,
            8301,
            self.net.clock_for(addr, 8301),
            random.Random(last),
            self.net.transport_for(addr, 8301),
            delegate,
            HcLogger(f"n{last}.memberlist.lan"),
        )
        self.net.attach(addr, 8301, ml)
        ml.start()
        return ml, delegate

    def tearDown(self) -> None:
        self.a.shutdown()
        self.b.shutdown()
        self.net.drain()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def advance(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.001)):
            self.clock.advance(0.001)

    def test_join_then_leave_shows_left_on_the_other_side(self) -> None:
        joined = self.b.join([("10.0.0.1", 8301)])
        self.advance(0.02)
        self.assertEqual(self.successResultOf(joined), 1)
        self.assertEqual(self.a.node("n2").state, NodeState.ALIVE)  # type: ignore[union-attr]
        self.assertEqual(self.b.node("n1").state, NodeState.ALIVE)  # type: ignore[union-attr]
        self.assertIn(("join", "n2", NodeState.ALIVE), self.da.events)
        self.advance(3.0)  # probing each other
        self.assertEqual(self.a.health_score(), 0)
        left = self.a.leave()
        self.advance(2.0)
        self.assertIsNone(self.successResultOf(left))
        self.assertEqual(self.b.node("n1").state, NodeState.LEFT)  # type: ignore[union-attr]
        self.assertEqual(self.db.events[-1], ("leave", "n1", NodeState.LEFT))
        self.assertEqual([n.name for n in self.b.members()], ["n2"])

    def test_meta_update_reaches_the_peer(self) -> None:
        self.b.join([("10.0.0.1", 8301)])
        self.advance(0.02)
        self.da.meta = b"v2"
        updated = self.a.update_meta()
        self.advance(1.0)
        self.assertIsNone(self.successResultOf(updated))
        node = self.b.node("n1")
        assert node is not None
        self.assertEqual((node.meta, node.incarnation), (b"v2", 2))
        self.assertIn(("update", "n1", NodeState.ALIVE), self.db.events)

    def test_joiner_vetoes_the_seed(self) -> None:
        self.db.merge_error = "Member 'n1' part of wrong datacenter 'dc2'"
        joined = self.b.join([("10.0.0.1", 8301)])
        self.advance(0.02)
        self.assertIn("wrong datacenter", str(self.failureResultOf(joined, JoinError).value))
        self.assertIsNone(self.b.node("n1"))

    def test_crashed_peer_is_suspected_then_dead(self) -> None:
        self.b.join([("10.0.0.1", 8301)])
        self.advance(0.02)
        self.net.crash("10.0.0.2", 8301)
        # Two nodes: no confirmations can come (k = 0), so the timer starts
        # at min = 4 s; the first failed probe comes within 1-2 probe intervals.
        self.advance(7.0)
        self.assertEqual(self.a.node("n2").state, NodeState.DEAD)  # type: ignore[union-attr]
        self.assertEqual(self.da.events[-1], ("leave", "n2", NodeState.DEAD))


class ConfigTests(SynchronousTestCase):
    def test_profiles(self) -> None:
        lan, wan, dev = MemberlistConfig.lan(), MemberlistConfig.wan(), MemberlistConfig.dev()
        self.assertEqual(
            (
                lan.probe_interval,
                lan.probe_timeout,
                lan.indirect_checks,
                lan.suspicion_mult,
                lan.suspicion_max_timeout_mult,
                lan.gossip_interval,
                lan.gossip_nodes,
                lan.retransmit_mult,
                lan.push_pull_interval,
                lan.gossip_to_the_dead_time,
                lan.awareness_max_multiplier,
                lan.dead_node_reclaim_time,
                lan.udp_buffer_size,
            ),
            (1.0, 0.5, 3, 4, 6, 0.2, 3, 4, 30.0, 30.0, 8, 0.0, 1400),
        )
        self.assertEqual(
            (
                wan.probe_interval,
                wan.probe_timeout,
                wan.suspicion_mult,
                wan.gossip_interval,
                wan.gossip_nodes,
                wan.push_pull_interval,
                wan.gossip_to_the_dead_time,
            ),
            (5.0, 3.0, 6, 0.5, 4, 60.0, 60.0),
        )
        self.assertEqual(
            (
                dev.gossip_interval,
                dev.probe_interval,
                dev.probe_timeout,
                dev.suspicion_mult,
                dev.retransmit_mult,
            ),
            (0.1, 0.1, 0.1, 3, 4),
        )
        fast = lan.scaled(0.1)
        self.assertEqual((fast.probe_interval, fast.suspicion_mult), (0.1, 4))
