"""
A dev server and a client agent wired together in memory, for tests of
client forwarding: the client's RPC goes to the server's dispatcher
directly, and the client learns its server from a gossip alive message, as
it would on the LAN.
"""

from __future__ import annotations

import socket
from typing import Any

from consul_tw.build import build_agent
from consul_tw.config import build_config
from consul_tw.gossip.memberlist.messages import Alive
from consul_tw.gossip.members import server_tags
from consul_tw.gossip.serf.codec import encode_tags
from consul_tw.service import AgentService
from consul_tw.testing.reactor import MemoryReactorWithUDP


def dev_server(reactor: MemoryReactorWithUDP, node: str = "srv") -> AgentService:
    """A started dev server that has elected itself (0.3 s of its clock)."""
    config = build_config(
        dev=True, server=False, flags={"node": node}, config_files=[], hostname="h"
    )
    server = build_agent(config, reactor)
    server.startService()
    reactor.advance(0.3)
    return server


def client_of(server_node: str, rpc: Any, node: str = "cli") -> AgentService:
    """A client agent (not started) whose RPC is ``rpc`` and which knows the server."""
    config = build_config(
        dev=False,
        server=False,
        flags={"node": node, "data-dir": "/d"},
        config_files=[],
        hostname="h",
    )
    client = build_agent(config, MemoryReactorWithUDP())
    client.agent.rpc = rpc
    tags = server_tags(
        datacenter="dc1", node_id="x", server_port=8300, wan_port=8302, bootstrap=False, wan=False
    )
    alive = Alive(
        incarnation=1,
        node=server_node,
        addr=socket.inet_aton("127.0.0.1"),
        port=8301,
        meta=encode_tags(tags),
    )
    client.agent.lan.memberlist.packet_received("127.0.0.1", 8301, [alive])
    return client
