# -*- test-case-name: tests.unit.test_build -*-
"""
The server RPC port (8300): listener only, for now.

Consul multiplexes Raft and forwarded RPCs on this port, selected by the
first byte of a connection.  Both arrive with the multi-server issues; until
then a server holds the port (so conflicts fail at start, and peers see a
closed-but-present port) and closes every connection after a DEBUG line.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol

from consul_tw._logging import HcLogger


class _ClosingRPC(Protocol):
    def __init__(self, logger: HcLogger) -> None:
        self._logger = logger

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self._logger.debug(
            "rpc: closing connection, server RPC not enabled",
            conn=f"from={peer.host}:{peer.port}",
        )
        self.transport.loseConnection()  # type: ignore[union-attr]


def rpc_factory(logger: HcLogger) -> Factory:
    factory = Factory.forProtocol(lambda: _ClosingRPC(logger))
    factory.noisy = False
    return factory
