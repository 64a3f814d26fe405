"""
consul-tw's Serf layer in one pool with real ``serf agent`` processes
(Debian's serf 0.9.4), on the real reactor over :class:`GossipNet`: member
status both ways (alive, left, failed), queries both ways, key rotation
queries answered by us, and user events.

Our node advertises Consul's Vsn ``[1,5,2,2,5,4]`` and Consul client tags.
Timings are memberlist's LAN profile; our leave's propagate delay is cut to
0.5 s to keep the tests short.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from consul_tw._logging import HcLogger
from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.keyring import Keyring
from consul_tw.gossip.members import MemberStatus
from consul_tw.gossip.net import GossipNet
from consul_tw.gossip.serf.config import SerfConfig
from consul_tw.gossip.serf.events import UserEventReceived
from consul_tw.gossip.serf.pool import EventType, MemberEvent
from consul_tw.gossip.serf.queries import QueryParams, QueryReceived
from consul_tw.gossip.serf.serf import Serf
from tests.integration.harness import free_ports
from tests.integration.serf_agents import (
    CLIENT_TAGS,
    SERF,
    SerfAgent,
    SerfPool,
    eventually,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(SERF is None, reason="needs Debian's serf package (.ci/run installs it)"),
]

KEY = "MFGEKa64Dz/VEzW1NgiE4Kw69YFOn98xAr9JcWGuXXs="
OTHER_KEY = "5K9OtfP7efFrNKe5WCQvXvnaXJ5cWP0SvXiwe0kkjM4="
CONFIG = SerfConfig(leave_propagate_delay=0.5)


@attrs.define(eq=False)
class Ours:
    serf: Serf
    net: GossipNet
    events: list[MemberEvent] = attrs.field(factory=list)
    user_events: list[UserEventReceived] = attrs.field(factory=list)

    def status(self, name: str) -> MemberStatus | None:
        member = self.serf.member(name)
        return None if member is None else member.status


@pytest.fixture
def our_serf() -> Iterator[Callable[..., Ours]]:
    started: list[Ours] = []

    def start(name: str, *, key: str | None = None) -> Ours:
        (port,) = free_ports(1)
        keyring = Keyring.from_base64([key]) if key else None
        net = GossipNet(reactor, "127.0.0.1", port, HcLogger(f"memberlist.{name}"), keyring=keyring)
        net.listen()
        serf = Serf(
            CONFIG,
            MemberlistConfig.lan(),
            name,
            "127.0.0.1",
            net.bound_port,
            CLIENT_TAGS,
            reactor,
            random.Random(),
            net,
            HcLogger(f"serf.{name}"),
            keyring=keyring,
        )
        net.bind(serf)
        ours = Ours(serf, net)
        serf.subscribe(ours.events.append)
        serf.subscribe_user_events(ours.user_events.append)
        serf.start()
        started.append(ours)
        return ours

    yield start
    for ours in started:
        ours.serf.shutdown()
        ours.net.stop()


async def joined_pair(
    serf_pool: SerfPool,
    our_serf: Any,
    *,
    key: str | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[SerfAgent, Ours]:
    agent = serf_pool.new("s1", tags=tags or {"role": "web"}, encrypt=key).start()
    ours = our_serf("tw1", key=key)
    await eventually(lambda: agent.members(), 30, "serf to answer RPC")
    assert await ours.serf.join([("127.0.0.1", agent.port)]) == 1
    await eventually(
        lambda: agent.members().get("tw1", {}).get("status") == "alive", 10, "tw1 alive in serf"
    )
    return agent, ours


@pytest_twisted.ensureDeferred
async def test_serf_and_we_list_each_other_alive(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    member = agent.members()["tw1"]
    assert member["tags"] == CLIENT_TAGS
    assert member["protocol"] == {"min": 2, "max": 5, "version": 4}
    s1 = ours.serf.member("s1")
    assert s1 is not None and s1.status is MemberStatus.ALIVE
    assert (dict(s1.tags), s1.delegate_cur, s1.protocol_cur) == ({"role": "web"}, 5, 2)
    # Our join intent reached serf (it logs every intent at debug level).
    await eventually(lambda: "messageJoinType: tw1" in agent.log, 5, "our join intent in serf")


@pytest_twisted.ensureDeferred
async def test_serf_joins_us(serf_pool: SerfPool, our_serf: Any) -> None:
    ours = our_serf("tw1")
    agent = serf_pool.new("s1").start(join=f"127.0.0.1:{ours.serf.memberlist.port}")
    await eventually(lambda: ours.status("s1") is MemberStatus.ALIVE, 10, "s1 alive here")
    await eventually(
        lambda: agent.members().get("tw1", {}).get("status") == "alive", 10, "tw1 alive in serf"
    )


@pytest_twisted.ensureDeferred
async def test_our_graceful_leave_is_left_in_serf(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    await ours.serf.leave()
    assert ours.serf.local_member().status is MemberStatus.LEFT
    status = await eventually(
        lambda: (
            agent.members().get("tw1", {}).get("status") in ("left", "failed")
            and agent.members()["tw1"]["status"]
        ),
        5,
        "tw1 gone in serf",
    )
    assert status == "left"
    assert "EventMemberFailed: tw1" not in agent.log


@pytest_twisted.ensureDeferred
async def test_serf_leave_is_left_here(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    result = agent.command("leave")
    assert result.returncode == 0, result.stderr
    await eventually(lambda: ours.status("s1") is MemberStatus.LEFT, 10, "s1 left here")
    kinds = [e.type for e in ours.events if e.members[0].name == "s1"]
    assert kinds == [EventType.MEMBER_JOIN, EventType.MEMBER_LEAVE]


@pytest_twisted.ensureDeferred
async def test_killed_serf_is_failed_here(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    agent.kill()
    await eventually(lambda: ours.status("s1") is MemberStatus.FAILED, 15, "s1 failed here")


@pytest_twisted.ensureDeferred
async def test_our_shutdown_is_failed_in_serf(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    ours.serf.shutdown()  # no goodbye
    await eventually(
        lambda: agent.members().get("tw1", {}).get("status") == "failed", 15, "tw1 failed in serf"
    )


@pytest_twisted.ensureDeferred
async def test_serf_query_gets_our_ack_and_response(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    asked: list[QueryReceived] = []

    def answer(q: QueryReceived) -> None:
        asked.append(q)
        q.respond(b"pong:" + q.payload)

    ours.serf.subscribe_queries(answer)
    # The CLI blocks until its timeout: run it off the reactor thread.
    from twisted.internet.threads import deferToThread

    result = await deferToThread(
        agent.command, "query", "-format=json", "-timeout=2s", "myq", "ping"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert sorted(out["Acks"]) == ["s1", "tw1"]
    assert out["Responses"] == {"tw1": "pong:ping"}
    assert [(q.name, q.source_node) for q in asked] == [("myq", "s1")]


@pytest_twisted.ensureDeferred
async def test_our_query_is_acked_by_serf(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    pending = ours.serf.query("_serf_ping", b"", QueryParams(request_ack=True, timeout=2.0))
    await pending.finished
    assert sorted(pending.acks) == ["s1", "tw1"]
    assert pending.responses == {}


@pytest_twisted.ensureDeferred
async def test_serf_keys_count_our_answers(serf_pool: SerfPool, our_serf: Any) -> None:
    from twisted.internet.threads import deferToThread

    agent, ours = await joined_pair(serf_pool, our_serf, key=KEY)
    listed = await deferToThread(agent.command, "keys", "-list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"{KEY}  [2/2]" in listed.stdout
    installed = await deferToThread(agent.command, "keys", "-install", OTHER_KEY)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert ours.serf.keyring is not None
    assert ours.serf.keyring.keys == (base64.b64decode(KEY), base64.b64decode(OTHER_KEY))
    used = await deferToThread(agent.command, "keys", "-use", OTHER_KEY)
    assert used.returncode == 0, used.stdout + used.stderr
    assert ours.serf.keyring.primary_base64() == OTHER_KEY
    removed = await deferToThread(agent.command, "keys", "-remove", KEY)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert ours.serf.keyring.keys_base64() == [OTHER_KEY]
    # The pool still works on the new key: serf still sees us alive.
    await deferLater(reactor, 2.0, lambda: None)  # real-time: a few probe rounds
    assert agent.members()["tw1"]["status"] == "alive"


@pytest_twisted.ensureDeferred
async def test_user_events_both_ways(serf_pool: SerfPool, our_serf: Any) -> None:
    agent, ours = await joined_pair(serf_pool, our_serf)
    sent = agent.command("event", "deploy", "v1")
    assert sent.returncode == 0, sent.stderr
    await eventually(lambda: ours.user_events, 5, "the event here")
    assert [(e.name, e.payload) for e in ours.user_events] == [("deploy", b"v1")]
    ours.serf.user_event("restart", b"web")
    await eventually(lambda: "restart" in agent.log, 5, "our event in serf's log")
