# -*- test-case-name: tests.unit.dns.test_server -*-
"""
DNS on the wire: UDP and TCP listeners sharing one server factory.

The factory turns request bytes into response bytes: it rejects what
miekg/dns (Consul's DNS library) rejects, asks :class:`ConsulAuthority`
for the answer, echoes EDNS0, and trims service answers to the transport's
size limit as Consul's ``trimUDPResponse``/``trimTCPResponse`` do.  Bad input
must never reach Twisted's "Unhandled Error" path, since a DNS port is open to
anything on the network: every packet is handled inside one ``try`` and a
failure becomes a dropped packet, FORMERR or SERVFAIL, logged without a
traceback.
"""

from __future__ import annotations

import struct
from datetime import timedelta
from io import BytesIO
from typing import Any, cast

import attrs
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.names import dns
from twisted.names.server import DNSServerFactory
from twisted.protocols.policies import TimeoutMixin

from consul_tw._logging import HcLogger
from consul_tw.dns.authority import Answer, ConsulAuthority

#: Without EDNS0 a UDP answer must fit in 512 bytes (RFC 1035).
DEFAULT_UDP_SIZE = 512
#: Consul's ``udp_answer_limit`` default, applied to non-EDNS UDP answers.
UDP_ANSWER_LIMIT = 3
#: Consul's ``trimTCPResponse`` limit: 64k minus some framing overhead.
TCP_MAX_SIZE = 65523
_HEADER = struct.Struct("!HBBHHHH")
_ECS_OPTION = 8


@attrs.frozen
class Outcome:
    """Bytes to send back (or None to stay silent) and whether the input was junk."""

    reply: bytes | None
    malformed: bool = False


def _header_reply(request: bytes, rcode: int) -> bytes:
    """A question-less reply built from the request header alone (FORMERR, NOTIMP)."""
    ident, byte3, _, _, _, _, _ = _HEADER.unpack_from(request)
    flags = 0x80 | (byte3 & 0x78) | (byte3 & 0x01)  # QR, opcode, RD
    return _HEADER.pack(ident, flags, rcode & 0xF, 0, 0, 0, 0)


def _edns_options(opt: dns.RRHeader) -> list[tuple[int, bytes]]:
    data = getattr(opt.payload, "data", b"") or b""
    options, i = [], 0
    while i + 4 <= len(data):
        code, length = struct.unpack_from("!HH", data, i)
        options.append((code, data[i + 4 : i + 4 + length]))
        i += 4 + length
    return options


def _opt_record(request_opt: dns.RRHeader) -> dns.RRHeader:
    """
    The OPT for a response: the requested UDP size echoed back (Consul's
    ``setEDNS``), version 0, and any client-subnet option echoed with scope 0
    because catalog answers are the same for every client.
    """
    body = b""
    for code, data in _edns_options(request_opt):
        if code == _ECS_OPTION and len(data) >= 4:
            data = data[:3] + b"\x00" + data[4:]
            body += struct.pack("!HH", code, len(data)) + data
    return dns.RRHeader(
        name=b"", type=dns.OPT, cls=request_opt.cls, ttl=0, payload=dns.UnknownRecord(body, ttl=0)
    )


def uncompressed_size(message: dns.Message) -> int:
    """Wire size without name compression (miekg's ``Len`` with ``Compress`` off)."""
    strio = BytesIO()
    items: list[Any] = [*message.queries, *message.answers, *message.authority, *message.additional]
    for item in items:
        item.encode(strio, None)
    return dns.Message.headerSize + strio.tell()


def _sync_additional(message: dns.Message, index: dict[bytes, dns.RRHeader]) -> None:
    """
    Consul's ``syncExtra``: after answers were dropped keep only the
    additional records SRV targets still need (following CNAMEs).
    """
    extra: list[dns.RRHeader] = []
    resolved: set[bytes] = set()
    for record in message.answers:
        if record.type != dns.SRV:
            continue
        payload: Any = record.payload
        target = payload.target.name.lower()
        while target not in resolved:
            resolved.add(target)
            found = index.get(target)
            if found is None:
                break
            extra.append(found)
            if found.type != dns.CNAME:
                break
            target = cast(Any, found.payload).name.name.lower()
    message.additional = extra


