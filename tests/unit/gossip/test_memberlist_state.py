"""The node table: memberlist 0.2.2's alive/suspect/dead rules as pure functions."""

from __future__ import annotations

import random

import attrs
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.messages import (
    CONSUL_VSN,
    Alive,
    Dead,
    NodeState,
    PushNodeState,
    Suspect,
)
from consul_tw.gossip.memberlist.pushpull import verify_protocol
from consul_tw.gossip.memberlist.state import (
    Node,
    NodeTable,
    addr_to_text,
    text_to_addr,
)

A1 = bytes([10, 0, 0, 1])
A2 = bytes([10, 0, 0, 2])
A3 = bytes([10, 0, 0, 3])


def alive(node: str, inc: int, addr: bytes = A2, **kw: object) -> Alive:
    return Alive(incarnation=inc, node=node, addr=addr, port=8301, **kw)  # type: ignore[arg-type]


@attrs.define
class FakeSuspicion:
    confirmed: list[str] = attrs.field(factory=list)
    cancelled: bool = False
    k: int = 2

    def confirm(self, peer: str) -> bool:
        if peer in self.confirmed or len(self.confirmed) >= self.k:
            return False
        self.confirmed.append(peer)
        return True

    def cancel(self) -> None:
        self.cancelled = True


def table() -> NodeTable:
    t = NodeTable("me", random.Random(0))
    t.apply_alive(alive("me", 1, A1), 0.0, bootstrap=True)
    return t


