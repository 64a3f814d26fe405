# -*- test-case-name: tests.unit.dns.test_authority -*-
"""
The Consul DNS authority: answers for names under the ``consul.`` domain.

This is Consul's ``agent/dns.go`` dispatch, read from the catalog state store
and nothing else.  It decides *what* the answer is (rcode, the three record
sections, whether the answer is authoritative); how the answer travels
(EDNS, size limits, trimming, framing) is :mod:`consul_tw.dns.server`'s job,
so every rule here can be tested without bytes or sockets.

Twisted's ``IResolver`` chain is deliberately not used: it can express
neither NXDOMAIN with an SOA in the authority section nor REFUSED, both of
which Consul users see from ``dig``.
"""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.names import dns

from consul_tw._logging import HcLogger
from consul_tw.catalog.store import StateStore
from consul_tw.catalog.structs import CRITICAL, WARNING, Node, ServiceInstance

#: SOA timers Consul uses by default (``dns_config.soa``): refresh, retry, expire, min-ttl.
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, SOA_MIN_TTL = 3600, 600, 86400, 0
#: Consul never returns more than this many NS records.
MAX_NS = 3
#: Kinds Consul knows but this release has no data for (mesh, prepared queries).
_UNSUPPORTED_KINDS = frozenset({"connect", "ingress", "query", "virtual"})
#: Consul's ``InvalidDnsRe``: node names that cannot be a DNS label.
_INVALID_DNS = re.compile(r"[^A-Za-z0-9\-]")


@attrs.frozen
class Answer:
    """
    What to say about one question.  ``trim`` marks answers Consul trims to
    the transport's size limits (service lookups only, as ``trimDNSResponse``
    is called only there); the server decides the limits.
    """

    rcode: int
    answers: tuple[dns.RRHeader, ...] = ()
    authority: tuple[dns.RRHeader, ...] = ()
    additional: tuple[dns.RRHeader, ...] = ()
    authoritative: bool = True
    trim: bool = False


def encode_meta_txt(key: str, value: str) -> str:
    """
    One node-meta entry as Consul's TXT text (RFC 1464 ``key=value``, with
    backquote escapes); keys prefixed ``rfc1035-`` carry the bare value.
    """
    if key.lower().startswith("rfc1035-"):
        return value
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    key = stripped + "` " * (len(key) - len(stripped))
    return key + "=" + value.replace("`", "``")


def _txt_payload(text: str) -> dns.Record_TXT:
    """A TXT payload, split into 255-byte character-strings as miekg/dns does."""
    data = text.encode("utf-8")
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return dns.Record_TXT(*chunks, ttl=0)


def valid_name(name: bytes) -> bool:
    """
    Whether a name built from catalog data can go on the wire: labels of 1 to
    63 bytes, 253 in all.  Twisted would silently write a broken packet for
    anything else, so such targets are left out (Consul calls those nodes
    "not discoverable").
    """
    labels = name.split(b".")
    return len(name) <= 253 and all(0 < len(label) <= 63 for label in labels)