def trim_response(
    message: dns.Message,
    *,
    max_size: int,
    answer_limit: int | None = None,
    min_answers: int = 1,
    margin: int = 7,
) -> bool:
    """
    Drop answers until ``message`` fits in ``max_size - margin``, but never
    below ``min_answers``, pruning the additional section to match.  For UDP
    Consul keeps one answer even if it is too big and leaves 7 bytes spare;
    for TCP it may drop them all.  ``answer_limit`` first caps the answer
    count.  Returns whether anything was dropped; Consul leaves TC unset by
    default (``enable_truncate``), so the caller does not set it.
    """
    original = len(message.answers)
    index: dict[bytes, dns.RRHeader] = {}
    for record in message.additional:
        index.setdefault(record.name.name.lower(), record)
    has_extra = bool(message.additional)

    def measure() -> int:
        return uncompressed_size(message) if uncompressed else len(message.toStr())

    uncompressed = False
    if answer_limit is not None and original > answer_limit:
        # Consul measures the cut-down answer uncompressed, to stay under 512
        # even for a middlebox that decompresses.
        uncompressed = True
        message.answers = message.answers[:answer_limit]
        if has_extra:
            _sync_additional(message, index)
    limit = max_size - margin
    answers = message.answers
    if len(answers) > min_answers and measure() > limit:
        low, high = min_answers, len(answers)  # low fits (or is the floor), high does not
        while high - low > 1:
            middle = (low + high) // 2
            message.answers = answers[:middle]
            if has_extra:
                _sync_additional(message, index)
            if measure() <= limit:
                low = middle
            else:
                high = middle
        message.answers = answers[:low]
        if has_extra:
            _sync_additional(message, index)
    return len(message.answers) < original


class ConsulDNSServerFactory(DNSServerFactory):
    """
    One factory for both transports; :meth:`handle_packet` is the whole
    request/response path, so UDP, TCP and the tests share it.
    """

    def __init__(self, authority: ConsulAuthority, *, reactor: Any, logger: HcLogger) -> None:
        super().__init__()
        self.authority = authority
        self.reactor = reactor
        self.log = logger
        self.protocol = DNSStreamProtocol

    def buildProtocol(self, addr: Any) -> DNSStreamProtocol:
        # Pass our reactor: DNSMixin would otherwise import the global one.
        proto = DNSStreamProtocol(self, reactor=self.reactor)
        proto.factory = self
        return proto

    def messageReceived(self, message: Any, proto: Any, address: Any = None) -> None:
        """Unused: our protocols hand over bytes, never parsed messages."""

    def handle_packet(self, data: bytes, *, network: str, client: str) -> Outcome:
        """Response bytes for one request, or silence for what Consul ignores."""
        if len(data) < dns.Message.headerSize:
            return Outcome(None, malformed=True)
        _, byte3, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        if byte3 & 0x80:  # a response: ignored, as miekg/dns does
            return Outcome(None)
        if (byte3 >> 3) & 0xF != dns.OP_QUERY:
            return Outcome(_header_reply(data, dns.ENOTIMP))
        if qdcount != 1 or ancount > 1 or nscount > 1 or arcount > 2:
            return Outcome(_header_reply(data, dns.EFORMAT), malformed=True)
        started = self.reactor.seconds()
        try:
            request = dns.Message()
            request.fromStr(data)
            opts = [r for r in request.additional if r.type == dns.OPT]
            if len(request.queries) != 1 or len(opts) > 1:
                raise ValueError("expected one question and at most one OPT")
        except Exception as e:  # noqa: BLE001 - any decoding error at all: the bytes are junk
            self.log.debug("malformed DNS request", client=client, error=str(e))
            return Outcome(_header_reply(data, dns.EFORMAT), malformed=True)
        query = request.queries[0]
        try:
            answer = self.authority.lookup(query.name.name, query.type)
            reply = self._encode(request, answer, opts[0] if opts else None, network)
        except Exception as e:  # noqa: BLE001 - a bug, or a name twisted cannot re-encode
            self.log.error("failed to answer DNS request", client=client, error=repr(e))
            return Outcome(_header_reply(data, dns.ESERVER))
        self.log.debug(
            "request served from client",
            name=query.name.name.decode("utf-8", "replace") + ".",
            type=dns.QUERY_TYPES.get(query.type, dns.EXT_QUERIES.get(query.type, str(query.type))),
            **{"class": dns.QUERY_CLASSES.get(query.cls, str(query.cls))},
            latency=timedelta(seconds=self.reactor.seconds() - started),
            client=client,
            client_network=network,
        )
        return Outcome(reply)

    def _encode(
        self, request: dns.Message, answer: Answer, opt: dns.RRHeader | None, network: str
    ) -> bytes:
        response = dns.Message(
            id=request.id,
            answer=1,
            opCode=request.opCode,
            auth=answer.authoritative,
            recDes=request.recDes,
            recAv=0,
            rCode=answer.rcode,
            checkingDisabled=request.checkingDisabled,
            maxSize=0,  # never let twisted cut bytes mid-record; we trim records
        )
        response.queries = list(request.queries)
        response.answers = list(answer.answers)
        response.authority = list(answer.authority)
        response.additional = list(answer.additional)
        if answer.trim:
            if network == "udp":
                size = max(DEFAULT_UDP_SIZE, opt.cls) if opt is not None else DEFAULT_UDP_SIZE
                limit = UDP_ANSWER_LIMIT if size == DEFAULT_UDP_SIZE else None
                trimmed = trim_response(response, max_size=size, answer_limit=limit)
            else:
                cap = 1024 if request.queries[0].type == dns.SRV else 4096
                response.answers = response.answers[:cap]
                trimmed = trim_response(response, max_size=TCP_MAX_SIZE, min_answers=0, margin=0)
            if trimmed:
                self.log.debug(
                    "DNS response too large, truncated",
                    num_records=len(answer.answers),
                    num_records_after=len(response.answers),
                    protocol=network,
                )
        if opt is not None:
            response.additional.append(_opt_record(opt))
        data = response.toStr()
        if network == "tcp" and len(data) > 0xFFFF:
            raise ValueError(f"response of {len(data)} bytes does not fit a TCP frame")
        return data