class AliveTests(SynchronousTestCase):
    def test_first_sighting_applies_and_joins(self) -> None:
        t = table()
        out = t.apply_alive(alive("b", 1, meta=b"m"), 5.0)
        self.assertTrue(out.applied)
        self.assertEqual(out.notify, "join")
        self.assertEqual(out.broadcast, alive("b", 1, meta=b"m"))
        rec = t.get("b")
        assert rec is not None
        self.assertEqual(
            (rec.state, rec.incarnation, rec.meta, rec.state_change),
            (NodeState.ALIVE, 1, b"m", 5.0),
        )
        self.assertEqual(len(t), 2)

    def test_only_strictly_greater_incarnation_applies(self) -> None:
        t = table()
        t.apply_alive(alive("b", 3), 0.0)
        self.assertFalse(t.apply_alive(alive("b", 3, meta=b"x"), 1.0).applied)
        self.assertFalse(t.apply_alive(alive("b", 2), 1.0).applied)
        out = t.apply_alive(alive("b", 4, meta=b"x"), 1.0)
        self.assertTrue(out.applied)
        self.assertEqual(out.notify, "update")  # meta changed on an alive node

    def test_alive_clears_suspicion(self) -> None:
        t = table()
        t.apply_alive(alive("b", 1), 0.0)
        self.assertTrue(
            t.apply_suspect(Suspect(incarnation=1, node="b", from_node="c"), 1.0).start_suspicion
        )
        rec = t.get("b")
        assert rec is not None
        rec.suspicion = fake = FakeSuspicion()
        out = t.apply_alive(alive("b", 2), 2.0)
        self.assertTrue(out.applied)
        self.assertTrue(fake.cancelled)
        self.assertIsNone(rec.suspicion)
        self.assertEqual(rec.state, NodeState.ALIVE)
        self.assertIsNone(out.notify)  # suspect -> alive is not a join

    def test_dead_to_alive_is_a_join(self) -> None:
        t = table()
        t.apply_alive(alive("b", 1), 0.0)
        t.apply_dead(Dead(incarnation=1, node="b", from_node="me"), 1.0)
        out = t.apply_alive(alive("b", 2), 2.0)
        self.assertEqual(out.notify, "join")

    def test_bad_protocol_versions_are_ignored(self) -> None:
        t = table()
        for vsn in (
            bytes([0, 5, 2, 2, 5, 4]),
            bytes([1, 0, 2, 2, 5, 4]),
            bytes([3, 2, 2, 2, 5, 4]),
        ):
            out = t.apply_alive(alive("b", 1, vsn=vsn), 0.0)
            self.assertFalse(out.applied)
            self.assertIn("protocol version(s) are wrong", out.logs[0][1])
        out = t.apply_alive(alive("b", 1, vsn=bytes([1, 5, 2])), 0.0)
        self.assertIn("because Vsn is not present", out.logs[0][1])
        self.assertIsNone(t.get("b"))

    def test_veto(self) -> None:
        t = table()
        seen: list[Node] = []

        def veto(node: Node) -> str | None:
            seen.append(node)
            return "wrong datacenter"

        out = t.apply_alive(alive("b", 1), 0.0, veto=veto)
        self.assertFalse(out.applied)
        self.assertEqual(out.logs, (("WARN", "ignoring alive message for 'b': wrong datacenter"),))
        self.assertEqual(seen[0].addr, "10.0.0.2")
        self.assertIsNone(t.get("b"))

    def test_name_conflict(self) -> None:
        t = table()
        t.apply_alive(alive("b", 1, A2), 0.0)
        out = t.apply_alive(alive("b", 5, A3), 100.0)
        self.assertFalse(out.applied)
        assert out.conflict is not None and out.node is not None
        self.assertEqual((out.node.addr, out.conflict.addr), ("10.0.0.2", "10.0.0.3"))
        self.assertEqual(out.logs[0][0], "ERROR")
        self.assertIn(
            "Conflicting address for b. Mine: 10.0.0.2:8301 Theirs: 10.0.0.3:8301", out.logs[0][1]
        )

    def test_left_node_address_may_change(self) -> None:
        t = table()
        t.apply_alive(alive("b", 5, A2), 0.0)
        t.apply_dead(Dead(incarnation=5, node="b", from_node="b"), 1.0)
        out = t.apply_alive(alive("b", 1, A3), 2.0)  # lower incarnation: a fresh process
        self.assertTrue(out.applied)
        self.assertEqual(out.notify, "join")
        rec = t.get("b")
        assert rec is not None
        self.assertEqual((rec.addr, rec.incarnation), (A3, 1))

    def test_dead_node_reclaim_time(self) -> None:
        t = table()
        t.apply_alive(alive("b", 5, A2), 0.0)
        t.apply_dead(Dead(incarnation=5, node="b", from_node="me"), 10.0)
        self.assertIsNotNone(t.apply_alive(alive("b", 6, A3), 20.0, reclaim_time=30.0).conflict)
        self.assertIsNotNone(t.apply_alive(alive("b", 6, A3), 50.0).conflict)  # 0: never
        self.assertTrue(t.apply_alive(alive("b", 1, A3), 41.0, reclaim_time=30.0).applied)

    def test_alive_about_self(self) -> None:
        t = table()
        same = alive("me", 1, A1)
        self.assertEqual(t.apply_alive(same, 1.0).refute, None)
        self.assertFalse(t.apply_alive(same, 1.0).applied)
        out = t.apply_alive(alive("me", 1, A1, meta=b"old tags"), 1.0)
        self.assertEqual(out.refute, 1)
        self.assertEqual(
            out.logs[0][1],
            "Refuting an alive message for 'me' (10.0.0.1:8301) meta:"
            "([111 108 100 32 116 97 103 115] VS []), vsn:([1 5 2 2 5 4] VS [1 5 2 2 5 4])",
        )
        self.assertEqual(t.apply_alive(alive("me", 7, A1), 1.0).refute, 7)
        self.assertFalse(t.apply_alive(alive("me", 0, A1, meta=b"x"), 1.0).applied)

    def test_alive_about_self_ignored_while_leaving(self) -> None:
        t = table()
        out = t.apply_alive(alive("me", 9, A1, meta=b"x"), 1.0, leaving=True)
        self.assertIsNone(out.refute)


