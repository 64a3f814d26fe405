"""
The Serf layer driven on an in-memory network: a few nodes on one
:class:`~consul_tw.testing.network.SimClock`, memberlist's LAN timings.

Each test builds its nodes through :class:`SerfCluster`, which records
every log line and every event delivered to subscribers, and whose
clean-up shuts every node down, lets in-flight traffic drain and asserts
that no timer is left on the clock.
"""

from __future__ import annotations

import base64
import random
import socket
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.keyring import Keyring
from consul_tw.gossip.memberlist.messages import Alive, Dead, User
from consul_tw.gossip.memberlist.pushpull import JoinError
from consul_tw.gossip.members import Member, MemberStatus
from consul_tw.gossip.serf.codec import (
    decode_conflict_response,
    decode_key_response,
    decode_serf,
    encode_key_request,
    encode_serf,
    encode_tags,
)
from consul_tw.gossip.serf.config import SerfConfig
from consul_tw.gossip.serf.events import UserEventReceived
from consul_tw.gossip.serf.messages import (
    JoinIntent,
    LeaveIntent,
    PushPullState,
    UserEvent,
)
from consul_tw.gossip.serf.pool import EventType, MemberEvent, Membership
from consul_tw.gossip.serf.queries import QueryError, QueryParams, QueryReceived
from consul_tw.gossip.serf.serf import Serf, SerfError, SerfShutdown
from consul_tw.testing.network import SimClock, SimNetwork

PORT = 8301
KEY = base64.b64decode("MFGEKa64Dz/VEzW1NgiE4Kw69YFOn98xAr9JcWGuXXs=")
OTHER_KEY = base64.b64decode("5K9OtfP7efFrNKe5WCQvXvnaXJ5cWP0SvXiwe0kkjM4=")


@attrs.define
class ListLogger:
    """HcLogger's methods, keeping (time, node, level, text) lines."""

    name: str
    lines: list[tuple[float, str, str, str]]
    clock: Clock
    keep_debug: bool = True

    def _add(self, level: str, text: str) -> None:
        self.lines.append((self.clock.seconds(), self.name, level, text))

    def trace(self, text: str, **kw: object) -> None:
        pass

    def debug(self, text: str, **kw: object) -> None:
        if self.keep_debug:
            self._add("DEBUG", text)

    def info(self, text: str, **kw: object) -> None:
        self._add("INFO", text)

    def warn(self, text: str, **kw: object) -> None:
        self._add("WARN", text)

    def error(self, text: str, **kw: object) -> None:
        self._add("ERROR", text)


@attrs.define(eq=False)
class SerfCluster:
    """Serf nodes named n0, n1, ... at 10.0.x.y:8301 on one simulated network."""

    seed: int = 0
    config: SerfConfig = SerfConfig.lan()
    ml_config: MemberlistConfig = MemberlistConfig.lan()
    clock: SimClock = attrs.field(factory=SimClock)
    net: SimNetwork = attrs.field(init=False)
    nodes: dict[str, Serf] = attrs.field(factory=dict)
    lines: list[tuple[float, str, str, str]] = attrs.field(factory=list)
    events: dict[str, list[MemberEvent]] = attrs.field(factory=dict)
    user_events: dict[str, list[UserEventReceived]] = attrs.field(factory=dict)
    keep_debug: bool = True

    def __attrs_post_init__(self) -> None:
        self.net = SimNetwork(
            self.clock, random.Random(self.seed), tcp_timeout=self.ml_config.tcp_timeout
        )

    @staticmethod
    def addr(i: int) -> str:
        return f"10.0.{i // 200}.{i % 200 + 1}"

    def add(
        self,
        i: int,
        *,
        tags: Mapping[str, str] | None = None,
        start: bool = True,
        name: str | None = None,
        **kwargs: Any,
    ) -> Serf:
        name = name or f"n{i}"
        addr = self.addr(i)
        net = self.net
        serf = Serf(
            self.config,
            self.ml_config,
            name,
            addr,
            PORT,
            tags if tags is not None else {"role": "node", "dc": "dc1"},
            net.clock_for(addr, PORT),
            random.Random(self.seed * 7919 + i),
            net.transport_for(addr, PORT),
            ListLogger(name, self.lines, self.clock, self.keep_debug),  # type: ignore[arg-type]
            **kwargs,
        )
        net.attach(addr, PORT, serf)
        self.nodes[name] = serf
        self.events[name] = []
        self.user_events[name] = []
        serf.subscribe(self.events[name].append)
        serf.subscribe_user_events(self.user_events[name].append)
        if start:
            serf.start()
        return serf

    def start(self, n: int, spacing: float = 0.0, settle: float = 2.0, **kwargs: Any) -> list[Serf]:
        """n nodes; each joins through n0, ``spacing`` seconds apart."""
        nodes = [self.add(i, **kwargs) for i in range(n)]
        for i, serf in enumerate(nodes[1:], start=1):
            if spacing:
                self.clock.callLater(i * spacing, serf.join, [(self.addr(0), PORT)])
            else:
                serf.join([(self.addr(0), PORT)])
        self.run(settle)
        return nodes

    def run(self, seconds: float) -> None:
        self.clock.run_until(self.clock.seconds() + seconds, step=0.05)

    def run_until(self, done: Callable[[], bool], limit: float, step: float = 0.05) -> float:
        start = self.clock.seconds()
        while not done():
            if self.clock.seconds() - start > limit:
                raise AssertionError(f"not done after {limit} simulated seconds")
            self.clock.advance(step)
        return self.clock.seconds() - start

    def status(self, observer: str, name: str) -> MemberStatus | None:
        member = self.nodes[observer].member(name)
        return None if member is None else member.status

    def logged(self, node: str, text: str) -> bool:
        return any(n == node and t == text for _, n, _, t in self.lines)

    def event_types(self, node: str, about: str) -> list[EventType]:
        return [e.type for e in self.events[node] if e.members[0].name == about]

    def stop(self, test: SynchronousTestCase) -> None:
        for serf in self.nodes.values():
            serf.shutdown()
        self.net.drain()
        test.assertEqual(self.clock.getDelayedCalls(), [])


