"""
Outgoing TCP dials recorded by a ``MemoryReactorClock``, completed or
refused by hand: shared by the RPC client's and the Raft transport's tests.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

ServerFor = Callable[[str, int, IPv4Address], Protocol]


def accept_dial(reactor: MemoryReactorClock, pumps: list[IOPump], server_for: ServerFor) -> IOPump:
    """Complete the oldest dial to the protocol ``server_for(host, port, client_address)``."""
    host, port, client_factory, _, _ = reactor.tcpClients.pop(0)
    reactor.connectors.pop(0)
    client_address = IPv4Address("TCP", "10.0.0.2", 40000 + len(pumps))
    server_address = IPv4Address("TCP", host, port)
    client = client_factory.buildProtocol(server_address)
    server = server_for(host, port, client_address)
    pump = connect(
        server,
        FakeTransport(server, True, server_address, client_address),
        client,
        FakeTransport(client, False, client_address, server_address),
        clock=reactor,
    )
    pumps.append(pump)
    return pump


def refuse_dial(reactor: MemoryReactorClock, reason: Exception | None = None) -> None:
    """Fail the oldest dial (connection refused unless told otherwise)."""
    _, _, client_factory, _, _ = reactor.tcpClients.pop(0)
    connector = reactor.connectors.pop(0)
    client_factory.clientConnectionFailed(connector, Failure(reason or ConnectionRefusedError()))


def flush(pumps: list[IOPump]) -> None:
    for pump in pumps:
        pump.flush()