class SuspectTests(SynchronousTestCase):
    def test_suspect_alive_node(self) -> None:
        t = table()
        t.apply_alive(alive("b", 3), 0.0)
        self.assertFalse(
            t.apply_suspect(Suspect(incarnation=2, node="b", from_node="c"), 1.0).applied
        )
        self.assertFalse(
            t.apply_suspect(Suspect(incarnation=1, node="zz", from_node="c"), 1.0).applied
        )
        s = Suspect(incarnation=3, node="b", from_node="c")
        out = t.apply_suspect(s, 4.0)
        self.assertTrue(out.start_suspicion)
        self.assertEqual(out.broadcast, s)
        rec = t.get("b")
        assert rec is not None
        self.assertEqual((rec.state, rec.state_change), (NodeState.SUSPECT, 4.0))

    def test_confirmations_regossip_once(self) -> None:
        t = table()
        t.apply_alive(alive("b", 3), 0.0)
        t.apply_suspect(Suspect(incarnation=3, node="b", from_node="c"), 1.0)
        rec = t.get("b")
        assert rec is not None
        rec.suspicion = fake = FakeSuspicion()
        d = Suspect(incarnation=3, node="b", from_node="d")
        self.assertEqual(t.apply_suspect(d, 2.0).broadcast, d)
        self.assertIsNone(t.apply_suspect(d, 2.0).broadcast)
        self.assertEqual(fake.confirmed, ["d"])
        self.assertEqual(rec.state_change, 1.0)

    def test_suspect_ignored_for_dead(self) -> None:
        t = table()
        t.apply_alive(alive("b", 3), 0.0)
        t.apply_dead(Dead(incarnation=3, node="b", from_node="c"), 1.0)
        self.assertEqual(
            t.apply_suspect(Suspect(incarnation=3, node="b", from_node="c"), 2.0),
            t.apply_suspect(Suspect(incarnation=4, node="zz", from_node="c"), 2.0),
        )

    def test_suspect_about_self_is_refuted(self) -> None:
        t = table()
        out = t.apply_suspect(Suspect(incarnation=1, node="me", from_node="c"), 1.0)
        self.assertEqual(out.refute, 1)
        self.assertEqual(out.logs, (("WARN", "Refuting a suspect message (from: c)"),))
        self.assertEqual(t.local.state, NodeState.ALIVE)


class DeadTests(SynchronousTestCase):
    def test_dead_and_left(self) -> None:
        t = table()
        t.apply_alive(alive("b", 3), 0.0)
        t.apply_alive(alive("c", 1, A3), 0.0)
        out = t.apply_dead(Dead(incarnation=3, node="b", from_node="c"), 1.0)
        self.assertEqual((out.notify, out.node and out.node.state), ("leave", NodeState.DEAD))
        out = t.apply_dead(Dead(incarnation=1, node="c", from_node="c"), 1.0)
        self.assertEqual(out.node and out.node.state, NodeState.LEFT)
        # Already dead: ignored, not re-gossiped.
        self.assertFalse(t.apply_dead(Dead(incarnation=9, node="b", from_node="c"), 2.0).applied)

    def test_old_incarnation_ignored(self) -> None:
        t = table()
        t.apply_alive(alive("b", 3), 0.0)
        self.assertFalse(t.apply_dead(Dead(incarnation=2, node="b", from_node="c"), 1.0).applied)

    def test_dead_cancels_suspicion(self) -> None:
        t = table()
        t.apply_alive(alive("b", 3), 0.0)
        t.apply_suspect(Suspect(incarnation=3, node="b", from_node="c"), 1.0)
        rec = t.get("b")
        assert rec is not None
        rec.suspicion = fake = FakeSuspicion()
        self.assertTrue(t.apply_dead(Dead(incarnation=3, node="b", from_node="me"), 2.0).applied)
        self.assertTrue(fake.cancelled)

    def test_dead_about_self(self) -> None:
        t = table()
        out = t.apply_dead(Dead(incarnation=4, node="me", from_node="c"), 1.0)
        self.assertEqual(out.refute, 4)
        self.assertEqual(out.logs, (("WARN", "Refuting a dead message (from: c)"),))
        out = t.apply_dead(Dead(incarnation=1, node="me", from_node="me"), 1.0, leaving=True)
        self.assertEqual(t.local.state, NodeState.LEFT)
        self.assertEqual(out.broadcast, Dead(incarnation=1, node="me", from_node="me"))

    def test_refute_incarnation(self) -> None:
        t = table()
        self.assertEqual(t.refute(0).incarnation, 2)  # own + 1 beats an old accusation
        self.assertEqual(t.refute(9).incarnation, 10)  # accused + 1 beats a newer one
        self.assertEqual(t.local.incarnation, 10)
        self.assertEqual(t.refute(10), alive("me", 11, A1))