def stats_keys() -> set[str]:
    placeholder = Membership(
        local=Member(name="x", addr="127.0.0.1", port=PORT),
        clock=Clock(),
        logger=ListLogger("x", [], Clock()),  # type: ignore[arg-type]
    )
    return set(placeholder.stats())


class SerfTestCase(SynchronousTestCase):
    def cluster(self, **kwargs: Any) -> SerfCluster:
        c = SerfCluster(**kwargs)
        self.addCleanup(c.stop, self)
        return c


class LifecycleTests(SerfTestCase):
    def test_local_member_is_announced_on_start(self) -> None:
        c = self.cluster()
        n0 = c.add(0, start=False)
        self.assertEqual(c.events["n0"], [])  # held until start, like Membership
        n0.start()
        self.assertEqual(c.event_types("n0", "n0"), [EventType.MEMBER_JOIN])
        self.assertTrue(c.logged("n0", "serf: EventMemberJoin: n0 10.0.0.1"))
        me = n0.local_member()
        self.assertEqual(
            (me.status, dict(me.tags), me.addr, me.port),
            (MemberStatus.ALIVE, {"role": "node", "dc": "dc1"}, "10.0.0.1", PORT),
        )
        versions = (
            me.protocol_min,
            me.protocol_max,
            me.protocol_cur,
            me.delegate_min,
            me.delegate_max,
            me.delegate_cur,
        )
        self.assertEqual(versions, (1, 5, 2, 2, 5, 4))
        self.assertEqual(n0.memberlist.local_node().vsn, bytes([1, 5, 2, 2, 5, 4]))
        self.assertEqual(set(n0.stats()), stats_keys())
        self.assertEqual(n0.stats()["members"], "1")
        self.assertEqual(n0.stats()["encrypted"], "false")

    def test_join_lists_everyone_alive_with_tags(self) -> None:
        c = self.cluster()
        n0 = c.add(0, tags={"role": "web"})
        n1 = c.add(1, tags={"role": "db"})
        joined = n1.join([(c.addr(0), PORT)])
        c.run(1.0)
        self.assertEqual(self.successResultOf(joined), 1)
        for serf in (n0, n1):
            self.assertEqual(
                {m.name: (m.status, dict(m.tags)) for m in serf.members()},
                {
                    "n0": (MemberStatus.ALIVE, {"role": "web"}),
                    "n1": (MemberStatus.ALIVE, {"role": "db"}),
                },
            )
        # n1's join intent reached n0 and set its status time.
        self.assertGreater(n0.table.get("n1").status_ltime, 0)  # type: ignore[union-attr]
        self.assertEqual(c.event_types("n0", "n1"), [EventType.MEMBER_JOIN])
        self.assertTrue(c.logged("n0", "serf: EventMemberJoin: n1 10.0.0.2"))

    def test_join_nobody_fails(self) -> None:
        c = self.cluster()
        n0 = c.add(0)
        joined = n0.join([("10.9.9.9", PORT)])
        c.run(11.0)
        self.failureResultOf(joined, JoinError)
        self.assertEqual(n0.table.get("n0").status_ltime, 0)  # type: ignore[union-attr]

    def test_shutdown_stops_every_timer_even_mid_leave_and_mid_query(self) -> None:
        c = self.cluster()
        n0, _ = c.start(2)
        pending = n0.query("q", b"", QueryParams(timeout=30.0))
        leaving = n0.leave()
        c.clock.advance(0.01)
        n0.shutdown()
        self.assertIsNone(self.successResultOf(leaving))
        self.assertIs(self.successResultOf(pending.finished), pending)
        self.assertEqual(n0.memberlist.clock.getDelayedCalls(), [])  # type: ignore[attr-defined]
        self.failureResultOf(n0.leave(), SerfShutdown)
        self.failureResultOf(n0.join([(c.addr(1), PORT)]), SerfError)


