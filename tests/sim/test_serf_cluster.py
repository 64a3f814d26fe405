"""
A 50-node Serf cluster on one simulated clock: the member statuses Consul
users see (``alive``, ``leaving``, ``left``, ``failed``), everywhere.

Nodes run memberlist's LAN timings and Serf's Consul defaults unscaled
(reconnect every 30 s; reconnect timeout and tombstones shortened where a
test needs to see a reap).  Each scenario lets the cluster converge first;
bounds are derived from the config, and the figures measured on these
seeds are in the docstrings.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.suspicion import suspicion_timeout
from consul_tw.gossip.members import MemberStatus
from consul_tw.gossip.serf.config import SerfConfig
from consul_tw.gossip.serf.pool import EventType
from tests.unit.gossip.test_serf import PORT, SerfCluster

N = 50
LAN = MemberlistConfig.lan()
SERF = SerfConfig.lan()
#: A node that missed an alive's gossip learns it at the next push/pull (60 s at this size).
CONVERGE = 70.0


def tags(i: int) -> dict[str, str]:
    return {"role": "node", "dc": "dc1", "id": f"00000000-0000-4000-8000-{i:012d}"}


class SerfClusterTests(SynchronousTestCase):
    def cluster(self, seed: int, config: SerfConfig = SERF) -> SerfCluster:
        c = SerfCluster(seed=seed, config=config, keep_debug=False)
        self.addCleanup(c.stop, self)
        for i in range(N):
            c.add(i, tags=tags(i))
        for i in range(1, N):
            c.clock.callLater(i * 0.01, c.nodes[f"n{i}"].join, [(c.addr(0), PORT)])
        c.run_until(lambda: self.everyone_sees(c, MemberStatus.ALIVE), limit=CONVERGE, step=0.1)
        return c

    def statuses(
        self, c: SerfCluster, about: str, observers: list[str] | None = None
    ) -> set[MemberStatus | None]:
        """What the running nodes other than ``about`` think of it."""
        names = (
            observers
            if observers is not None
            else [
                n for n, serf in c.nodes.items() if n != about and not serf.memberlist.is_shut_down
            ]
        )
        return {c.status(o, about) for o in names}

    def everyone_sees(
        self, c: SerfCluster, status: MemberStatus, names: list[str] | None = None
    ) -> bool:
        names = names if names is not None else list(c.nodes)
        return all(c.status(o, n) == status for o in names for n in names)

    def test_join_converges_alive_with_tags(self) -> None:
        """
        50 nodes join through n0, 10 ms apart: every node lists all 50 alive
        with their own tags 1.8-2.2 s after the first join (seeds 1, 11-13; a
        node that misses an alive's gossip waits for push/pull, 23 s with
        seed 43); bound 70 s.  Nobody failed, and within a push/pull interval
        every join intent's Lamport time has reached everyone.
        """
        c = self.cluster(seed=1)
        for observer in c.nodes.values():
            members = {m.name: m for m in observer.members()}
            self.assertEqual(len(members), N)
            for i in range(N):
                member = members[f"n{i}"]
                self.assertEqual(dict(member.tags), tags(i))
                self.assertEqual((member.delegate_cur, member.protocol_cur), (4, 2))
        # Join intents sent while the cluster was small may miss later joiners;
        # periodic push/pull (every 60 s at this size) carries their times.
        c.run(60.0)
        for observer in c.nodes.values():
            # (n0, the seed, never joined anyone, so it never sent a join intent.)
            self.assertTrue(
                all(m.status_ltime > 0 for m in observer.table.members.values() if m.name != "n0")
            )
            self.assertEqual(observer.stats()["members"], str(N))
        self.assertFalse(
            any(e.type is EventType.MEMBER_FAILED for events in c.events.values() for e in events)
        )

    def test_crashed_member_is_failed_everywhere(self) -> None:
        """
        n17 is killed: every other node lists it ``failed`` 8.6-11.6 s later
        (seeds 2, 21-23; Lifeguard min = 4 × log10(50) × 1 s = 6.8 s, max 6×
        that).  Bound: max suspicion + 5 probe intervals, and not before min.
        """
        c = self.cluster(seed=2)
        c.run(5.0)
        c.net.crash(c.addr(17), PORT)
        took = c.run_until(
            lambda: self.statuses(c, "n17") == {MemberStatus.FAILED}, limit=120.0, step=0.1
        )
        min_timeout = suspicion_timeout(LAN.suspicion_mult, N, LAN.probe_interval)
        self.assertLessEqual(
            took, LAN.suspicion_max_timeout_mult * min_timeout + 5 * LAN.probe_interval
        )
        self.assertGreaterEqual(took, min_timeout)
        for name in c.nodes:
            if name != "n17":
                self.assertEqual(
                    c.event_types(name, "n17"), [EventType.MEMBER_JOIN, EventType.MEMBER_FAILED]
                )

    def test_graceful_leave_is_leaving_then_left_everywhere(self) -> None:
        """
        n23 leaves: the other nodes see it ``leaving`` (the intent, 0.1-0.7 s
        after the leave began), then ``left`` (memberlist's dead-from-self,
        0.5-1.4 s; seeds 3, 31-37), and nobody ever sees it ``failed``.  The
        intent gets a head start but gossip is random: 0-1 of the 49 (polled
        every 20 ms) get the dead message first and go straight to ``left``.
        The leave returns 3.9-4.2 s after it began: its broadcasts, then the
        3 s propagate delay.
        """
        c = self.cluster(seed=3)
        c.run(5.0)
        observers = [n for n in c.nodes if n != "n23"]
        history: dict[str, list[MemberStatus | None]] = {o: [] for o in observers}

        def watch() -> bool:
            for o in observers:
                status = c.status(o, "n23")
                if not history[o] or history[o][-1] != status:
                    history[o].append(status)
            return all(h[-1] == MemberStatus.LEFT for h in history.values())

        left = c.nodes["n23"].leave()
        took = c.run_until(watch, limit=30.0, step=0.02)
        self.assertLess(took, c.config.broadcast_timeout)
        saw_leaving = 0
        for o in observers:
            self.assertIn(
                history[o],
                (
                    [MemberStatus.ALIVE, MemberStatus.LEAVING, MemberStatus.LEFT],
                    [MemberStatus.ALIVE, MemberStatus.LEFT],
                ),
                o,
            )
            saw_leaving += MemberStatus.LEAVING in history[o]
            self.assertNotIn(EventType.MEMBER_FAILED, c.event_types(o, "n23"))
        self.assertGreaterEqual(saw_leaving, len(observers) - 3)
        c.run_until(lambda: left.called, limit=20.0)
        self.assertIsNone(self.successResultOf(left))
        c.nodes["n23"].shutdown()
        c.run(60.0)  # long after: still left, never failed
        self.assertEqual(self.statuses(c, "n23"), {MemberStatus.LEFT})

    def test_restarted_member_comes_back_alive(self) -> None:
        """
        n31 is killed and restarted (same name and address, fresh
        incarnation 1) once everyone holds it ``failed``.  Its join brings
        back everyone's "dead at incarnation k"; it refutes with k + 1, and
        every node lists it ``alive`` again 0.6-0.7 s after the restart
        (seeds 4, 41, 42); bound 10 s.
        """
        c = self.cluster(seed=4)
        c.run(5.0)
        old_incarnation = c.nodes["n0"].memberlist.node("n31").incarnation  # type: ignore[union-attr]
        c.net.crash(c.addr(31), PORT)
        c.run_until(lambda: self.statuses(c, "n31") == {MemberStatus.FAILED}, limit=120.0)
        # Bring the endpoint back (the simulator has no public "restart").
        c.net._endpoint(c.addr(31), PORT).crashed = False
        restarted = c.add(31, tags=tags(31))
        restarted.join([(c.addr(0), PORT)])
        took = c.run_until(
            lambda: self.statuses(c, "n31") == {MemberStatus.ALIVE}, limit=10.0, step=0.1
        )
        self.assertLess(took, 10.0)
        incarnation = c.nodes["n0"].memberlist.node("n31").incarnation  # type: ignore[union-attr]
        self.assertGreater(incarnation, old_incarnation)
        self.assertEqual(len(restarted.members()), N)
        c.run(40.0)
        self.assertTrue(self.everyone_sees(c, MemberStatus.ALIVE))

    def test_partition_heals_through_reconnect(self) -> None:
        """
        Split 25/25 for 120 s, long past memberlist's 30 s of gossip to the
        dead (so only Serf's reconnect can bring the halves back).  Each half
        holds the other ``failed``; after the heal, the first reconnect round
        (every 30 s, probability failed/alive = 1 here) push/pulls across,
        refutations spread, and all 50 are ``alive`` everywhere 0.5-3 s later
        (seeds 5, 51-53: with 25 failed and 25 alive each node tries every
        30 s, so some node tries every 0.6 s on average); bound: two
        reconnect intervals + 20 s.  Each side had marked the other failed
        20-22.5 s into the split.
        """
        c = self.cluster(seed=5)
        c.run(5.0)
        left = [f"n{i}" for i in range(25)]
        right = [f"n{i}" for i in range(25, N)]
        c.net.partition([c.addr(i) for i in range(25)], [c.addr(i) for i in range(25, N)])

        def split() -> bool:
            return all(
                c.status(o, n) == MemberStatus.FAILED
                for side, other in ((left, right), (right, left))
                for o in side
                for n in other
            )

        c.run_until(split, limit=120.0, step=0.5)
        c.run(120.0)
        self.assertTrue(split())
        healed_at = c.clock.seconds()
        c.net.heal()
        healed = c.run_until(
            lambda: self.everyone_sees(c, MemberStatus.ALIVE), limit=100.0, step=0.5
        )
        self.assertLessEqual(healed, 2 * c.config.reconnect_interval + 20.0)
        self.assertTrue(
            any(
                t.startswith("serf: attempting reconnect to") and when >= healed_at
                for when, _, _, t in c.lines
            )
        )

    def test_failed_members_are_reaped_after_reconnect_timeout(self) -> None:
        """
        With reconnect_timeout 10 min and tombstones 5 min: a killed node is
        reaped everywhere 610 s after it failed (seeds 6, 61: the next 15 s
        reap tick past the timeout), a node that left 312 s after it left.
        Bound: the timeout + one reap interval + 15 s of failure detection
        spread.
        """
        config = attrs.evolve(SERF, reconnect_timeout=600.0, tombstone_timeout=300.0)
        c = self.cluster(seed=6, config=config)
        c.nodes["n9"].leave()
        c.run(10.0)
        c.nodes["n9"].shutdown()
        c.net.crash(c.addr(12), PORT)
        c.run_until(lambda: self.statuses(c, "n12") == {MemberStatus.FAILED}, limit=120.0)
        failed_at = min(
            next(
                t
                for t, n, _, text in c.lines
                if n == o and text.startswith("serf: EventMemberFailed: n12 ")
            )
            for o in c.nodes
            if o not in ("n9", "n12")
        )
        gone = c.run_until(lambda: self.statuses(c, "n9") == {None}, limit=600.0, step=1.0)
        self.assertEqual(self.statuses(c, "n12"), {MemberStatus.FAILED})
        self.assertLessEqual(gone, 300.0)
        c.run_until(lambda: self.statuses(c, "n12") == {None}, limit=700.0, step=1.0)
        reaped = [t for t, _, _, text in c.lines if text == "serf: EventMemberReap: n12"]
        self.assertEqual(len(reaped), N - 2)
        self.assertGreaterEqual(min(reaped) - failed_at, 600.0)
        self.assertLessEqual(max(reaped) - failed_at, 600.0 + c.config.reap_interval + 15.0)
