"""
The baseline: a bare twisted.web + twisted.names server answering fixed bytes.

It is what the agent's figures are divided by.  It runs the way the agent
runs, as its own ``twistd -n`` process (through ``bench/_baseline.tac``) on
the same default reactor, so start-up, memory and per-request costs compare
like with like: everything the ratio shows above 1 is consul-tw's own work
(routing, catalog reads, JSON, DNS lookups, its logging), not Twisted's or
the interpreter's.

It listens, as the agent does, synchronously in ``startService`` (HTTP on
TCP, DNS on UDP and TCP), then logs ``bench baseline running`` once the
reactor runs, the counterpart of ``==> Consul agent running!``.

What it answers comes from a JSON fixture captured from the agent (see
:func:`write_fixture`), so both sides send the same bytes:

* HTTP: one path, the agent's status, headers (minus ``Date``, which
  twisted.web adds itself, and ``Content-Length``) and body; any other path
  gets a 404.  No access log, as the agent's site has none.
* DNS: the agent's answer, parsed by twisted.names and handed back by a
  minimal resolver for *any* question through the stock
  ``DNSServerFactory`` (taught only to echo the RD bit, as Consul does),
  which re-encodes it with the query's ID.  The
  benchmark checks that the result is byte-for-byte the agent's answer.

Configuration comes from the environment (a ``.tac`` file takes no
arguments): ``BENCH_HTTP_PORT``, ``BENCH_DNS_PORT`` and optionally
``BENCH_FIXTURE``, the fixture's path; without one it serves ``[]`` and an
A record, enough for the start-up benchmark.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from twisted.application.service import Application, Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import common, dns
from twisted.names.server import DNSServerFactory
from twisted.python.components import Componentized
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

READY_LINE = "bench baseline running"

_DEFAULT_HTTP: dict[str, Any] = {
    "path": "/v1/catalog/nodes",
    "status": 200,
    "headers": [["Content-Type", "application/json"]],
    "body": base64.b64encode(b"[]").decode(),
}


def _default_dns_answer() -> bytes:
    name = b"bench.node.consul"
    message = dns.Message(answer=True, auth=True)
    message.queries = [dns.Query(name, dns.A, dns.IN)]
    record: Any = dns.Record_A("127.0.0.1", ttl=0)
    message.answers = [dns.RRHeader(name, dns.A, payload=record, ttl=0)]
    return message.toStr()


def write_fixture(
    path: Path,
    *,
    http_path: str,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    dns_answer: bytes | None = None,
) -> None:
    """Write what the baseline should answer, as captured from the agent."""
    fixture: dict[str, Any] = {
        "http": {
            "path": http_path,
            "status": status,
            "headers": [[k, v] for k, v in headers],
            "body": base64.b64encode(body).decode(),
        }
    }
    if dns_answer is not None:
        fixture["dns"] = {"answer": base64.b64encode(dns_answer).decode()}
    path.write_text(json.dumps(fixture), encoding="utf-8")


class FixedResource(Resource):
    """One canned response; the headers twisted.web would add are adjusted to match."""

    isLeaf = True

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__()
        self._status = status
        self._headers = headers
        self._body = body

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(self._status)
        request.responseHeaders.removeHeader(b"server")
        for name, value in self._headers:
            request.responseHeaders.setRawHeaders(name, [value])
        return self._body


class QuietSite(Site):
    """A Site without the access log, like the agent's."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


class ReplayResolver(common.ResolverBase):
    """Answers every question with the same records, marked authoritative."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        message = dns.Message()
        message.fromStr(answer)
        for record in [*message.answers, *message.authority, *message.additional]:
            record.auth = bool(message.auth)
        self._records = (message.answers, message.authority, message.additional)

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> defer.Deferred[Any]:
        return defer.succeed(self._records)


class ReplyFactory(DNSServerFactory):
    """
    The stock server factory, except that replies echo the query's RD bit
    as Consul (miekg/dns ``SetReply``) does; twisted.names leaves it clear,
    which would make the baseline's answer differ from the agent's by a bit.
    """

    noisy = False

    def _responseFromMessage(self, message: dns.Message, *args: Any, **kwargs: Any) -> Any:
        response = super()._responseFromMessage(message, *args, **kwargs)
        response.recDes = message.recDes
        return response


class BaselineService(Service):
    """Listens on HTTP and DNS (UDP, TCP) at start, like the agent's endpoints."""

    log = Logger()

    def __init__(self, *, http_port: int, dns_port: int, fixture: dict[str, Any]) -> None:
        http = fixture.get("http", _DEFAULT_HTTP)
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in http["headers"]
            if k.lower() not in ("date", "content-length")
        ]
        root = Resource()
        leaf = FixedResource(http["status"], headers, base64.b64decode(http["body"]))
        # Resource children are keyed by path segment: build /v1/catalog/nodes.
        *parents, last = http["path"].strip("/").split("/")
        node = root
        for segment in parents:
            child = Resource()
            node.putChild(segment.encode(), child)  # type: ignore[arg-type]
            node = child
        node.putChild(last.encode(), leaf)  # type: ignore[arg-type]
        self.site = QuietSite(root)

        answer = fixture.get("dns", {}).get("answer")
        dns_bytes = base64.b64decode(answer) if answer else _default_dns_answer()
        self.dns_factory = ReplyFactory(authorities=[ReplayResolver(dns_bytes)])
        self.dns_protocol = dns.DNSDatagramProtocol(controller=self.dns_factory)
        self.dns_protocol.noisy = False
        self._http_port = http_port
        self._dns_port = dns_port
        self._ports: list[Any] = []  # IListeningPort

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        r: Any = reactor
        self._ports = [
            r.listenUDP(self._dns_port, self.dns_protocol, interface="127.0.0.1"),
            r.listenTCP(self._dns_port, self.dns_factory, interface="127.0.0.1"),
            r.listenTCP(self._http_port, self.site, interface="127.0.0.1"),
        ]
        r.callWhenRunning(self.log.info, READY_LINE)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        ports, self._ports = self._ports, []
        return defer.DeferredList([defer.maybeDeferred(p.stopListening) for p in ports])


def application_from_env() -> Componentized:
    """The ``application`` for ``twistd -y bench/_baseline.tac``."""
    fixture_path = os.environ.get("BENCH_FIXTURE")
    fixture = json.loads(Path(fixture_path).read_text("utf-8")) if fixture_path else {}
    application = Application("bench-baseline")
    BaselineService(
        http_port=int(os.environ["BENCH_HTTP_PORT"]),
        dns_port=int(os.environ["BENCH_DNS_PORT"]),
        fixture=fixture,
    ).setServiceParent(application)
    return application
