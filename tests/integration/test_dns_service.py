"""
DNSService on the real reactor and loopback sockets, queried with dnspython:
the start/stop log lines, UDP and TCP answers, and port conflicts.
"""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.query
import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet import task, threads
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import globalLogPublisher

from consul_tw._logging import HcLogger, render_event
from consul_tw.dns import ConsulAuthority, DNSService
from consul_tw.dns.server import DNSDatagramProtocol
from tests.unit.dns.test_server import populated_catalog

pytestmark = pytest.mark.integration


def make_service(port: int = 0) -> DNSService:
    authority = ConsulAuthority(populated_catalog(3).store, datacenter="dc1", clock=global_reactor)
    return DNSService(
        authority,
        interface="127.0.0.1",
        port=port,
        reactor=global_reactor,
        logger=HcLogger("agent"),
    )


@pytest.fixture
def agent_lines() -> Any:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)

    def lines() -> list[str]:
        found = [
            render_event(e).split(" ", 2)[2].strip()
            for e in events
            if e.get("hclog_name") == "agent"
        ]
        del events[:]
        return found

    yield lines
    globalLogPublisher.removeObserver(events.append)


@pytest_twisted.ensureDeferred
async def test_udp_and_tcp_queries(agent_lines: Any) -> None:
    service = make_service()
    service.startService()
    assert service.running
    udp, tcp = service.udp_port, service.tcp_port
    assert agent_lines() == [
        f"agent: Started DNS server: address=127.0.0.1:{udp} network=udp",
        f"agent: Started DNS server: address=127.0.0.1:{tcp} network=tcp",
    ]
    try:
        for ask, port in ((dns.query.udp, udp), (dns.query.tcp, tcp)):
            query = dns.message.make_query("host.node.consul", "A")
            response = await threads.deferToThread(ask, query, "127.0.0.1", port=port, timeout=5)
            assert dns.flags.to_text(response.flags) == "QR AA RD"
            assert [r.address for r in response.answer[0]] == ["127.0.0.1"]
            assert [r.to_text() for r in response.additional[0]] == ['"consul-network-segment="']
    finally:
        await service.stopService()
    assert agent_lines() == [
        f"agent: Stopping server: protocol=DNS address=127.0.0.1:{tcp} network=tcp",
        f"agent: Stopping server: protocol=DNS address=127.0.0.1:{udp} network=udp",
    ]
    assert not service.running


@pytest_twisted.ensureDeferred
async def test_port_conflict_raises_from_start() -> None:
    first = make_service()
    first.startService()
    try:
        second = make_service(port=first.udp_port or 0)
        with pytest.raises(CannotListenError):
            second.startService()
        assert not second.running
    finally:
        await first.stopService()


@pytest_twisted.ensureDeferred
async def test_tcp_conflict_releases_udp() -> None:
    taken = global_reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    try:
        port = taken.getHost().port
        service = make_service(port=port)
        with pytest.raises(CannotListenError):
            service.startService()
        assert not service.running
        await task.deferLater(global_reactor, 0.01, lambda: None)  # UDP closes on the next turn
        probe = global_reactor.listenUDP(
            port, DNSDatagramProtocol(None, reactor=global_reactor), interface="127.0.0.1"
        )
        await probe.stopListening()
    finally:
        await taken.stopListening()
