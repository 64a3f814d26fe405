# -*- test-case-name: tests.unit.dns.test_authority -*-
"""
Tests for :class:`consul_tw.dns.authority.ConsulAuthority`: what Consul's DNS
interface answers, checked record by record without any bytes on a wire.
"""

from __future__ import annotations

import random
import socket
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.catalog.commands import CheckSpec, NodeSpec, Register, ServiceSpec
from consul_tw.catalog.store import StateStore
from consul_tw.dns.authority import Answer, ConsulAuthority, encode_meta_txt

#: The serial Consul showed in the reference output.
NOW = 1618911844
SEGMENT = {"consul-network-segment": ""}


class Catalog:
    """A small builder over StateStore so each test states only what matters."""

    def __init__(self) -> None:
        self.store = StateStore()
        self.index = 0

    def node(
        self,
        name: str,
        address: str = "127.0.0.1",
        meta: dict[str, str] | None = None,
        checks: tuple[CheckSpec, ...] = (),
    ) -> None:
        self.index += 1
        spec = NodeSpec(
            id=f"id-{name}",
            node=name,
            address=address,
            datacenter="dc1",
            meta=SEGMENT if meta is None else meta,
        )
        self.store.register(self.index, Register(node=spec, checks=checks))

    def service(
        self,
        node: str,
        name: str,
        *,
        address: str = "",
        node_address: str = "10.0.0.1",
        port: int = 80,
        tags: tuple[str, ...] = (),
        status: str = "passing",
        node_status: str = "passing",
        sid: str | None = None,
        weights: tuple[int, int] = (1, 1),
        meta: dict[str, str] | None = None,
    ) -> None:
        self.index += 1
        sid = sid or name
        spec = NodeSpec(
            id=f"id-{node}",
            node=node,
            address=node_address,
            datacenter="dc1",
            meta=SEGMENT if meta is None else meta,
        )
        service = ServiceSpec(
            id=sid,
            service=name,
            tags=tags,
            address=address,
            port=port,
            weights_passing=weights[0],
            weights_warning=weights[1],
        )
        checks = (
            CheckSpec(check_id="serfHealth", name="Serf Health Status", status=node_status),
            CheckSpec(check_id=f"service:{sid}", name="svc", status=status, service_id=sid),
        )
        self.store.register(self.index, Register(node=spec, service=service, checks=checks))


def make_authority(catalog: Catalog, seed: int = 0, **kw: Any) -> tuple[ConsulAuthority, Clock]:
    clock = Clock()
    clock.advance(NOW)
    kw.setdefault("logger", HcLogger("agent.dns"))
    authority = ConsulAuthority(
        catalog.store, datacenter="dc1", clock=clock, rng=random.Random(seed), **kw
    )
    return authority, clock


def texts(records: tuple[dns.RRHeader, ...], rtype: int | None = None) -> list[str]:
    """Records as short strings ('A 10.0.0.1', 'TXT k=v', 'SRV 1 1 80 target')."""
    out = []
    for r in records:
        if rtype is not None and r.type != rtype:
            continue
        p = r.payload
        if r.type == dns.A:
            out.append(f"A {p.dottedQuad()}")
        elif r.type == dns.AAAA:
            out.append(f"AAAA {socket.inet_ntop(socket.AF_INET6, p.address)}")
        elif r.type == dns.TXT:
            out.append("TXT " + b"".join(p.data).decode())
        elif r.type == dns.SRV:
            out.append(f"SRV {p.priority} {p.weight} {p.port} {p.target.name.decode()}")
        elif r.type in (dns.CNAME, dns.PTR, dns.NS):
            out.append(f"{dns.QUERY_TYPES[r.type]} {p.name.name.decode()}")
        elif r.type == dns.SOA:
            out.append("SOA")
    return out


class NodeLookupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.catalog = Catalog()
        self.catalog.node("host", "127.0.0.1")
        self.authority, self.clock = make_authority(self.catalog)

    def test_a_record_with_meta_txt_in_additional(self) -> None:
        """The tutorial's ``dig host.node.consul``: one A, TTL 0, meta as TXT."""
        answer = self.authority.lookup(b"host.node.consul", dns.A)
        self.assertEqual(answer.rcode, dns.OK)
        self.assertTrue(answer.authoritative)
        self.assertEqual(texts(answer.answers), ["A 127.0.0.1"])
        [record] = answer.answers
        self.assertEqual(
            (record.name.name, record.ttl, record.cls, record.auth),
            (b"host.node.consul", 0, dns.IN, True),
        )
        self.assertEqual(texts(answer.additional), ["TXT consul-network-segment="])
        self.assertEqual(answer.additional[0].name.name, b"host.node.consul")
        self.assertEqual(answer.authority, ())
        self.assertFalse(answer.trim)

    def test_datacenter_form(self) -> None:
        answer = self.authority.lookup("host.node.dc1.consul.", dns.A)
        self.assertEqual((answer.rcode, texts(answer.answers)), (dns.OK, ["A 127.0.0.1"]))

    def test_wrong_datacenter_is_nxdomain(self) -> None:
        answer = self.authority.lookup("host.node.dc2.consul", dns.A)
        self.assertEqual(answer.rcode, dns.ENAME)
        self.assertEqual(texts(answer.authority), ["SOA"])
        self.assertEqual(answer.answers, ())

    def test_two_labels_between_kind_and_domain_is_invalid(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        answer = self.authority.lookup("host.node.dc1.extra.consul", dns.A)
        self.assertEqual(answer.rcode, dns.ENAME)
        warned = [e for e in events if e.get("hclog_message") == "QName invalid"]
        self.assertEqual(warned[0]["hclog_pairs"], (("qname", "host.node.dc1.extra."),))
        self.assertEqual(warned[0]["hclog_name"], "agent.dns")

    def test_case_insensitive(self) -> None:
        """Names match whatever their case, and the answer keeps the asker's spelling."""
        answer = self.authority.lookup(b"HoSt.NODE.Dc1.CONSUL", dns.A)
        self.assertEqual(texts(answer.answers), ["A 127.0.0.1"])
        self.assertEqual(answer.answers[0].name.name, b"HoSt.NODE.Dc1.CONSUL")

    def test_unknown_node_nxdomain_with_soa(self) -> None:
        answer = self.authority.lookup(b"Judiths-MBP.node.consul", dns.A)
        self.assertEqual(answer.rcode, dns.ENAME)
        self.assertTrue(answer.authoritative)
        self.assertEqual((answer.answers, answer.additional), ((), ()))
        [soa] = answer.authority
        self.assertEqual((soa.name.name, soa.ttl, soa.type), (b"consul", 0, dns.SOA))
        p = soa.payload
        self.assertEqual(
            (p.mname.name, p.rname.name, p.serial, p.refresh, p.retry, p.expire, p.minimum, p.ttl),
            (b"ns.consul", b"hostmaster.consul", NOW, 3600, 600, 86400, 0, 0),
        )

    def test_soa_serial_follows_the_clock(self) -> None:
        self.clock.advance(10)
        answer = self.authority.lookup(b"nope.node.consul", dns.A)
        self.assertEqual(answer.authority[0].payload.serial, NOW + 10)

    def test_txt_query_puts_meta_in_answer(self) -> None:
        answer = self.authority.lookup(b"host.node.consul", dns.TXT)
        self.assertEqual(texts(answer.answers), ["TXT consul-network-segment="])
        self.assertEqual(answer.additional, ())

    def test_any_query_gives_address_and_meta(self) -> None:
        answer = self.authority.lookup(b"host.node.consul", dns.ALL_RECORDS)
        self.assertEqual(texts(answer.answers), ["A 127.0.0.1", "TXT consul-network-segment="])

    def test_aaaa_on_ipv4_node_is_nodata(self) -> None:
        answer = self.authority.lookup(b"host.node.consul", dns.AAAA)
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, ()))
        self.assertEqual(texts(answer.authority), ["SOA"])

    def test_ipv6_node(self) -> None:
        self.catalog.node("six", "2001:db8::1")
        answer = self.authority.lookup(b"six.node.consul", dns.AAAA)
        self.assertEqual(texts(answer.answers), ["AAAA 2001:db8::1"])
        nodata = self.authority.lookup(b"six.node.consul", dns.A)
        self.assertEqual(
            (nodata.rcode, nodata.answers, texts(nodata.authority)), (dns.OK, (), ["SOA"])
        )

    def test_unsupported_type_is_nodata(self) -> None:
        answer = self.authority.lookup(b"host.node.consul", dns.MX)
        self.assertEqual(
            (answer.rcode, answer.answers, texts(answer.authority)), (dns.OK, (), ["SOA"])
        )

    def test_hostname_address_is_cname(self) -> None:
        self.catalog.node("ext", "db.example.com")
        answer = self.authority.lookup(b"ext.node.consul", dns.A)
        self.assertEqual(texts(answer.answers), ["CNAME db.example.com"])

    def test_dotted_node_name(self) -> None:
        """Labels left of ``.node`` are joined back into the node name."""
        self.catalog.node("web.prod", "10.1.1.1")
        answer = self.authority.lookup(b"web.prod.node.consul", dns.A)
        self.assertEqual(texts(answer.answers), ["A 10.1.1.1"])

    def test_meta_encoding(self) -> None:
        self.catalog.node("m", "10.0.0.9", meta={"rfc1035-raw": "v=spf1", "a=b": "c`d", " k ": "x"})
        answer = self.authority.lookup(b"m.node.consul", dns.TXT)
        self.assertEqual(texts(answer.answers), ["TXT ` k` =x", "TXT a`=b=c``d", "TXT v=spf1"])
        self.assertEqual(encode_meta_txt("key", "value"), "key=value")

    def test_long_meta_is_split_into_character_strings(self) -> None:
        self.catalog.node("long", "10.0.0.9", meta={"k": "v" * 300})
        [txt] = self.authority.lookup(b"long.node.consul", dns.TXT).answers
        self.assertEqual([len(d) for d in txt.payload.data], [255, 47])

    def test_soa_and_ns_queries(self) -> None:
        self.catalog.service("srv1", "consul", node_address="10.0.0.5", port=8300)
        soa = self.authority.lookup(b"consul", dns.SOA)
        self.assertEqual((soa.rcode, texts(soa.answers)), (dns.OK, ["SOA"]))
        self.assertEqual(texts(soa.authority), ["NS srv1.node.dc1.consul"])
        self.assertEqual(texts(soa.additional), ["A 10.0.0.5"])
        ns = self.authority.lookup(b"consul.", dns.NS)
        self.assertEqual(texts(ns.answers), ["NS srv1.node.dc1.consul"])
        self.assertEqual(ns.answers[0].name.name, b"consul")
        self.assertEqual(ns.additional[0].name.name, b"srv1.node.dc1.consul")

    def test_at_most_three_nameservers(self) -> None:
        for i in range(5):
            self.catalog.service(f"s{i}", "consul", node_address=f"10.0.0.{i + 1}", port=8300)
        self.catalog.service("bad_name", "consul", node_address="10.0.0.9", port=8300)
        self.assertEqual(len(self.authority.lookup(b"consul", dns.NS).answers), 3)

    def test_apex_a_query_is_nxdomain(self) -> None:
        self.assertEqual(self.authority.lookup(b"consul", dns.A).rcode, dns.ENAME)

    def test_axfr_not_implemented(self) -> None:
        self.assertEqual(self.authority.lookup(b"consul", dns.AXFR).rcode, dns.ENOTIMP)

    def test_addr_lookup(self) -> None:
        answer = self.authority.lookup(b"7f000001.addr.dc1.consul", dns.A)
        self.assertEqual(texts(answer.answers), ["A 127.0.0.1"])
        six = self.authority.lookup(b"20010db8000000000000000000000001.addr.consul", dns.AAAA)
        self.assertEqual(texts(six.answers), ["AAAA 2001:db8::1"])
        self.assertEqual(self.authority.lookup(b"zz.addr.consul", dns.A).rcode, dns.ENAME)

    def test_reverse_lookup(self) -> None:
        answer = self.authority.lookup(b"1.0.0.127.in-addr.arpa", dns.PTR)
        self.assertEqual(texts(answer.answers), ["PTR host.node.dc1.consul"])
        self.assertEqual(
            self.authority.lookup(b"9.9.9.9.in-addr.arpa", dns.PTR).rcode, dns.EREFUSED
        )

    def test_custom_domain(self) -> None:
        authority, _ = make_authority(self.catalog, domain="Example.Internal")
        self.assertEqual(
            texts(authority.lookup(b"host.node.example.internal", dns.A).answers), ["A 127.0.0.1"]
        )
        self.assertEqual(authority.lookup(b"host.node.consul", dns.A).rcode, dns.EREFUSED)
        self.assertEqual(authority.soa().payload.mname.name, b"ns.example.internal")