class LeaveAndFailureTests(SerfTestCase):
    def test_graceful_leave_is_leaving_then_left_never_failed(self) -> None:
        c = self.cluster()
        c.start(3)
        seen: dict[str, list[MemberStatus]] = {"n0": [], "n1": []}

        def watch() -> bool:
            for observer, history in seen.items():
                status = c.status(observer, "n2")
                if status is not None and (not history or history[-1] != status):
                    history.append(status)
            return all(h[-1:] == [MemberStatus.LEFT] for h in seen.values())

        started = c.clock.seconds()
        left = c.nodes["n2"].leave()
        self.assertEqual(c.status("n2", "n2"), MemberStatus.LEAVING)
        c.run_until(watch, limit=10.0, step=0.01)
        for history in seen.values():
            self.assertEqual(history, [MemberStatus.ALIVE, MemberStatus.LEAVING, MemberStatus.LEFT])
        self.assertNoResult(left)  # keeps answering probes for the propagate delay
        everyone_knew = c.clock.seconds()
        c.run_until(lambda: left.called, limit=10.0)
        self.assertIsNone(self.successResultOf(left))
        self.assertGreaterEqual(c.clock.seconds() - everyone_knew, c.config.leave_propagate_delay)
        self.assertLess(
            c.clock.seconds() - started,
            2 * c.config.broadcast_timeout + c.config.leave_propagate_delay,
        )
        self.assertEqual(c.status("n2", "n2"), MemberStatus.LEFT)
        self.assertEqual(c.event_types("n2", "n2"), [EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE])
        self.assertTrue(c.logged("n2", "serf: EventMemberLeave: n2 10.0.0.3"))
        self.assertTrue(c.logged("n0", "serf: EventMemberLeave: n2 10.0.0.3"))
        self.assertNotIn(EventType.MEMBER_FAILED, c.event_types("n0", "n2"))
        self.assertEqual(c.nodes["n0"].stats()["left"], "1")
        self.assertIsNone(self.successResultOf(c.nodes["n2"].leave()))  # already left

    def test_dead_from_itself_before_the_intent_is_left_not_failed(self) -> None:
        """Gossip may deliver memberlist's "dead from itself" first: that is a leave."""
        c = self.cluster()
        c.start(2)
        n0 = c.nodes["n0"]
        incarnation = n0.memberlist.node("n1").incarnation  # type: ignore[union-attr]
        n0.packet_received(
            c.addr(1), PORT, [Dead(incarnation=incarnation, node="n1", from_node="n1")]
        )
        self.assertEqual(c.status("n0", "n1"), MemberStatus.LEFT)
        self.assertEqual(c.event_types("n0", "n1"), [EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE])
        # The intent arriving afterwards is news to pass on, and changes nothing.
        ltime = n0.member_clock.time()
        self.assertTrue(n0.table.leave_intent(LeaveIntent(ltime=ltime, node="n1")))
        self.assertEqual(c.status("n0", "n1"), MemberStatus.LEFT)
        self.assertEqual(len(c.event_types("n0", "n1")), 2)

    def test_leave_alone_does_not_wait(self) -> None:
        c = self.cluster()
        n0 = c.add(0)
        left = n0.leave()
        c.clock.advance(0)
        self.assertIsNone(self.successResultOf(left))
        self.assertEqual(n0.local_member().status, MemberStatus.LEFT)
        self.assertEqual(c.event_types("n0", "n0"), [EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE])

    def test_crashed_member_is_failed(self) -> None:
        c = self.cluster()
        c.start(3)
        c.net.crash(c.addr(2), PORT)
        took = c.run_until(
            lambda: all(c.status(o, "n2") == MemberStatus.FAILED for o in ("n0", "n1")), limit=30.0
        )
        self.assertLess(took, 15.0)
        self.assertEqual(
            c.event_types("n0", "n2"), [EventType.MEMBER_JOIN, EventType.MEMBER_FAILED]
        )
        self.assertTrue(c.logged("n0", "serf: EventMemberFailed: n2 10.0.0.3"))
        self.assertEqual(c.nodes["n0"].stats()["failed"], "1")

    def test_force_leave_makes_a_failed_member_left(self) -> None:
        c = self.cluster()
        c.start(3)
        c.net.crash(c.addr(2), PORT)
        c.run_until(lambda: c.status("n1", "n2") == MemberStatus.FAILED, limit=30.0)
        forced = c.nodes["n0"].force_leave("n2")
        self.assertEqual(c.status("n0", "n2"), MemberStatus.LEFT)
        c.run(2.0)
        self.assertIsNone(self.successResultOf(forced))
        self.assertEqual(c.status("n1", "n2"), MemberStatus.LEFT)
        self.assertTrue(c.logged("n1", "serf: EventMemberLeave (forced): n2 10.0.0.3"))
        self.assertEqual(c.event_types("n1", "n2")[-1], EventType.MEMBER_LEAVE)
        # Later reconnect rounds leave it alone: it is no longer failed.
        self.assertEqual(c.nodes["n0"].table.failed, [])

    def test_force_leave_prune_erases_the_member(self) -> None:
        c = self.cluster()
        c.start(3)
        c.net.crash(c.addr(2), PORT)
        c.run_until(lambda: c.status("n1", "n2") == MemberStatus.FAILED, limit=30.0)
        c.nodes["n0"].force_leave("n2", prune=True)
        c.run(2.0)
        for observer in ("n0", "n1"):
            self.assertIsNone(c.status(observer, "n2"))
            self.assertEqual(
                c.event_types(observer, "n2")[-2:], [EventType.MEMBER_LEAVE, EventType.MEMBER_REAP]
            )
        self.assertTrue(c.logged("n1", "serf: EventMemberReap (forced): n2 10.0.0.3"))

    def test_force_leave_of_an_alive_member_is_refuted(self) -> None:
        c = self.cluster()
        c.start(3)
        c.nodes["n0"].force_leave("n1")
        self.assertEqual(c.status("n0", "n1"), MemberStatus.LEAVING)
        c.run(3.0)
        for observer in ("n0", "n1", "n2"):
            self.assertEqual(c.status(observer, "n1"), MemberStatus.ALIVE)
        self.assertTrue(c.logged("n1", "serf: Refuting an older leave intent"))

    def test_reconnect_heals_a_partition(self) -> None:
        """Long after memberlist stopped gossiping to the dead, Serf's reconnect heals."""
        c = self.cluster()
        c.start(3)
        c.net.partition([c.addr(0), c.addr(1)], [c.addr(2)])
        c.run_until(
            lambda: c.status("n0", "n2") == c.status("n2", "n0") == MemberStatus.FAILED,
            limit=60.0,
        )
        c.run(c.ml_config.gossip_to_the_dead_time + 5.0)
        self.assertIsNone(c.nodes["n0"].memberlist.node("n2"))  # memberlist forgot it
        healed_at = c.clock.seconds()
        c.net.heal()
        c.run_until(
            lambda: all(c.status(o, n) == MemberStatus.ALIVE for o in c.nodes for n in c.nodes),
            limit=2 * c.config.reconnect_interval + 10.0,
        )
        self.assertTrue(
            any(
                t.startswith("serf: attempting reconnect to ") and when >= healed_at
                for when, _, _, t in c.lines
            )
        )

    def test_failed_and_left_members_are_reaped(self) -> None:
        cfg = SerfConfig(reconnect_timeout=60.0, tombstone_timeout=120.0, reap_interval=5.0)
        c = self.cluster(config=cfg)
        c.start(4)
        c.nodes["n3"].leave()
        c.run(5.0)
        c.nodes["n3"].shutdown()
        c.net.crash(c.addr(2), PORT)
        c.run_until(lambda: c.status("n0", "n2") == MemberStatus.FAILED, limit=30.0)
        failed_at = c.clock.seconds()
        c.run_until(lambda: c.status("n0", "n2") is None, limit=80.0)
        self.assertGreaterEqual(c.clock.seconds() - failed_at, 60.0)
        self.assertEqual(c.status("n0", "n3"), MemberStatus.LEFT)  # tombstone still kept
        c.run_until(lambda: c.status("n0", "n3") is None, limit=130.0)
        self.assertEqual(c.event_types("n0", "n2")[-1], EventType.MEMBER_REAP)
        self.assertEqual(c.event_types("n0", "n3")[-1], EventType.MEMBER_REAP)
        self.assertTrue(c.logged("n0", "serf: EventMemberReap: n2"))
        self.assertEqual(c.nodes["n0"].stats()["members"], "2")

    def test_tombstone_ignores_a_stale_alive_and_join_intent(self) -> None:
        c = self.cluster()
        c.start(3)
        n2 = c.nodes["n2"]
        incarnation = n2.memberlist.local_node().incarnation
        old_ltime = c.nodes["n0"].table.get("n2").status_ltime  # type: ignore[union-attr]
        n2.leave()
        c.run(10.0)
        n2.shutdown()
        stale = Alive(
            incarnation=incarnation,
            node="n2",
            addr=socket.inet_aton(c.addr(2)),
            port=PORT,
            meta=encode_tags({"role": "node", "dc": "dc1"}),
        )
        n0 = c.nodes["n0"]
        n0.packet_received(c.addr(1), PORT, [stale])
        n0.notify_user(encode_serf(JoinIntent(ltime=old_ltime, node="n2")))
        c.run(2.0)
        self.assertEqual(c.status("n0", "n2"), MemberStatus.LEFT)
        self.assertEqual(c.status("n1", "n2"), MemberStatus.LEFT)


