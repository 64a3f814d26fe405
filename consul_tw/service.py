# -*- test-case-name: tests.unit.test_build -*-
"""
The agent's service tree and its start/stop story.

``AgentService`` is a MultiService whose children are the actors, added in
start order: serf LAN, serf WAN, Raft, the server RPC listener, DNS and
HTTP.  Start-up mirrors ``consul agent``: start everything, print the
banner (which releases the buffered log), then ``==> Consul agent
running!`` once the reactor runs.  A port that cannot be bound ends the
process with ``==> Error starting agent: ...`` and exit code 1.

Stopping has two halves, as in Consul: the *server* half (gossip, Raft,
RPC: "shutting down server") and the *endpoints* (DNS, HTTP: "Stopping
server ..."), so that ``PUT /v1/agent/leave`` can shut the server down and
still answer its caller before the endpoints close.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import CannotListenError

from consul_tw._logging import console
from consul_tw.agent import Agent
from consul_tw.banner import banner_lines
from consul_tw.raft.messages import Server
from consul_tw.raft.node import RaftNode

_SIGNAL_NAMES = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminated"}


class RaftService(Service):
    """
    Runs a Raft node: bootstraps a lone server when asked, starts and stops
    it, and around it whatever shares its lifetime (bootstrap-expect on
    start; the transport and the storage, closed after the node stopped).
    """

    def __init__(
        self,
        node: RaftNode,
        *,
        bootstrap_servers: tuple[Server, ...] = (),
        on_start: Sequence[Callable[[], object]] = (),
        on_stop: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.node = node
        self._bootstrap = bootstrap_servers
        self._on_start = on_start
        self._on_stop = on_stop

    def startService(self) -> None:
        super().startService()
        if self._bootstrap:
            self.node.bootstrap(self._bootstrap)
        self.node.start()
        for callback in self._on_start:
            callback()

    def stopService(self) -> Deferred[None]:
        super().stopService()

        def close(_: object) -> Deferred[None]:
            closing = [maybeDeferred(callback) for callback in self._on_stop]
            return DeferredList(closing).addCallback(lambda _: None)

        return self.node.stop().addCallback(close)


class AgentService(MultiService):
    def __init__(
        self,
        agent: Agent,
        *,
        reactor: Any,
        server_side: list[IService],
        endpoints: list[IService],
        install_signal_handlers: bool = False,
        write_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.agent = agent
        self._reactor = reactor
        self._server_side = server_side
        self._endpoints = endpoints
        self._install_signals = install_signal_handlers
        self._write_error = write_error or _write_stderr
        self._exit_code: int | None = 0
        self._signalled = False
        for child in [*server_side, *endpoints]:
            child.setServiceParent(self)
        agent.shutdown_server = self.stop_server_side
        agent.request_exit = self.exit

    # -- start -------------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        started: list[IService] = []
        try:
            for child in self:
                child.startService()
                started.append(child)
        except CannotListenError as e:
            for child in reversed(started):
                child.stopService()
            self.running = 0
            self._write_error(f"==> Error starting agent: {_listen_error(e)}")
            raise SystemExit(1) from None
        console(*banner_lines(self.agent.config))
        if self.agent.sync is not None:
            self.agent.sync.start(sync_now=not self.agent.config.server)
        self._reactor.callWhenRunning(self._running)

    def _running(self) -> None:
        console("==> Consul agent running!")
        if self._install_signals:
            for signum in _SIGNAL_NAMES:
                previous = signal.getsignal(signum)
                signal.signal(signum, self._signal_handler(signum, previous))

    # -- stop ----------------------------------------------------------------

    def stop_server_side(self) -> Deferred[None]:
        """
        Stop RPC, gossip and Raft (the reverse of their start), leaving DNS
        and HTTP up; ``Agent.shutdown`` calls this once.
        """
        stopping = [maybeDeferred(s.stopService) for s in reversed(self._server_side)]
        return DeferredList(stopping).addCallback(lambda _: None)

    def exit(self, code: int) -> None:
        """
        End the process with ``code``: stop the reactor, which stops this
        service.  twistd itself always exits 0 once its reactor stops, so
        when this service owns the process, a non-zero code ends it right
        after the shutdown (output is flushed line by line already).
        """
        self._exit_code = code
        if code and self._install_signals:
            self._reactor.addSystemEventTrigger("after", "shutdown", _exit_now, code)
        self._reactor.callLater(0, self._reactor.stop)

    def stopService(self) -> Deferred[None]:
        """
        The reactor is stopping (leave finished, or a signal): make sure the
        server side is down, then close the endpoints (DNS, then HTTP, as
        Consul's log shows).
        """
        Service.stopService(self)
        waiting = self.agent.shutdown()

        def endpoints(_: object) -> Deferred[Any]:
            stopping = [maybeDeferred(s.stopService) for s in self._endpoints]
            self.agent.logger.info("Waiting for endpoints to shut down")
            return DeferredList(stopping)

        def done(_: object) -> None:
            self.agent.logger.info("Endpoints down")
            if self._exit_code is not None:
                self.agent.logger.info("Exit code", code=self._exit_code)

        return waiting.addCallback(endpoints).addCallback(done)

    def _signal_handler(self, signum: int, previous: Any) -> Callable[[int, Any], None]:
        """
        Consul's server defaults: neither SIGINT (skip_leave_on_interrupt)
        nor SIGTERM (leave_on_terminate=false) leaves the cluster; the
        process stops and the others will see a failure.  The reactor's own
        handler then stops the reactor, and twistd ends the process by the
        same signal.
        """

        config = self.agent.config
        graceful = (
            not config.skip_leave_on_interrupt
            if signum == signal.SIGINT
            else config.leave_on_terminate
        )

        def handler(number: int, frame: Any) -> None:
            if graceful and not self._signalled:
                self._signalled = True
                self._reactor.callFromThread(self._graceful_exit, number)
                return
            self._reactor.callFromThread(self._log_signal, number, graceful)
            self._exit_code = None  # twistd re-raises the signal; no exit code line
            if callable(previous):
                previous(number, frame)

        return handler

    def _log_signal(self, number: int, graceful: bool) -> None:
        log = self.agent.logger
        log.info("Caught", signal=_SIGNAL_NAMES.get(number, str(number)))
        if not graceful:
            log.info("Graceful shutdown disabled. Exiting")

    def _graceful_exit(self, number: int) -> None:
        """A client's default on SIGINT/SIGTERM: leave the cluster, then exit 0."""
        log = self.agent.logger
        log.info("Caught", signal=_SIGNAL_NAMES.get(number, str(number)))
        log.info("Gracefully shutting down agent...")

        def left(_: object) -> None:
            log.info("Graceful exit completed")
            self.agent.leave_answered()

        self.agent.leave().addCallback(left)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(code)


def _write_stderr(line: str) -> None:
    """
    The real standard error: twistd has redirected ``sys.stderr`` into the
    log by now, and the log is held back until a banner that will never come.
    """
    stream = sys.__stderr__ or sys.stderr
    stream.write(line + "\n")
    stream.flush()


def _listen_error(error: CannotListenError) -> str:
    """Go's wording for a failed bind: ``listen 127.0.0.1:8500: bind: address already in use``."""
    reason = error.socketError
    text = getattr(reason, "strerror", None) or str(reason)
    return f"listen {error.interface or '0.0.0.0'}:{error.port}: bind: {text.lower()}"
