"""
consul-tw's memberlist layer in one gossip pool with real ``serf agent``
processes (Debian's serf 0.9.4): joins both ways, failure detection both
ways, encryption with the same key, and refusal with a wrong one.

Our side runs the protocol core on the real reactor over :class:`GossipNet`
with a minimal delegate that publishes Consul client tags; the Serf layer
proper (member status, intents) is exercised elsewhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from consul_tw._logging import HcLogger
from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.interfaces import NoopDelegate
from consul_tw.gossip.memberlist.keyring import Keyring
from consul_tw.gossip.memberlist.memberlist import Memberlist
from consul_tw.gossip.memberlist.messages import NodeState
from consul_tw.gossip.memberlist.pushpull import JoinError
from consul_tw.gossip.net import GossipNet
from consul_tw.gossip.serf.codec import decode_tags, encode_tags
from tests.integration.harness import free_ports
from tests.integration.serf_agents import (
    CLIENT_TAGS,
    SERF,
    SerfPool,
    eventually,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(SERF is None, reason="needs Debian's serf package (.ci/run installs it)"),
]

KEY = "MFGEKa64Dz/VEzW1NgiE4Kw69YFOn98xAr9JcWGuXXs="
OTHER_KEY = "5K9OtfP7efFrNKe5WCQvXvnaXJ5cWP0SvXiwe0kkjM4="


class TagsDelegate(NoopDelegate):
    """Publishes Serf tags as node meta, as the Serf layer will."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def node_meta(self, limit: int) -> bytes:
        return encode_tags(self.tags)


@pytest.fixture
def our_nodes() -> Iterator[Callable[..., Memberlist]]:
    started: list[tuple[Memberlist, GossipNet]] = []

    def start(name: str, *, key: str | None = None) -> Memberlist:
        (port,) = free_ports(1)
        keyring = Keyring.from_base64([key]) if key else None
        logger = HcLogger(f"agent.client.memberlist.lan.{name}")
        net = GossipNet(reactor, "127.0.0.1", port, logger, keyring=keyring)
        net.listen()
        node = Memberlist(
            config=MemberlistConfig.lan(),
            name=name,
            addr="127.0.0.1",
            port=net.bound_port,
            clock=reactor,
            rng=random.Random(),
            transport=net,
            delegate=TagsDelegate(CLIENT_TAGS),
            logger=logger,
        )
        net.bind(node)
        node.start()
        started.append((node, net))
        return node

    yield start
    for node, net in started:
        node.shutdown()
        net.stop()


def state_of(node: Memberlist, name: str) -> NodeState | None:
    found = node.node(name)
    return found.state if found is not None else None


@pytest_twisted.ensureDeferred
async def test_we_join_serf_and_see_each_other(serf_pool: SerfPool, our_nodes: Any) -> None:
    serf = serf_pool.new("s1", tags={"role": "web"}).start()
    ours = our_nodes("tw1")
    await eventually(lambda: serf.members(), 30, "serf to answer RPC")
    joined = await ours.join([("127.0.0.1", serf.port)])
    assert joined == 1
    member = await eventually(lambda: serf.members().get("tw1"), 10, "serf to list tw1")
    assert member["status"] == "alive"
    assert member["tags"] == CLIENT_TAGS
    assert member["protocol"] == {"min": 2, "max": 5, "version": 4}
    s1 = ours.node("s1")
    assert s1 is not None and s1.state is NodeState.ALIVE
    assert decode_tags(s1.meta) == {"role": "web"}


@pytest_twisted.ensureDeferred
async def test_serf_joins_us(serf_pool: SerfPool, our_nodes: Any) -> None:
    ours = our_nodes("tw1")
    serf = serf_pool.new("s1").start(join=f"127.0.0.1:{ours.port}")
    await eventually(lambda: state_of(ours, "s1") is NodeState.ALIVE, 15, "s1 alive here")
    await eventually(
        lambda: serf.members().get("tw1", {}).get("status") == "alive", 10, "tw1 alive in serf"
    )


@pytest_twisted.ensureDeferred
async def test_killed_serf_agent_is_dead_here(serf_pool: SerfPool, our_nodes: Any) -> None:
    serf = serf_pool.new("s1").start()
    ours = our_nodes("tw1")
    await eventually(lambda: serf.members(), 30, "serf to answer RPC")
    await ours.join([("127.0.0.1", serf.port)])
    serf.kill()
    killed = time.monotonic()
    await eventually(lambda: state_of(ours, "s1") is NodeState.DEAD, 30, "s1 dead here")
    assert time.monotonic() - killed < 30


@pytest_twisted.ensureDeferred
async def test_stopped_node_of_ours_is_failed_in_serf(serf_pool: SerfPool, our_nodes: Any) -> None:
    serf = serf_pool.new("s1").start()
    ours = our_nodes("tw1")
    await eventually(lambda: serf.members(), 30, "serf to answer RPC")
    await ours.join([("127.0.0.1", serf.port)])
    await eventually(lambda: "tw1" in serf.members(), 10, "serf to list tw1")
    ours.shutdown()  # like kill -9: no goodbye, and nothing answers probes
    await eventually(
        lambda: serf.members().get("tw1", {}).get("status") == "failed", 40, "tw1 failed in serf"
    )


@pytest_twisted.ensureDeferred
async def test_same_key_encrypted_pool(serf_pool: SerfPool, our_nodes: Any) -> None:
    serf = serf_pool.new("e1", encrypt=KEY).start()
    ours = our_nodes("tw1", key=KEY)
    await eventually(lambda: serf.members(), 30, "serf to answer RPC")
    assert await ours.join([("127.0.0.1", serf.port)]) == 1
    await eventually(
        lambda: serf.members().get("tw1", {}).get("status") == "alive", 10, "tw1 alive in serf"
    )
    assert state_of(ours, "e1") is NodeState.ALIVE


@pytest_twisted.ensureDeferred
async def test_wrong_key_is_refused(serf_pool: SerfPool, our_nodes: Any) -> None:
    serf = serf_pool.new("e1", encrypt=KEY).start()
    ours = our_nodes("tw1", key=OTHER_KEY)
    await eventually(lambda: serf.members(), 30, "serf to answer RPC")
    with pytest.raises(JoinError) as caught:
        await ours.join([("127.0.0.1", serf.port)])
    # serf could not open our push/pull and said so with memberlist's err message.
    assert "No installed keys could decrypt the message" in str(caught.value)
    assert "tw1" not in serf.members()