class IntentTests(SerfTestCase):
    def test_intents_are_deduplicated(self) -> None:
        c = self.cluster()
        n0 = c.add(0)
        c.add(1)
        c.nodes["n1"].join([(c.addr(0), PORT)])
        c.run(5.0)
        self.assertEqual(len(n0.broadcasts), 0)
        ltime = n0.member_clock.time() + 5
        leave = encode_serf(LeaveIntent(ltime=ltime, node="n1"))
        n0.notify_user(leave)
        n0.notify_user(leave)
        self.assertEqual(n0.broadcasts.pending(), [leave])
        self.assertEqual(c.status("n0", "n1"), MemberStatus.LEAVING)
        self.assertGreater(n0.member_clock.time(), ltime)
        # A newer join intent brings it back; an older one is ignored.
        n0.notify_user(encode_serf(JoinIntent(ltime=ltime - 1, node="n1")))
        self.assertEqual(c.status("n0", "n1"), MemberStatus.LEAVING)
        n0.notify_user(encode_serf(JoinIntent(ltime=ltime + 1, node="n1")))
        self.assertEqual(c.status("n0", "n1"), MemberStatus.ALIVE)
        self.assertEqual(len(n0.broadcasts), 2)

    def test_intents_for_unknown_names_are_buffered(self) -> None:
        c = self.cluster()
        n0 = c.add(0)
        n0.notify_user(encode_serf(LeaveIntent(ltime=7, node="n1")))
        n0.notify_user(encode_serf(LeaveIntent(ltime=7, node="n1")))  # old news: no re-gossip
        self.assertEqual(len(n0.broadcasts), 1)
        n1 = c.add(1)
        n1.memberlist.shutdown()  # it only needs to be heard of, not to answer
        n0.memberlist.apply_alive(
            Alive(
                incarnation=1,
                node="n1",
                addr=socket.inet_aton(c.addr(1)),
                port=PORT,
                meta=encode_tags({}),
            )
        )
        self.assertEqual(c.status("n0", "n1"), MemberStatus.LEAVING)
        # Buffered intents expire after five minutes (checked by the reaper).
        n0.notify_user(encode_serf(JoinIntent(ltime=3, node="ghost")))
        self.assertIn("ghost", n0.table.recent_intents)
        c.clock.advance(c.config.recent_intent_timeout + c.config.reap_interval + 1)
        self.assertNotIn("ghost", n0.table.recent_intents)

    def test_old_leave_intent_about_ourselves_is_refuted(self) -> None:
        c = self.cluster()
        n0 = c.add(0)
        n0.notify_user(encode_serf(LeaveIntent(ltime=10, node="n0")))
        self.assertEqual(n0.local_member().status, MemberStatus.ALIVE)
        (join,) = [decode_serf(m) for m in n0.broadcasts.pending()]  # type: ignore[arg-type]
        self.assertEqual(join, JoinIntent(ltime=11, node="n0"))
        self.assertEqual(n0.table.get("n0").status_ltime, 11)  # type: ignore[union-attr]

    def test_push_pull_state_is_produced_and_merged(self) -> None:
        c = self.cluster()
        c.start(3)
        n0 = c.nodes["n0"]
        n0.user_event("deploy", b"v1")
        state = decode_serf(n0.local_state(join=False))
        assert isinstance(state, PushPullState)
        self.assertEqual(state.ltime, n0.member_clock.time())
        self.assertEqual(state.event_ltime, n0.event_clock.time())
        self.assertEqual(state.query_ltime, n0.query_clock.time())
        self.assertEqual(set(state.status_ltimes), {"n0", "n1", "n2"})
        self.assertEqual(len(state.events), 512)
        self.assertEqual([s.ltime for s in state.events if s is not None], [1])
        remote = PushPullState(
            ltime=100,
            status_ltimes={"n1": 50, "n2": 2},
            left_members=("n1",),
            event_ltime=200,
            query_ltime=300,
        )
        n0.merge_remote_state(encode_serf(remote), join=False)
        self.assertEqual(
            (n0.member_clock.time(), n0.event_clock.time(), n0.query_clock.time()), (100, 200, 300)
        )
        self.assertEqual(c.status("n0", "n1"), MemberStatus.LEAVING)  # leave at 51
        self.assertEqual(n0.table.get("n1").status_ltime, 51)  # type: ignore[union-attr]


