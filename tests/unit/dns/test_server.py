# -*- test-case-name: tests.unit.dns.test_server -*-
"""
Tests for :mod:`consul_tw.dns.server`: the wire format (flags, EDNS0, size
limits, bad input) through in-memory transports, then the real listeners on
loopback queried with dnspython.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.dns.server import (
    TCP_IDLE_TIMEOUT,
    ConsulDNSServerFactory,
    DNSDatagramProtocol,
)
from tests.unit.dns.test_authority import Catalog, make_authority

CLIENT = ("127.0.0.1", 5353)


def populated_catalog(instances: int = 20) -> Catalog:
    catalog = Catalog()
    catalog.node("host", "127.0.0.1")
    for i in range(instances):
        catalog.service(f"web-node-{i:02d}", "web", node_address=f"10.0.0.{i + 1}")
    return catalog


def capture_events(case: SynchronousTestCase) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    case.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def assert_no_failures(case: SynchronousTestCase, events: list[dict[str, Any]]) -> None:
    """No traceback reached the log, whatever the input was."""
    case.assertEqual([e for e in events if "log_failure" in e], [])
    case.assertEqual(case.flushLoggedErrors(), [])


class WireTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = capture_events(self)
        self.authority, _ = make_authority(populated_catalog())
        self.clock = Clock()
        self.factory = ConsulDNSServerFactory(
            self.authority, reactor=self.clock, logger=HcLogger("agent.dns")
        )
        self.udp = DNSDatagramProtocol(self.factory, reactor=self.clock)
        self.udp_transport = FakeDatagramTransport()
        self.udp.makeConnection(self.udp_transport)

    def udp_raw(self, data: bytes) -> list[bytes]:
        before = len(self.udp_transport.written)
        self.udp.datagramReceived(data, CLIENT)
        written = self.udp_transport.written[before:]
        self.assertTrue(all(addr == CLIENT for _, addr in written))
        return [packet for packet, _ in written]

    def ask(self, query: dns.message.Message) -> tuple[dns.message.Message, int]:
        [reply] = self.udp_raw(query.to_wire())
        return dns.message.from_wire(reply), len(reply)

    def tcp_connection(self) -> tuple[Any, StringTransport]:
        proto = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        proto.makeConnection(transport)
        return proto, transport

    def tcp_ask(self, query: dns.message.Message) -> dns.message.Message:
        proto, transport = self.tcp_connection()
        wire = query.to_wire()
        proto.dataReceived(struct.pack("!H", len(wire)) + wire)
        data = transport.value()
        (length,) = struct.unpack("!H", data[:2])
        self.assertEqual(len(data), length + 2)
        self.assertFalse(transport.disconnecting)
        return dns.message.from_wire(data[2:])

    def test_node_query_flags_and_sections(self) -> None:
        """What ``dig host.node.consul`` shows: qr aa rd, one A, the TXT in ADDITIONAL."""
        query = dns.message.make_query("host.node.consul", "A")
        response, _ = self.ask(query)
        self.assertEqual(response.id, query.id)
        self.assertEqual(dns.flags.to_text(response.flags), "QR AA RD")
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)
        [rrset] = response.answer
        self.assertEqual(
            (rrset.ttl, rrset.rdtype, [r.address for r in rrset]),
            (0, dns.rdatatype.A, ["127.0.0.1"]),
        )
        [txt] = response.additional
        self.assertEqual(
            (str(txt.name), [r.to_text() for r in txt]),
            ("host.node.consul.", ['"consul-network-segment="']),
        )
        self.assertEqual(response.edns, -1)
        served = [e for e in self.events if e.get("hclog_message") == "request served from client"]
        pairs = dict(served[0]["hclog_pairs"])
        self.assertEqual(
            (
                pairs["name"],
                pairs["type"],
                pairs["class"],
                pairs["client"],
                pairs["client_network"],
            ),
            ("host.node.consul.", "A", "IN", "127.0.0.1:5353", "udp"),
        )

    def test_rd_echoed_only_when_asked(self) -> None:
        query = dns.message.make_query("host.node.consul", "A")
        query.flags &= ~dns.flags.RD
        response, _ = self.ask(query)
        self.assertEqual(dns.flags.to_text(response.flags), "QR AA")

    def test_nxdomain_with_soa(self) -> None:
        response, _ = self.ask(dns.message.make_query("nothere.node.consul", "A", use_edns=0))
        self.assertEqual(response.rcode(), dns.rcode.NXDOMAIN)
        self.assertEqual(dns.flags.to_text(response.flags), "QR AA RD")
        [soa] = response.authority
        self.assertEqual(
            soa.to_text(),
            f"consul. 0 IN SOA ns.consul. hostmaster.consul. {1618911844} 3600 600 86400 0",
        )

    def test_out_of_domain_refused(self) -> None:
        response, _ = self.ask(dns.message.make_query("example.com", "A"))
        self.assertEqual(response.rcode(), dns.rcode.REFUSED)
        self.assertEqual(dns.flags.to_text(response.flags), "QR RD")
        self.assertEqual((response.answer, response.authority), ([], []))

    def test_edns_echo(self) -> None:
        for size in (4096, 1232, 512):
            response, _ = self.ask(
                dns.message.make_query("host.node.consul", "A", use_edns=0, payload=size)
            )
            self.assertEqual((response.edns, response.payload), (0, size))

    def test_edns_client_subnet_echoed_with_scope_zero(self) -> None:
        ecs = dns.edns.ECSOption("192.0.2.0", 24)
        query = dns.message.make_query("host.node.consul", "A", use_edns=0, options=[ecs])
        response, _ = self.ask(query)
        [option] = response.options
        self.assertEqual((option.address, option.srclen, option.scopelen), ("192.0.2.0", 24, 0))

    def test_udp_without_edns_cut_to_three_answers(self) -> None:
        """Consul's udp_answer_limit: three answers, additional pruned to match, no TC."""
        response, size = self.ask(dns.message.make_query("web.service.consul", "SRV"))
        [srv] = response.answer
        self.assertEqual(len(srv), 3)
        self.assertFalse(response.flags & dns.flags.TC)
        self.assertLessEqual(size, 512)
        targets = sorted(str(r.target) for r in srv)
        glue = sorted(str(rrset.name) for rrset in response.additional)
        self.assertEqual(glue, targets)
        self.assertTrue(all(rrset.rdtype == dns.rdatatype.A for rrset in response.additional))
        a_response, _ = self.ask(dns.message.make_query("web.service.consul", "A"))
        self.assertEqual((len(a_response.answer[0]), a_response.additional), (3, []))

    def test_udp_trimmed_to_fit(self) -> None:
        catalog = Catalog()
        for i in range(3):
            catalog.service(
                f"{'n' * 60}{i}", "big", node_address=f"10.0.0.{i + 1}", meta={"k": "v" * 200}
            )
        self.factory.authority = make_authority(catalog)[0]
        response, size = self.ask(dns.message.make_query("big.service.consul", "SRV"))
        self.assertLessEqual(size, 512)
        self.assertGreaterEqual(len(response.answer[0]), 1)
        self.assertLess(len(response.answer[0]), 3)
        self.assertFalse(response.flags & dns.flags.TC)

    def test_edns_size_lifts_the_limits(self) -> None:
        response, _ = self.ask(
            dns.message.make_query("web.service.consul", "A", use_edns=0, payload=4096)
        )
        self.assertEqual(len(response.answer[0]), 20)
        small, size = self.ask(
            dns.message.make_query("web.service.consul", "SRV", use_edns=0, payload=700)
        )
        self.assertLessEqual(size, 700)
        self.assertGreater(len(small.answer[0]), 3)
        self.assertLess(len(small.answer[0]), 20)
        tiny, _ = self.ask(
            dns.message.make_query("web.service.consul", "A", use_edns=0, payload=256)
        )
        self.assertEqual((len(tiny.answer[0]), tiny.payload), (3, 256))

    def test_tcp_has_no_answer_limit(self) -> None:
        response = self.tcp_ask(dns.message.make_query("web.service.consul", "SRV"))
        self.assertEqual(len(response.answer[0]), 20)
        self.assertEqual(len(response.additional), 40)  # A + TXT per target

    def test_tcp_pipelined_queries(self) -> None:
        proto, transport = self.tcp_connection()
        wires = [
            dns.message.make_query(n, "A").to_wire() for n in ("host.node.consul", "x.node.consul")
        ]
        proto.dataReceived(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        data, replies = transport.value(), []
        while data:
            (length,) = struct.unpack("!H", data[:2])
            replies.append(dns.message.from_wire(data[2 : 2 + length]))
            data = data[2 + length :]
        self.assertEqual([r.rcode() for r in replies], [dns.rcode.NOERROR, dns.rcode.NXDOMAIN])

    def test_formerr_and_notimp(self) -> None:
        wire = dns.message.make_query("host.node.consul", "A").to_wire()
        no_question = wire[:4] + b"\x00\x00" + wire[6:12]
        [reply] = self.udp_raw(no_question)
        self.assertEqual(dns.message.from_wire(reply).rcode(), dns.rcode.FORMERR)
        [reply] = self.udp_raw(wire[:20])  # the question cut short
        self.assertEqual((reply[:2], reply[3] & 0xF), (wire[:2], dns.rcode.FORMERR))
        update = wire[:2] + bytes([wire[2] | (5 << 3)]) + wire[3:]
        [reply] = self.udp_raw(update)
        self.assertEqual(reply[3] & 0xF, dns.rcode.NOTIMP)
        opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"  # root, OPT, size 4096
        base = dns.message.make_query("host.node.consul", "A").to_wire()
        two_opts = base[:10] + b"\x00\x02" + base[12:] + opt + opt
        [reply] = self.udp_raw(two_opts)
        self.assertEqual(reply[3] & 0xF, dns.rcode.FORMERR)

    def test_responses_and_short_packets_ignored(self) -> None:
        wire = dns.message.make_query("host.node.consul", "A").to_wire()
        response = wire[:2] + bytes([wire[2] | 0x80]) + wire[3:]
        self.assertEqual(self.udp_raw(response), [])
        self.assertEqual(self.udp_raw(wire[:11]), [])
        self.assertEqual(self.udp_raw(b""), [])

    def test_tcp_junk_closes_connection(self) -> None:
        proto, transport = self.tcp_connection()
        proto.dataReceived(b"\x00\x05hello")
        self.assertTrue(transport.disconnecting)
        proto, transport = self.tcp_connection()
        proto.dataReceived(b"\x00\x0c" + b"\x12\x34\x01\x00" + b"\x00" * 8)  # zero questions
        self.assertEqual(transport.value()[2:4], b"\x12\x34")
        self.assertTrue(transport.disconnecting)
        assert_no_failures(self, self.events)

    def test_silent_tcp_clients_are_disconnected(self) -> None:
        proto, transport = self.tcp_connection()
        self.clock.advance(TCP_IDLE_TIMEOUT - 1)
        wire = dns.message.make_query("host.node.consul", "A").to_wire()
        proto.dataReceived(struct.pack("!H", len(wire)) + wire)
        self.clock.advance(TCP_IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting, "a query resets the idle timer")
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting or transport.disconnected)
        proto.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_garbage_udp(self) -> None:
        """Random, mutated, truncated and oversized datagrams: no crash, no traceback."""
        rng = random.Random(1234)
        valid = [
            dns.message.make_query(name, rtype, use_edns=edns).to_wire()
            for name, rtype, edns in [
                ("host.node.consul", "A", 0),
                ("web.service.consul", "SRV", -1),
                ("_web._tcp.service.consul", "SRV", 0),
                ("example.com", "TXT", -1),
            ]
        ]
        packets: list[bytes] = [
            bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 600))) for _ in range(1500)
        ]
        for wire in valid:
            packets.extend(wire[:cut] for cut in range(len(wire)))
            for _ in range(300):
                mutated = bytearray(wire)
                for _ in range(rng.randrange(1, 4)):
                    mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
                packets.append(bytes(mutated))
            packets.append(wire + bytes(rng.getrandbits(8) for _ in range(70000)))
        packets.append(b"\x00" * 12 + b"\xc0\x0c" * 100)  # compression loops
        pointer_loop = valid[0][:12] + b"\xc0\x0c\x00\x01\x00\x01"
        packets.append(pointer_loop)
        for packet in packets:
            for reply in self.udp_raw(packet):
                self.assertGreaterEqual(len(reply), 12)
                self.assertEqual(reply[:2], packet[:2])
                self.assertTrue(reply[2] & 0x80)
        assert_no_failures(self, self.events)

    def test_garbage_tcp(self) -> None:
        rng = random.Random(99)
        for _ in range(300):
            proto, transport = self.tcp_connection()
            for _ in range(rng.randrange(1, 5)):
                proto.dataReceived(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300))))
            if rng.random() < 0.5:
                proto.connectionLost(None)
        wire = dns.message.make_query("host.node.consul", "A").to_wire()
        for cut in range(len(wire)):
            proto, transport = self.tcp_connection()
            proto.dataReceived(struct.pack("!H", cut) + wire[:cut])
            if cut < 12:
                self.assertTrue(transport.disconnecting)
        assert_no_failures(self, self.events)

    def test_lookup_error_is_servfail_without_traceback(self) -> None:
        class Broken:
            def lookup(self, name: bytes, qtype: int) -> None:
                raise RuntimeError("boom")

        self.factory.authority = Broken()  # type: ignore[assignment]
        [reply] = self.udp_raw(dns.message.make_query("host.node.consul", "A").to_wire())
        self.assertEqual(reply[3] & 0xF, dns.rcode.SERVFAIL)
        errors = [
            e for e in self.events if e.get("hclog_message") == "failed to answer DNS request"
        ]
        self.assertEqual(len(errors), 1)
        assert_no_failures(self, self.events)
