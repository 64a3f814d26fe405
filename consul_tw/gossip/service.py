# -*- test-case-name: tests.unit.test_build -*-
"""
The gossip pool as a Twisted service: the Serf port's UDP and TCP sockets.

memberlist listens on the same port number over UDP (probes, gossip) and
TCP (push/pull, fallback probes).  This release binds both, so the port is
held and a conflict fails start-up as in Consul, and hands nothing to the
membership yet: every datagram and stream is dropped with a DEBUG line
until the memberlist codec lands (gossip issue).  Inputs are untrusted, and
dropping them is safe by construction.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol

from consul_tw._logging import HcLogger
from consul_tw.gossip.serf import Membership


class _DroppingDatagrams(DatagramProtocol):
    def __init__(self, logger: HcLogger) -> None:
        self._logger = logger

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._logger.debug(
            "memberlist: dropping packet, gossip protocol not enabled",
            size=len(datagram),
            **{"from": f"{addr[0]}:{addr[1]}"},
        )


class _DroppingStream(Protocol):
    def __init__(self, logger: HcLogger) -> None:
        self._logger = logger

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self._logger.debug(
            "memberlist: closing stream, gossip protocol not enabled",
            **{"from": f"{peer.host}:{peer.port}"},
        )
        self.transport.loseConnection()  # type: ignore[union-attr]


class GossipService(Service):
    """Binds one Serf pool's port (UDP + TCP) and runs its membership."""

    def __init__(
        self,
        membership: Membership,
        *,
        interface: str,
        port: int,
        reactor: Any,
        memberlist_logger: HcLogger,
    ) -> None:
        self.membership = membership
        self._interface = interface
        self._port = port
        self._reactor = reactor
        self._logger = memberlist_logger
        self._listening: list[IListeningPort] = []

    @property
    def bound_port(self) -> int:
        return self._listening[0].getHost().port if self._listening else self._port

    def startService(self) -> None:
        udp = self._reactor.listenUDP(
            self._port, _DroppingDatagrams(self._logger), interface=self._interface
        )
        self._listening.append(udp)
        stream_factory = Factory.forProtocol(lambda: _DroppingStream(self._logger))
        stream_factory.noisy = False
        try:
            tcp = self._reactor.listenTCP(
                udp.getHost().port, stream_factory, interface=self._interface
            )
        except Exception:
            udp.stopListening()
            self._listening.clear()
            raise
        self._listening.append(tcp)
        super().startService()
        self.membership.start()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        listening, self._listening = self._listening, []
        return gatherResults([maybeDeferred(p.stopListening) for p in listening])