class TagsAndEventTests(SerfTestCase):
    def test_tag_update_reaches_everyone(self) -> None:
        c = self.cluster()
        c.start(3)
        updated = c.nodes["n0"].set_tags({"role": "node", "dc": "dc1", "extra": "1"})
        c.run(2.0)
        self.assertIsNone(self.successResultOf(updated))
        for observer in ("n0", "n1", "n2"):
            member = c.nodes[observer].member("n0")
            assert member is not None
            self.assertEqual(member.tags["extra"], "1")
            self.assertEqual(c.event_types(observer, "n0")[-1], EventType.MEMBER_UPDATE)
        self.assertTrue(c.logged("n1", "serf: EventMemberUpdate: n0"))
        self.failureResultOf(c.nodes["n0"].set_tags({"big": "x" * 600}), ValueError)
        self.assertEqual(c.nodes["n0"].tags["extra"], "1")

    def test_user_event_is_delivered_once_everywhere(self) -> None:
        c = self.cluster()
        c.start(3)
        c.net.duplicate = 0.5
        c.nodes["n1"].user_event("deploy", b"v1", coalesce=False)
        c.run(3.0)
        for name in ("n0", "n1", "n2"):
            self.assertEqual(
                [(e.name, e.payload, e.coalesce) for e in c.user_events[name]],
                [("deploy", b"v1", False)],
            )
        # The same event again (a rebroadcast) is not delivered again.
        again = UserEvent(ltime=c.user_events["n0"][0].ltime, name="deploy", payload=b"v1")
        c.nodes["n0"].notify_user(encode_serf(again))
        self.assertEqual(len(c.user_events["n0"]), 1)
        with self.assertRaises(SerfError):
            c.nodes["n0"].user_event("big", b"x" * 600)

    def test_join_with_ignore_old_skips_past_events(self) -> None:
        c = self.cluster()
        c.start(2)
        c.nodes["n0"].user_event("old", b"")
        c.run(2.0)
        n2, n3 = c.add(2), c.add(3)
        n2.join([(c.addr(0), PORT)])
        n3.join([(c.addr(0), PORT)], ignore_old=True)
        c.run(2.0)
        self.assertEqual([e.name for e in c.user_events["n2"]], ["old"])
        self.assertEqual(c.user_events["n3"], [])
        c.nodes["n1"].user_event("new", b"")
        c.run(2.0)
        self.assertEqual([e.name for e in c.user_events["n3"]], ["new"])