class SelectionTests(SynchronousTestCase):
    def test_probe_round_robin_skips_self_dead_and_left(self) -> None:
        t = table()
        for i, name in enumerate("bcde"):
            t.apply_alive(alive(name, 1, bytes([10, 0, 1, i])), 0.0)
        t.apply_dead(Dead(incarnation=1, node="d", from_node="me"), 0.0)
        t.apply_dead(Dead(incarnation=1, node="e", from_node="e"), 0.0)
        seen = []
        for _ in range(20):
            # memberlist gives up on a tick after checking len(nodes) entries,
            # so a tick may find nothing when many entries are skipped.
            rec = t.next_probe_target(1.0, 30.0)
            if rec is not None:
                seen.append(rec.name)
        self.assertEqual(set(seen), {"b", "c"})
        self.assertLessEqual(abs(seen.count("b") - seen.count("c")), 1)

    def test_reap_only_long_dead(self) -> None:
        t = table()
        t.apply_alive(alive("b", 1), 0.0)
        t.apply_alive(alive("c", 1, A3), 0.0)
        t.apply_dead(Dead(incarnation=1, node="b", from_node="me"), 0.0)
        t.apply_dead(Dead(incarnation=1, node="c", from_node="c"), 0.0)
        self.assertEqual(t.reset_nodes(10.0, 30.0), [])
        reaped = t.reset_nodes(31.0, 30.0)
        self.assertEqual([r.name for r in reaped], ["b"])
        self.assertIsNone(t.get("b"))
        self.assertIsNotNone(t.get("c"))  # left nodes stay for good

    def test_no_probe_target_alone(self) -> None:
        self.assertIsNone(table().next_probe_target(0.0, 30.0))

    def test_random_nodes(self) -> None:
        t = table()
        for i in range(10):
            t.apply_alive(alive(f"n{i}", 1, bytes([10, 0, 1, i])), 0.0)
        picked = t.random_nodes(3, lambda r: r.name == "me")
        self.assertEqual(len({r.name for r in picked}), 3)
        self.assertNotIn("me", [r.name for r in picked])
        self.assertEqual(t.random_nodes(3, lambda r: r.name != "n4")[0].name, "n4")
        self.assertEqual(t.random_nodes(3, lambda r: True), [])

    def test_push_states_and_any_alive(self) -> None:
        t = table()
        self.assertFalse(t.any_alive())
        t.apply_alive(alive("b", 2, meta=b"m"), 0.0)
        self.assertTrue(t.any_alive())
        states = {s.name: s for s in t.push_states()}
        self.assertEqual(
            states["b"],
            PushNodeState(
                name="b",
                addr=A2,
                port=8301,
                meta=b"m",
                incarnation=2,
                state=NodeState.ALIVE,
                vsn=CONSUL_VSN,
            ),
        )


class VersionTests(SynchronousTestCase):
    def state(self, name: str, vsn: bytes, state: NodeState = NodeState.ALIVE) -> PushNodeState:
        return PushNodeState(
            name=name, addr=A2, port=1, meta=b"", incarnation=1, state=state, vsn=vsn
        )

    def test_compatible(self) -> None:
        t = table()
        serf = bytes([1, 5, 2, 2, 5, 5])
        self.assertIsNone(verify_protocol((self.state("s", serf),), t.nodes))

    def test_incompatible_protocol(self) -> None:
        t = table()
        error = verify_protocol((self.state("new", bytes([1, 5, 6, 2, 5, 4])),), t.nodes)
        self.assertEqual(error, "Node 'new' protocol version (6) is incompatible: [1, 5]")
        error = verify_protocol((self.state("new", bytes([3, 5, 3, 2, 5, 4])),), t.nodes)
        self.assertEqual(error, "Node 'me' protocol version (2) is incompatible: [3, 5]")

    def test_incompatible_delegate(self) -> None:
        t = table()
        error = verify_protocol((self.state("x", bytes([1, 5, 2, 2, 3, 3])),), t.nodes)
        self.assertEqual(error, "Node 'me' delegate protocol version (4) is incompatible: [2, 3]")

    def test_dead_nodes_do_not_narrow_the_range(self) -> None:
        t = table()
        dead = self.state("old", bytes([1, 5, 2, 2, 3, 4]), NodeState.DEAD)
        self.assertIsNone(verify_protocol((dead,), t.nodes))


class AddressTests(SynchronousTestCase):
    def test_text(self) -> None:
        self.assertEqual(addr_to_text(A1), "10.0.0.1")
        self.assertEqual(addr_to_text(b"\x00" * 10 + b"\xff\xff" + A1), "10.0.0.1")
        self.assertEqual(text_to_addr("10.0.0.1"), A1)
        self.assertEqual(addr_to_text(text_to_addr("::1")), "::1")

    def test_ipv4_mapped_is_the_same_address(self) -> None:
        t = table()
        t.apply_alive(alive("b", 1, A2), 0.0)
        out = t.apply_alive(alive("b", 2, b"\x00" * 10 + b"\xff\xff" + A2), 1.0)
        self.assertTrue(out.applied)
        self.assertIsNone(out.conflict)
