"""
A whole dev agent on a memory reactor: service tree, election, catalog,
start-up output, leave and shutdown, with time driven by hand.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HclogObserver
from consul_tw.build import build_agent
from consul_tw.catalog.structs import PASSING, SERF_CHECK_ID
from consul_tw.config import AgentConfig, build_config
from consul_tw.gossip.members import MemberStatus
from consul_tw.testing.reactor import MemoryReactorWithUDP


def dev_config(**flags: str) -> AgentConfig:
    flags.setdefault("node", "host")
    return build_config(
        dev=True,
        server=False,
        flags=flags,
        config_files=[],
        hostname="h",
        new_uuid=lambda: "7a82fb12-a621-004b-a8cd-98861b80d64c",
    )


class DevAgentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.observer = HclogObserver(self.out, level="DEBUG")
        globalLogPublisher.addObserver(self.observer)
        self.addCleanup(globalLogPublisher.removeObserver, self.observer)
        self.reactor = MemoryReactorWithUDP()
        self.errors: list[str] = []

    def start(self, **flags: str) -> Any:
        service = build_agent(dev_config(**flags), self.reactor)
        service._write_error = self.errors.append
        service.startService()
        self.reactor.advance(0.2)
        return service

    def test_listens_on_every_port(self) -> None:
        self.start()
        self.assertEqual(
            sorted(p[0] for p in self.reactor.tcpServers), [8300, 8301, 8302, 8500, 8600]
        )
        self.assertEqual(sorted(self.reactor.udpPorts), [8301, 8302, 8600])
        self.assertTrue(all(p[3] == "127.0.0.1" for p in self.reactor.tcpServers))

    def test_leader_registers_itself(self) -> None:
        service = self.start()
        agent = service.agent
        store = agent.catalog()
        node = store.get_node("host")
        assert node is not None
        self.assertEqual(
            (node.id, node.address, dict(node.tagged_addresses), dict(node.meta)),
            (
                "7a82fb12-a621-004b-a8cd-98861b80d64c",
                "127.0.0.1",
                {
                    "lan": "127.0.0.1",
                    "lan_ipv4": "127.0.0.1",
                    "wan": "127.0.0.1",
                    "wan_ipv4": "127.0.0.1",
                },
                {"consul-network-segment": ""},
            ),
        )
        self.assertGreater(node.modify_index, node.create_index)
        checks = {c.check_id: c.status for c in store.node_checks("host")}
        self.assertEqual(checks, {SERF_CHECK_ID: PASSING})
        self.assertEqual([s.port for s in store.node_services("host")], [8300])
        self.assertEqual(agent.leader_address(), "127.0.0.1:8300")
        self.assertEqual(agent.peers(), ["127.0.0.1:8300"])

    def test_startup_output_tells_the_tutorial_story(self) -> None:
        self.start()
        text = self.out.getvalue()
        self.assertTrue(text.startswith("==> Starting Consul agent...\n           Version: "))
        order = [
            "==> Log data will now stream in as it occurs:",
            "[DEBUG] agent: Using random ID as node ID: id=7a82fb12-a621-004b-a8cd-98861b80d64c",
            "agent.server.raft: initial configuration: index=1",
            "agent.server.raft: entering follower state",
            "agent.server.serf.wan: serf: EventMemberJoin: host.dc1 127.0.0.1",
            "agent.server.serf.lan: serf: EventMemberJoin: host 127.0.0.1",
            "agent: Started DNS server: address=127.0.0.1:8600 network=udp",
            "agent: Started DNS server: address=127.0.0.1:8600 network=tcp",
            "agent: Started HTTP server: address=127.0.0.1:8500 network=tcp",
            "agent.server.raft: heartbeat timeout reached, starting election",
            "agent.server.raft: entering candidate state",
            "agent.server.raft: vote granted",
            "agent.server.raft: election won: tally=1",
            "agent.server.raft: entering leader state",
            "agent.server: cluster leadership acquired",
            "agent.leader: member joined, marking health alive: member=host",
            "agent: Synced node info",
        ]
        positions = [text.find(line) for line in order]
        self.assertNotIn(
            -1, positions, [line for line, p in zip(order, positions, strict=True) if p < 0]
        )
        self.assertEqual(positions, sorted(positions))
        self.assertNotIn("Traceback", text)

    def test_running_line_once_the_reactor_runs(self) -> None:
        self.start()
        self.assertNotIn("==> Consul agent running!", self.out.getvalue())
        self.reactor.run()  # a memory reactor runs its when-running hooks
        self.assertIn("==> Consul agent running!", self.out.getvalue())

    def test_invalid_node_name_warns(self) -> None:
        self.start(node="bad.name")
        self.assertIn(
            '[WARN]  agent: Node name "bad.name" will not be discoverable via DNS due to invalid '
            "characters. Valid characters include all alpha-numerics and dashes.",
            self.out.getvalue(),
        )

    def test_port_conflict_exits_1_with_one_line(self) -> None:
        self.reactor.taken_ports.add(8500)
        service = build_agent(dev_config(), self.reactor)
        service._write_error = self.errors.append
        error = self.assertRaises(SystemExit, service.startService)
        self.assertEqual(error.code, 1)
        self.assertEqual(
            self.errors,
            ["==> Error starting agent: listen 127.0.0.1:8500: bind: address already in use"],
        )

    def test_graceful_leave_then_exit_zero(self) -> None:
        service = self.start()
        left = service.agent.leave()
        self.assertNoResult(left)
        self.reactor.advance(1)
        self.assertEqual(service.agent.lan.local_member().status, MemberStatus.LEFT)
        self.assertNoResult(left)  # draining RPC traffic for 5 s
        self.reactor.advance(5)
        self.successResultOf(left)
        self.assertFalse(self.reactor.hasStopped)
        service.agent.leave_answered()
        self.reactor.advance(0)
        self.assertTrue(self.reactor.hasStopped)
        stopped = service.stopService()
        self.reactor.advance(3)
        self.successResultOf(stopped)
        text = self.out.getvalue()
        order = [
            "agent.server: server starting leave",
            "agent.server.serf.wan: serf: EventMemberLeave: host.dc1 127.0.0.1",
            "agent.server.serf.lan: serf: EventMemberLeave: host 127.0.0.1",
            "agent.server: deregistering self should be done by follower: name=host",
            "agent.server: Waiting to drain RPC traffic: drain_time=5s",
            "agent: Requesting shutdown",
            "agent.server: shutting down server",
            "agent: consul server down",
            "agent: shutdown complete",
            "agent: Stopping server: protocol=DNS address=127.0.0.1:8600 network=tcp",
            "agent: Stopping server: protocol=DNS address=127.0.0.1:8600 network=udp",
            "agent: Stopping server: protocol=HTTP address=127.0.0.1:8500 network=tcp",
            "agent: Endpoints down",
            "agent: Exit code: code=0",
        ]
        positions = [text.find(line) for line in order]
        self.assertNotIn(
            -1, positions, [line for line, p in zip(order, positions, strict=True) if p < 0]
        )
        self.assertEqual(positions, sorted(positions))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_without_leave_leaves_no_timers(self) -> None:
        service = self.start()
        stopped = service.stopService()
        self.reactor.advance(3)
        self.successResultOf(stopped)
        self.assertNotIn("EventMemberLeave", self.out.getvalue())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