class QueryTests(SerfTestCase):
    def answering(self, c: SerfCluster, name: str, answer: bytes) -> list[QueryReceived]:
        got: list[QueryReceived] = []

        def respond(q: QueryReceived) -> None:
            got.append(q)
            q.respond(answer)

        c.nodes[name].subscribe_queries(respond)
        return got

    def test_query_gets_acks_and_responses(self) -> None:
        c = self.cluster()
        c.start(3)
        got = {name: self.answering(c, name, name.encode()) for name in c.nodes}
        pending = c.nodes["n0"].query("myq", b"ask", QueryParams(request_ack=True))
        c.run(1.0)
        self.assertEqual(sorted(pending.acks), ["n0", "n1", "n2"])
        self.assertEqual(pending.responses, {"n0": b"n0", "n1": b"n1", "n2": b"n2"})
        self.assertEqual([len(q) for q in got.values()], [1, 1, 1])
        self.assertEqual((got["n1"][0].payload, got["n1"][0].source_node), (b"ask", "n0"))
        with self.assertRaises(QueryError):
            got["n1"][0].respond(b"twice")
        self.assertNoResult(pending.finished)
        c.run_until(lambda: pending.closed, limit=10.0)
        self.assertIs(self.successResultOf(pending.finished), pending)

    def test_filters_choose_who_answers(self) -> None:
        c = self.cluster()
        c.add(0, tags={"role": "web"})
        c.add(1, tags={"role": "db"})
        c.add(2, tags={"role": "web-2"})
        for i in (1, 2):
            c.nodes[f"n{i}"].join([(c.addr(0), PORT)])
        c.run(2.0)
        by_node = c.nodes["n0"].query(
            "q", b"", QueryParams(request_ack=True, filter_nodes=("n1", "n2"))
        )
        by_tag = c.nodes["n1"].query(
            "q", b"", QueryParams(request_ack=True, filter_tags={"role": "^web"})
        )
        c.run(1.0)
        self.assertEqual(sorted(by_node.acks), ["n1", "n2"])
        self.assertEqual(sorted(by_tag.acks), ["n0", "n2"])

    def test_serf_ping_is_acked_only_and_not_shown(self) -> None:
        c = self.cluster()
        c.start(3)
        got = self.answering(c, "n1", b"no")
        pending = c.nodes["n0"].query("_serf_ping", b"", QueryParams(request_ack=True))
        c.run(1.0)
        self.assertEqual(sorted(pending.acks), ["n0", "n1", "n2"])
        self.assertEqual(pending.responses, {})
        self.assertEqual(got, [])

    def test_query_dedupe_and_relay(self) -> None:
        c = self.cluster()
        c.start(4)
        c.net.duplicate = 1.0
        answered = self.answering(c, "n3", b"yes")
        pending = c.nodes["n0"].query(
            "q", b"", QueryParams(request_ack=True, relay_factor=2, filter_nodes=("n3",))
        )
        c.run(1.0)
        self.assertEqual(len(answered), 1)
        self.assertEqual((pending.acks, pending.responses), (["n3"], {"n3": b"yes"}))
        self.assertTrue(any("Relaying response" in t for _, _, _, t in c.lines))

    def test_conflict_query_answers_our_view(self) -> None:
        c = self.cluster()
        c.start(3)
        about_n2 = c.nodes["n0"].query("_serf_conflict", b"n2")
        c.run(1.0)
        self.assertNotIn("n2", about_n2.responses)  # the disputed node stays quiet
        view = decode_conflict_response(about_n2.responses["n1"])
        assert view is not None
        self.assertEqual(
            (view.name, view.addr, view.port, view.status, view.delegate_cur),
            ("n2", socket.inet_aton(c.addr(2)), PORT, 1, 4),
        )