class OutOfDomainTests(SynchronousTestCase):
    def test_refused_without_recursors(self) -> None:
        authority, _ = make_authority(Catalog())
        for name in (b"example.com", b"", b"consul.com", b"notconsul"):
            answer = authority.lookup(name, dns.A)
            self.assertEqual(answer, Answer(rcode=dns.EREFUSED, authoritative=False), name)


class ServiceLookupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.catalog = Catalog()
        c = self.catalog
        c.service("n1", "web", node_address="10.0.0.1", tags=("v1", "Primary"))
        c.service(
            "n2", "web", node_address="10.0.0.2", tags=("v2",), status="warning", weights=(10, 3)
        )
        c.service("n3", "web", node_address="10.0.0.3", tags=("v1",), status="critical")
        c.service("n4", "web", node_address="10.0.0.4", tags=("v1",), node_status="critical")
        self.authority, _ = make_authority(c)

    def test_a_excludes_critical_instances(self) -> None:
        """A critical service check or a critical node check both exclude; warning stays."""
        answer = self.authority.lookup(b"web.service.consul", dns.A)
        self.assertEqual(answer.rcode, dns.OK)
        self.assertEqual(sorted(texts(answer.answers)), ["A 10.0.0.1", "A 10.0.0.2"])
        self.assertEqual(texts(answer.additional), ["TXT consul-network-segment="] * 2)
        self.assertTrue(answer.trim)

    def test_srv_records(self) -> None:
        answer = self.authority.lookup(b"web.service.dc1.consul", dns.SRV)
        self.assertEqual(
            sorted(texts(answer.answers)),
            ["SRV 1 1 80 n1.node.dc1.consul", "SRV 1 3 80 n2.node.dc1.consul"],
        )
        self.assertEqual(answer.answers[0].name.name, b"web.service.dc1.consul")
        names = sorted((r.name.name, texts((r,))[0]) for r in answer.additional)
        self.assertEqual(
            names,
            [
                (b"n1.node.dc1.consul", "A 10.0.0.1"),
                (b"n1.node.dc1.consul", "TXT consul-network-segment="),
                (b"n2.node.dc1.consul", "A 10.0.0.2"),
                (b"n2.node.dc1.consul", "TXT consul-network-segment="),
            ],
        )

    def test_tag_filter(self) -> None:
        answer = self.authority.lookup(b"v1.web.service.consul", dns.A)
        self.assertEqual(texts(answer.answers), ["A 10.0.0.1"])
        self.assertEqual(
            texts(self.authority.lookup(b"PRIMARY.web.service.consul", dns.A).answers),
            ["A 10.0.0.1"],
        )
        self.assertEqual(self.authority.lookup(b"v3.web.service.consul", dns.A).rcode, dns.ENAME)

    def test_rfc2782(self) -> None:
        every = self.authority.lookup(b"_web._tcp.service.consul", dns.SRV)
        self.assertEqual(len(every.answers), 2)
        tagged = self.authority.lookup(b"_web._v2.service.dc1.consul", dns.SRV)
        self.assertEqual(texts(tagged.answers), ["SRV 1 3 80 n2.node.dc1.consul"])
        short = self.authority.lookup(b"_web._tcp.consul", dns.SRV)
        self.assertEqual(len(short.answers), 2)

    def test_no_healthy_instance_is_nxdomain(self) -> None:
        self.catalog.service("n5", "db", status="critical")
        for name in (b"db.service.consul", b"nothing.service.consul", b"web.service.dc9.consul"):
            answer = self.authority.lookup(name, dns.A)
            self.assertEqual((answer.rcode, texts(answer.authority)), (dns.ENAME, ["SOA"]), name)

    def test_aaaa_on_ipv4_service_is_nodata(self) -> None:
        answer = self.authority.lookup(b"web.service.consul", dns.AAAA)
        self.assertEqual(
            (answer.rcode, answer.answers, texts(answer.authority)), (dns.OK, (), ["SOA"])
        )

    def test_duplicate_addresses_removed(self) -> None:
        self.catalog.service("n1", "web", sid="web-2", node_address="10.0.0.1", port=81)
        answer = self.authority.lookup(b"web.service.consul", dns.A)
        self.assertEqual(sorted(texts(answer.answers)), ["A 10.0.0.1", "A 10.0.0.2"])
        srv = self.authority.lookup(b"web.service.consul", dns.SRV)
        self.assertEqual(len(srv.answers), 3)

    def test_service_address_used(self) -> None:
        self.catalog.service("n6", "api", node_address="10.0.0.6", address="192.168.1.1", port=9000)
        self.assertEqual(
            texts(self.authority.lookup(b"api.service.consul", dns.A).answers), ["A 192.168.1.1"]
        )
        srv = self.authority.lookup(b"api.service.consul", dns.SRV)
        self.assertEqual(texts(srv.answers), ["SRV 1 1 9000 c0a80101.addr.dc1.consul"])
        self.assertEqual(srv.additional[0].name.name, b"c0a80101.addr.dc1.consul")
        self.assertEqual(texts(srv.additional[:1]), ["A 192.168.1.1"])

    def test_service_hostname_is_srv_target(self) -> None:
        self.catalog.service(
            "n7", "ext", node_address="10.0.0.7", address="db.example.com", port=5432
        )
        srv = self.authority.lookup(b"ext.service.consul", dns.SRV)
        self.assertEqual(texts(srv.answers), ["SRV 1 1 5432 db.example.com"])
        self.assertEqual(srv.additional, ())

    def test_shuffled_with_injected_rng(self) -> None:
        """Each query shuffles; the same seed gives the same order, so tests can pin it."""
        catalog = Catalog()
        for i in range(8):
            catalog.service(f"n{i}", "web", node_address=f"10.0.1.{i}")

        def order(seed: int) -> tuple[str, ...]:
            authority, _ = make_authority(catalog, seed=seed)
            return tuple(texts(authority.lookup(b"web.service.consul", dns.A).answers))

        self.assertEqual(order(1), order(1))
        self.assertGreater(len({order(seed) for seed in range(5)}), 1)
        authority, _ = make_authority(catalog, seed=7)
        first = texts(authority.lookup(b"web.service.consul", dns.A).answers)
        second = texts(authority.lookup(b"web.service.consul", dns.A).answers)
        self.assertEqual(sorted(first), sorted(second))
        self.assertNotEqual(first, second)

    def test_unsupported_kinds_nxdomain(self) -> None:
        for name in (b"web.connect.consul", b"web.query.consul", b"service.consul"):
            self.assertEqual(self.authority.lookup(name, dns.A).rcode, dns.ENAME, name)
