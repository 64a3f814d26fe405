# -*- test-case-name: tests.unit.test_build -*-
"""
A memory reactor that also records UDP listeners.

Twisted's ``MemoryReactorClock`` records TCP listeners and is a ``Clock``,
but has no ``listenUDP``; the agent binds UDP for DNS and gossip, so whole
agents are built on this in unit tests.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock


@attrs.define(eq=False)
class FakeUDPPort:
    port: int
    protocol: Any
    interface: str
    listening: bool = True
    written: list[tuple[bytes, Any]] = attrs.field(factory=list)

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port)

    def stopListening(self) -> Any:
        self.listening = False
        self.protocol.doStop()
        return succeed(None)

    def write(self, data: bytes, addr: Any = None) -> None:
        self.written.append((data, addr))


class MemoryReactorWithUDP(MemoryReactorClock):
    def __init__(self, *, taken_ports: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.udpPorts: dict[int, FakeUDPPort] = {}
        self.taken_ports = set(taken_ports)

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUDPPort:
        if port in self.taken_ports:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        fake = FakeUDPPort(port, protocol, interface)
        self.udpPorts[port] = fake
        protocol.makeConnection(fake)
        return fake

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if port in self.taken_ports:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        return super().listenTCP(port, factory, backlog, interface)