class KeyQueryTests(SerfTestCase):
    def ask(self, c: SerfCluster, name: str, payload: bytes = b"") -> dict[str, Any]:
        pending = c.nodes["n0"].query(name, payload, QueryParams(request_ack=True))
        c.run(1.0)
        return {node: decode_key_response(p) for node, p in pending.responses.items()}

    def test_key_rotation_queries(self) -> None:
        c = self.cluster()
        rings = {}
        for i in range(2):
            rings[f"n{i}"] = Keyring([KEY])
            c.add(i, keyring=rings[f"n{i}"])
        c.nodes["n1"].join([(c.addr(0), PORT)])
        c.run(2.0)
        self.assertEqual(c.nodes["n0"].stats()["encrypted"], "true")
        answers = self.ask(c, "_serf_install-key", encode_key_request(OTHER_KEY))
        self.assertEqual({n: a.result for n, a in answers.items()}, {"n0": True, "n1": True})
        answers = self.ask(c, "_serf_use-key", encode_key_request(OTHER_KEY))
        self.assertTrue(all(a.result for a in answers.values()))
        self.assertEqual(rings["n1"].primary, OTHER_KEY)
        answers = self.ask(c, "_serf_remove-key", encode_key_request(OTHER_KEY))
        self.assertEqual(
            {a.message for a in answers.values()}, {"Removing the primary key is not allowed"}
        )
        answers = self.ask(c, "_serf_remove-key", encode_key_request(KEY))
        self.assertTrue(all(a.result for a in answers.values()))
        listed = self.ask(c, "_serf_list-keys")
        other = base64.b64encode(OTHER_KEY).decode()
        self.assertEqual(
            {(a.result, a.keys, a.primary_key) for a in listed.values()}, {(True, (other,), other)}
        )
        answers = self.ask(c, "_serf_use-key", encode_key_request(KEY))
        self.assertEqual(
            {a.message for a in answers.values()}, {"Requested key is not in the keyring"}
        )

    def test_without_a_keyring_key_queries_are_answered_false(self) -> None:
        c = self.cluster()
        c.start(2)
        answers = self.ask(c, "_serf_install-key", encode_key_request(KEY))
        self.assertEqual(
            {(a.result, a.message) for a in answers.values()},
            {(False, "No keyring to modify (encryption not enabled)")},
        )
        self.assertEqual(len(answers), 2)
        listed = self.ask(c, "_serf_list-keys")
        self.assertEqual(
            {(a.result, a.message) for a in listed.values()},
            {(False, "Keyring is empty (encryption not enabled)")},
        )