class DNSDatagramProtocol(dns.DNSDatagramProtocol):
    """UDP: one datagram in, at most one out; junk is answered FORMERR or dropped."""

    controller: ConsulDNSServerFactory

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        outcome = self.controller.handle_packet(data, network="udp", client=f"{addr[0]}:{addr[1]}")
        if outcome.reply is None or self.transport is None:
            return
        try:
            self.transport.write(outcome.reply, addr)
        except Exception as e:  # noqa: BLE001 - e.g. EMSGSIZE for a huge EDNS answer
            log = self.controller.log
            log.warn("failed to write DNS response", client=addr[0], error=str(e))  # noqa: G010


#: Seconds a TCP client may stay silent before it is disconnected (miekg/dns,
#: which Consul uses, allows 8 s of idleness between queries).
TCP_IDLE_TIMEOUT = 8.0


class DNSStreamProtocol(dns.DNSProtocol, TimeoutMixin):
    """
    TCP: length-prefixed messages; junk closes the connection after any
    FORMERR, and so does silence, so idle peers cannot hold sockets forever.
    """

    controller: ConsulDNSServerFactory

    def connectionMade(self) -> None:
        self.callLater = self._reactor.callLater  # type: ignore[attr-defined]
        super().connectionMade()
        self.setTimeout(TCP_IDLE_TIMEOUT)

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        super().connectionLost(reason)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()

    def stringReceived(self, data: bytes) -> None:
        self.resetTimeout()
        peer = self.transport.getPeer()
        client = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        outcome = self.controller.handle_packet(data, network="tcp", client=client)
        if outcome.reply is not None:
            self.sendString(outcome.reply)
        if outcome.malformed:
            self.transport.loseConnection()


class DNSService(MultiService):
    """
    The agent's DNS interface: UDP and TCP on one address.  Listening happens
    in ``startService`` so a taken port fails the agent's start at once, as
    Consul's does; with ``port=0`` TCP tries to share the port UDP got.
    """

    def __init__(
        self,
        authority: ConsulAuthority,
        *,
        interface: str,
        port: int,
        reactor: Any,
        logger: HcLogger,
    ) -> None:
        super().__init__()
        self.interface = interface
        self.port = port
        self.reactor = reactor
        self.logger = logger
        self.factory = ConsulDNSServerFactory(
            authority, reactor=reactor, logger=logger.named("dns")
        )
        self.udp_port: int | None = None
        self.tcp_port: int | None = None
        self._listeners: list[tuple[str, IListeningPort]] = []

    def _address(self, port: int | None) -> str:
        host = f"[{self.interface}]" if ":" in self.interface else self.interface
        return f"{host}:{port}"

    def startService(self) -> None:
        udp = self.reactor.listenUDP(
            self.port,
            DNSDatagramProtocol(self.factory, reactor=self.reactor),
            interface=self.interface,
            maxPacketSize=65535,
        )
        self.udp_port = udp.getHost().port
        try:
            try:
                tcp = self.reactor.listenTCP(self.udp_port, self.factory, interface=self.interface)
            except CannotListenError:
                if self.port != 0:
                    raise
                tcp = self.reactor.listenTCP(0, self.factory, interface=self.interface)
        except BaseException:
            udp.stopListening()
            raise
        self.tcp_port = tcp.getHost().port
        self._listeners = [("udp", udp), ("tcp", tcp)]
        super().startService()
        self.logger.info("Started DNS server", address=self._address(self.udp_port), network="udp")
        self.logger.info("Started DNS server", address=self._address(self.tcp_port), network="tcp")

    def stopService(self) -> defer.Deferred[Any]:
        """Close TCP then UDP (Consul's order); fires when both ports are closed."""
        stopping = [defer.maybeDeferred(super().stopService)]
        for network, listener in reversed(self._listeners):
            port = self.tcp_port if network == "tcp" else self.udp_port
            self.logger.info(
                "Stopping server", protocol="DNS", address=self._address(port), network=network
            )
            stopping.append(defer.maybeDeferred(listener.stopListening))
        for proto in list(self.factory.connections):
            proto.transport.loseConnection()
        self._listeners = []
        return defer.gatherResults(stopping, consumeErrors=True).addCallback(lambda _: None)
