# -*- test-case-name: tests.unit.test_build -*-
"""
The HTTP API listener as a service of the agent's tree.

It listens synchronously in ``startService`` so a taken port fails start-up
at once; on stop it closes the port, then closes each open connection,
which lets responses already written (a leave's answer) flush first.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort

from consul_tw._logging import HcLogger
from consul_tw.http.root import QuietSite


class HTTPService(Service):
    def __init__(
        self,
        site: QuietSite,
        *,
        interface: str,
        port: int,
        reactor: Any,
        logger: HcLogger,
        drain_timeout: float = 2.0,
    ) -> None:
        self.site = site
        self._interface = interface
        self._port = port
        self._reactor = reactor
        self._logger = logger
        self._drain_timeout = drain_timeout
        self._listening: IListeningPort | None = None

    @property
    def bound_port(self) -> int:
        return self._listening.getHost().port if self._listening else self._port

    def startService(self) -> None:
        self._listening = self._reactor.listenTCP(self._port, self.site, interface=self._interface)
        super().startService()
        self._logger.info(
            "Started HTTP server", address=f"{self._interface}:{self.bound_port}", network="tcp"
        )

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is None:
            return succeed(None)
        self._logger.info(
            "Stopping server",
            protocol="HTTP",
            address=f"{self._interface}:{listening.getHost().port}",
            network="tcp",
        )
        closed = Deferred.fromCoroutine(self._close(listening))
        return closed

    async def _close(self, listening: IListeningPort) -> None:
        await maybeDeferred(listening.stopListening)
        waits = []
        for channel in list(self.site.open_channels):
            timer = self._reactor.callLater(self._drain_timeout, _abort, channel)
            waits.append(channel.closed.addBoth(lambda r, t=timer: t.active() and t.cancel()))
            # Closes once what has been written (e.g. a leave's answer) is sent.
            channel.transport.loseConnection()
        await DeferredList(waits)


def _abort(channel: Any) -> None:
    if channel.transport is not None:
        channel.transport.abortConnection()