class MergeCheckTests(SerfTestCase):
    def test_merge_check_vetoes_joins_and_alives(self) -> None:
        """Both sides check (as Consul agents do): each refuses the other's datacenter."""

        def in_dc(dc: str) -> Callable[[list[Member]], str | None]:
            def check(members: list[Member]) -> str | None:
                for m in members:
                    if m.tags.get("dc") != dc:
                        return f"Member '{m.name}' part of wrong datacenter '{m.tags.get('dc')}'"
                return None

            return check

        c = self.cluster()
        n0 = c.add(0, merge_check=in_dc("dc1"))
        n1 = c.add(1, tags={"role": "node", "dc": "dc2"}, merge_check=in_dc("dc2"))
        joined = n1.join([(c.addr(0), PORT)])
        c.run(1.0)
        failure = self.failureResultOf(joined, JoinError)
        self.assertIn("Member 'n0' part of wrong datacenter 'dc1'", str(failure.value))
        self.assertIsNone(n0.member("n1"))
        self.assertIsNone(n1.member("n0"))
        self.assertTrue(
            any(
                "Member 'n1' part of wrong datacenter 'dc2'" in t
                for _, n, _, t in c.lines
                if n == "n0"
            )
        )
        # A gossiped alive from the wrong datacenter is dropped too.
        n0.packet_received(
            c.addr(1),
            PORT,
            [
                Alive(
                    incarnation=5,
                    node="n1",
                    addr=socket.inet_aton(c.addr(1)),
                    port=PORT,
                    meta=encode_tags({"dc": "dc2"}),
                )
            ],
        )
        self.assertIsNone(n0.member("n1"))
        self.assertTrue(any("wrong datacenter" in t for _, n, _, t in c.lines if n == "n0"))

    def test_user_messages_that_are_junk_are_dropped(self) -> None:
        c = self.cluster()
        n0 = c.add(0)
        n0.packet_received(c.addr(1), PORT, [User(payload=b"\x03\xc1")])
        n0.notify_user(b"\x2a")
        self.assertEqual(len(n0.broadcasts), 0)
        self.assertEqual(sum(1 for _, n, lvl, _ in c.lines if lvl == "WARN" and n == "n0"), 2)
