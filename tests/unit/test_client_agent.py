"""
A client agent (no --server) before gossip and server RPC exist: it runs
its LAN pool, HTTP and DNS, and says there are no servers rather than
inventing answers.
"""

from __future__ import annotations

import io

import dns.message
import dns.rcode
from treq.testing import StubTreq
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger, HclogObserver
from consul_tw.build import build_agent
from consul_tw.config import build_config
from consul_tw.http.root import build_site
from consul_tw.testing.reactor import MemoryReactorWithUDP


class ClientAgentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        observer = HclogObserver(self.out, level="DEBUG", buffer_until_banner=False)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.reactor = MemoryReactorWithUDP()
        config = build_config(
            dev=False,
            server=False,
            flags={"node": "c1", "data-dir": "/d"},
            config_files=[],
            hostname="h",
        )
        self.service = build_agent(config, self.reactor)
        self.service.startService()
        self.reactor.advance(1)

    def test_listens_only_where_a_client_does(self) -> None:
        self.assertEqual(sorted(p[0] for p in self.reactor.tcpServers), [8301, 8500, 8600])
        self.assertEqual(sorted(self.reactor.udpPorts), [8301, 8600])
        self.assertEqual(self.service.agent.lan.local_member().tags["role"], "node")

    def test_catalog_reads_say_no_servers(self) -> None:
        treq = StubTreq(build_site(self.service.agent, logger=HcLogger("agent.http")).resource)
        response = self.successResultOf(treq.get("http://127.0.0.1:8500/v1/catalog/nodes"))
        body = self.successResultOf(response.content())
        self.assertEqual(
            (response.code, body), (500, b"rpc error making call: No known Consul servers")
        )
        members = self.successResultOf(treq.get("http://127.0.0.1:8500/v1/agent/members"))
        self.assertEqual(members.code, 200)

    def test_dns_answers_servfail(self) -> None:
        port = self.reactor.udpPorts[8600]
        query = dns.message.make_query("c1.node.consul", "A")
        port.protocol.datagramReceived(query.to_wire(), ("127.0.0.1", 5353))
        self.reactor.advance(0)
        ((reply, _),) = port.written or [(None, None)]
        self.assertIsNotNone(reply)
        self.assertEqual(dns.message.from_wire(reply).rcode(), dns.rcode.SERVFAIL)
        self.assertNotIn("Traceback", self.out.getvalue())

    def test_signal_defaults_are_a_clients(self) -> None:
        config = self.service.agent.config
        self.assertEqual((config.leave_on_terminate, config.skip_leave_on_interrupt), (True, False))

    def test_leave_and_stop(self) -> None:
        left = self.service.agent.leave()
        self.reactor.advance(1)  # a client has no drain: just the pool's leave
        self.successResultOf(left)
        stopped = self.service.stopService()
        self.reactor.advance(3)
        self.successResultOf(stopped)
        text = self.out.getvalue()
        self.assertEqual(text.count("agent: Requesting shutdown"), 1)
        self.assertIn("agent.client: shutting down client", text)
        self.assertIn("agent.client.serf.lan: serf: EventMemberLeave: c1 127.0.0.1", text)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