def _rr(name: bytes, payload: Any) -> dns.RRHeader:
    return dns.RRHeader(name=name, type=payload.TYPE, cls=dns.IN, ttl=0, payload=payload, auth=True)


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address as an IP; IPv4-mapped IPv6 counts as IPv4 (Go's ``To4``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_records(address: str, name: bytes, qtype: int) -> list[dns.RRHeader]:
    """
    Consul's ``formatNodeRecord`` without meta: A or AAAA when the family
    matches the question (or it is ANY), a CNAME when the address is a host
    name, nothing otherwise (the caller turns that into NODATA).
    """
    ip = _parse_ip(address)
    if isinstance(ip, ipaddress.IPv4Address) and qtype in (dns.A, dns.ALL_RECORDS):
        return [_rr(name, dns.Record_A(str(ip), ttl=0))]
    if isinstance(ip, ipaddress.IPv6Address) and qtype in (dns.AAAA, dns.ALL_RECORDS):
        return [_rr(name, dns.Record_AAAA(str(ip), ttl=0))]
    target = address.rstrip(".").encode("utf-8")
    if (
        ip is None
        and valid_name(target)
        and qtype in (dns.ALL_RECORDS, dns.CNAME, dns.A, dns.AAAA, dns.TXT)
    ):
        return [_rr(name, dns.Record_CNAME(target, ttl=0))]
    return []


@attrs.define
class ConsulAuthority:
    """
    Answers questions under ``domain`` for the local ``datacenter`` from
    ``store``.  It only reads the store, so it answers with stale data when
    there is no leader, as Consul's ``allow_stale`` default does.  ``clock``
    gives the SOA serial and ``rng`` the per-query shuffle, both injected so
    tests are deterministic.
    """

    #: None on a client agent, which has no catalog of its own: every
    #: in-domain question is SERVFAIL until it can ask a server.
    store: StateStore | None
    datacenter: str = attrs.field(kw_only=True)
    clock: IReactorTime = attrs.field(kw_only=True)
    domain: str = attrs.field(kw_only=True, default="consul.")
    logger: HcLogger | None = attrs.field(kw_only=True, default=None)
    rng: random.Random = attrs.field(kw_only=True, factory=random.Random)
    _labels: tuple[str, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.domain = self.domain.strip(".").lower() + "."
        self._labels = tuple(self.domain.rstrip(".").split("."))

    @property
    def _catalog(self) -> StateStore:
        """The store, once ``lookup`` has checked that this agent has one."""
        if self.store is None:
            raise LookupError("no catalog on this agent")
        return self.store

    # -- public ------------------------------------------------------------

    def lookup(self, name: bytes | str, qtype: int) -> Answer:
        """Answer one question; the name keeps its case in the records returned."""
        qname = name.encode("utf-8") if isinstance(name, str) else name
        qname = qname.rstrip(b".")
        text = qname.decode("utf-8", errors="replace").lower()
        labels = text.split(".") if text else []
        n = len(self._labels)
        if len(labels) < n or tuple(labels[len(labels) - n :]) != self._labels:
            if labels[-2:] in (["in-addr", "arpa"], ["ip6", "arpa"]):
                return self._ptr_lookup(qname, text)
            # Not ours, and there are no recursors to ask.
            return Answer(rcode=dns.EREFUSED, authoritative=False)
        if self.store is None:
            return Answer(rcode=dns.ESERVER)
        if qtype == dns.SOA:
            ns, glue = self._nameservers()
            return Answer(rcode=dns.OK, answers=(self.soa(),), authority=ns, additional=glue)
        if qtype == dns.NS:
            ns, glue = self._nameservers()
            return self._finish(dns.OK, list(ns), [], list(glue))
        if qtype == dns.AXFR:
            return Answer(rcode=dns.ENOTIMP)
        return self._dispatch(qname, labels[: len(labels) - n], qtype)

    def soa(self) -> dns.RRHeader:
        """The zone's SOA; the serial is the current Unix time, as Consul's."""
        domain = self.domain.rstrip(".")
        return _rr(
            domain.encode("ascii"),
            dns.Record_SOA(
                mname=f"ns.{domain}".encode("ascii"),
                rname=f"hostmaster.{domain}".encode("ascii"),
                serial=int(self.clock.seconds()) & 0xFFFFFFFF,
                refresh=SOA_REFRESH,
                retry=SOA_RETRY,
                expire=SOA_EXPIRE,
                minimum=SOA_MIN_TTL,
                ttl=0,
            ),
        )

    # -- grammar -----------------------------------------------------------

    def _dispatch(self, qname: bytes, labels: list[str], qtype: int) -> Answer:
        """Parse right to left as Consul's ``dispatch``: kind, then optional DC."""
        trimmed = "".join(label + "." for label in labels)  # Consul logs the name sans domain
        datacenter = self.datacenter.lower()
        dc_parsed = False
        while labels:
            n = len(labels)
            # An SRV question may leave out "service": _web._tcp.consul.
            if qtype == dns.SRV and labels[-1].startswith("_"):
                labels = labels + ["service"]
                n += 1
            kind = labels[-1]
            if kind == "service" and n > 1:
                if n == 3 and labels[0].startswith("_") and labels[1].startswith("_"):
                    tag: str | None = labels[1][1:]
                    service = labels[0][1:]
                    if tag == "tcp":
                        tag = None
                else:
                    tag = ".".join(labels[: n - 2]) if n >= 3 else None
                    service = labels[n - 2]
                if datacenter != self.datacenter.lower():
                    return self._nxdomain()
                return self._service_lookup(qname, service, tag, qtype)
            if kind == "node" and n > 1:
                if datacenter != self.datacenter.lower():
                    return self._nxdomain()
                return self._node_lookup(qname, ".".join(labels[:-1]), qtype)
            if kind == "addr" and n == 2:
                return self._addr_lookup(qname, trimmed, labels[0])
            if kind in _UNSUPPORTED_KINDS and n > 1:
                return self._nxdomain()
            if dc_parsed or kind in ("service", "node", "addr"):
                break
            # Datacenter names hold no dots, so one label at most sits between
            # the kind and the domain.
            dc_parsed = True
            datacenter = kind
            labels = labels[:-1]
        self._warn("QName invalid", qname=trimmed)
        return self._nxdomain()

    # -- lookups -----------------------------------------------------------

    def _node_lookup(self, qname: bytes, node_name: str, qtype: int) -> Answer:
        node = self._catalog.get_node(node_name)
        if node is None:
            return self._nxdomain()
        answers = [] if qtype == dns.TXT else address_records(node.address, qname, qtype)
        meta = self._meta_records(node, qname)
        if qtype in (dns.TXT, dns.ALL_RECORDS):
            return self._finish(dns.OK, answers + meta, [], [])
        return self._finish(dns.OK, answers, [], meta)

    def _service_lookup(self, qname: bytes, service: str, tag: str | None, qtype: int) -> Answer:
        instances = self._healthy(service, tag)
        if not instances:
            return self._nxdomain()
        answers: list[dns.RRHeader] = []
        additional: list[dns.RRHeader] = []
        if qtype == dns.SRV:
            self._srv_records(instances, qname, answers, additional)
        else:
            seen: set[str] = set()
            for inst in instances:
                addr = inst.service.address or inst.node.address
                if addr in seen:
                    continue
                seen.add(addr)
                answers.extend(address_records(addr, qname, qtype))
                meta = self._meta_records(inst.node, qname)
                (answers if qtype in (dns.TXT, dns.ALL_RECORDS) else additional).extend(meta)
        return self._finish(dns.OK, answers, [], additional, trim=True)

    def _srv_records(
        self,
        instances: list[ServiceInstance],
        qname: bytes,
        answers: list[dns.RRHeader],
        additional: list[dns.RRHeader],
    ) -> None:
        """
        Consul's ``serviceSRVRecords``: one SRV per node/address/port, the
        target being the node name, the ``<hex>.addr`` name when the service
        has its own IP, or the service's host name.
        """
        handled: set[tuple[str, str, int]] = set()
        for inst in instances:
            node, svc = inst.node, inst.service
            key = (node.node, svc.address, svc.port)
            if key in handled:
                continue
            handled.add(key)
            node_target = self._node_fqdn(node)
            if not valid_name(node_target):
                continue
            target = node_target
            addr = svc.address or node.address
            extra = address_records(addr, node_target, dns.ALL_RECORDS)
            if extra and addr != node.address:
                payload: Any = extra[0].payload
                if isinstance(payload, (dns.Record_A, dns.Record_AAAA)):
                    packed = _parse_ip(addr).packed  # type: ignore[union-attr]
                    hex_name = f"{packed.hex()}.addr.{self.datacenter}.{self.domain}"
                    target = hex_name.rstrip(".").encode("utf-8")
                    extra = [_rr(target, payload)]
                else:
                    target, extra = payload.name.name, []
            weight = self._weight(inst)
            srv = dns.Record_SRV(
                priority=1, weight=weight, port=svc.port & 0xFFFF, target=target, ttl=0
            )
            answers.append(_rr(qname, srv))
            if extra:
                additional.extend(extra)
                additional.extend(self._meta_records(node, node_target))

    def _addr_lookup(self, qname: bytes, text: str, label: str) -> Answer:
        """``<hex>.addr.consul``: the address encoded in the name itself."""
        try:
            packed = bytes.fromhex(label)
        except ValueError:
            self._warn("QName invalid", qname=text)
            return self._nxdomain()
        if len(packed) == 4:
            records = [_rr(qname, dns.Record_A(str(ipaddress.IPv4Address(packed)), ttl=0))]
        elif len(packed) == 16:
            records = [_rr(qname, dns.Record_AAAA(str(ipaddress.IPv6Address(packed)), ttl=0))]
        else:
            records = []
        return self._finish(dns.OK, records, [], [])

    def _ptr_lookup(self, qname: bytes, text: str) -> Answer:
        """
        Reverse lookups Consul answers from node addresses first, then
        service addresses; anything else is refused (no recursors).
        """
        for node in self._catalog.nodes():
            target = self._node_fqdn(node)
            if _reverse_name(node.address) == text and valid_name(target):
                return Answer(rcode=dns.OK, answers=(_rr(qname, dns.Record_PTR(target, ttl=0)),))
        for node in self._catalog.nodes():
            for svc in self._catalog.node_services(node.node):
                target = f"{svc.service}.service.{self.domain}".rstrip(".").encode("utf-8")
                if svc.address and _reverse_name(svc.address) == text and valid_name(target):
                    return Answer(
                        rcode=dns.OK, answers=(_rr(qname, dns.Record_PTR(target, ttl=0)),)
                    )
        return Answer(rcode=dns.EREFUSED, authoritative=False)

    # -- helpers -------------------------------------------------------------

    def _healthy(self, service: str, tag: str | None) -> list[ServiceInstance]:
        """Instances with no critical check (warning counts as healthy), shuffled."""
        found = [i for i in self._catalog.service_instances(service, tag) if i.status != CRITICAL]
        self.rng.shuffle(found)
        return found

    @staticmethod
    def _weight(inst: ServiceInstance) -> int:
        """``Weights.Warning`` for a warning instance, else ``Weights.Passing``."""
        weights = inst.service.weights
        weight = weights.warning if inst.status == WARNING else weights.passing
        return max(0, min(weight, 0xFFFF))

    def _nameservers(self) -> tuple[tuple[dns.RRHeader, ...], tuple[dns.RRHeader, ...]]:
        """
        NS records for up to three healthy servers (the nodes running the
        ``consul`` service), each with its A/AAAA glue; nodes whose names
        are not DNS labels are skipped, as Consul does.
        """
        domain = self.domain.rstrip(".").encode("ascii")
        ns: list[dns.RRHeader] = []
        glue: list[dns.RRHeader] = []
        for inst in self._healthy("consul", None):
            name = inst.node.node
            if _INVALID_DNS.search(name) or not valid_name(self._node_fqdn(inst.node)):
                self._warn("Skipping invalid node for NS records", node=name)
                continue
            fqdn = self._node_fqdn(inst.node).lower()
            ns.append(_rr(domain, dns.Record_NS(fqdn, ttl=0)))
            glue.extend(address_records(inst.node.address, fqdn, dns.ALL_RECORDS))
            if len(ns) >= MAX_NS:
                break
        return tuple(ns), tuple(glue)

    def _meta_records(self, node: Node, name: bytes) -> list[dns.RRHeader]:
        """Node meta as TXT records, sorted by key so answers are stable."""
        return [
            _rr(name, _txt_payload(encode_meta_txt(k, v))) for k, v in sorted(node.meta.items())
        ]

    def _node_fqdn(self, node: Node) -> bytes:
        return f"{node.node}.node.{self.datacenter}.{self.domain}".rstrip(".").encode("utf-8")

    def _finish(
        self,
        rcode: int,
        answers: list[dns.RRHeader],
        authority: list[dns.RRHeader],
        additional: list[dns.RRHeader],
        *,
        trim: bool = False,
    ) -> Answer:
        """A NOERROR answer; with no answer records it is NODATA and carries the SOA."""
        if not answers and not authority:
            authority = [self.soa()]
        return Answer(
            rcode=rcode,
            answers=tuple(answers),
            authority=tuple(authority),
            additional=tuple(additional),
            trim=trim,
        )

    def _nxdomain(self) -> Answer:
        return Answer(rcode=dns.ENAME, authority=(self.soa(),))

    def _warn(self, message: str, **pairs: object) -> None:
        if self.logger is not None:
            self.logger.warn(message, **pairs)  # noqa: G010 - HcLogger's hclog name


def _reverse_name(address: str) -> str | None:
    """``in-addr.arpa``/``ip6.arpa`` name of an IP, without the trailing dot."""
    ip = _parse_ip(address)
    return ip.reverse_pointer if ip is not None else None
