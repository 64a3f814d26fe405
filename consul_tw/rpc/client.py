# -*- test-case-name: tests.unit.rpc.test_client -*-
"""
The calling side of the server-RPC port: a pool of one connection per
server address, shared by every call to it.

Calls are pipelined: each is written as soon as its connection is up and
answered whenever the server finishes it, matched by id.  A call made
while its connection is still being dialled waits in the connection's
queue; a lost connection fails its calls and the next call dials again.
Idle connections are closed after ``idle_timeout``.

Every failure is an :class:`RpcError` whose text reads as Consul's:

* the server answered with an error → :class:`RemoteError`,
  ``rpc error making call: <text>`` (``remote`` holds the bare text);
* dialling failed → :class:`ConnectError`,
  ``rpc error: failed to get conn: dial tcp HOST:PORT: connect: connection refused``
  (or ``i/o timeout``, ``no route to host``...);
* no answer within the call's timeout → :class:`CallTimeout`,
  ``rpc error making call: i/o deadline reached``;
* the connection closed under the call → ``rpc error making call: EOF``.

Cancelling a call's Deferred forgets the call (a late answer is dropped).
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
from twisted.internet import error as neterror
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IConnector, IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.rpc.framing import (
    MAX_ID,
    PROTOCOL_RPC,
    FrameDecoder,
    FrameError,
    Request,
    Response,
    encode_frame,
    response_from_wire,
)
from consul_tw.rpc.protocol import HandlerError, set_no_delay, stop_dialling
from consul_tw.server.router import RequestNotSent

#: Consul's connection pool closes streams idle for 2 minutes.
IDLE_TIMEOUT = 120.0


class RpcError(HandlerError):
    """
    A call that did not return a result.  It subclasses HandlerError so that
    a handler forwarding a call (follower → leader) can let it propagate:
    its text is answered to the original caller without an ERROR line.
    """


class RemoteError(RpcError):
    """The server answered with an error; ``remote`` is its text."""

    def __init__(self, remote: str) -> None:
        super().__init__(f"rpc error making call: {remote}")
        self.remote = remote


class ConnectError(RpcError, RequestNotSent):
    """No connection to the server could be made (so the request was not sent)."""


class CallTimeout(RpcError):
    """No answer in time."""


def host_port(host: str, port: int) -> str:
    """Go's ``net.JoinHostPort``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dial_error_text(host: str, port: int, reason: Failure) -> str:
    """Go's wording for a failed dial."""
    if reason.check(neterror.ConnectionRefusedError):
        detail = "connect: connection refused"
    elif reason.check(neterror.TimeoutError, neterror.TCPTimedOutError):
        detail = "i/o timeout"
    elif reason.check(neterror.NoRouteError):
        detail = "connect: no route to host"
    elif reason.check(neterror.DNSLookupError):
        detail = f"lookup {host}: no such host"
    else:
        detail = reason.getErrorMessage()
    return f"rpc error: failed to get conn: dial tcp {host_port(host, port)}: {detail}"


@attrs.define(eq=False)
class _Call:
    id: int
    method: str
    frame: bytes
    deferred: Deferred[Any] = attrs.field(init=False)
    timer: IDelayedCall | None = None
    sent: bool = False


class _ClientConnection(StreamProtocol):
    def __init__(self, peer: _Peer) -> None:
        self._peer = peer
        self._decoder = FrameDecoder()
        self._failed = False
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        set_no_delay(self.transport)
        self.transport.write(bytes([PROTOCOL_RPC]))
        self._peer.connected(self)

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        self._decoder.feed(data)
        try:
            for value in self._decoder.frames():
                self._peer.response_received(response_from_wire(value))
        except FrameError as e:
            self._failed = True
            self._peer.malformed(str(e))
            self.abort()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._peer.lost(self)
        self.closed.callback(None)


class _PeerFactory(ClientFactory):
    noisy = False

    def __init__(self, peer: _Peer) -> None:
        self._peer = peer

    def buildProtocol(self, addr: Any) -> _ClientConnection | None:  # type: ignore[override]
        if self._peer.state != "connecting":
            return None  # timed out or closed meanwhile: refuse the late connection
        return _ClientConnection(self._peer)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._peer.connect_failed(reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        pass  # _ClientConnection.connectionLost handles it


@attrs.define(eq=False)
class _Peer:
    """One pooled connection to ``host:port``: connecting, connected, then gone."""

    client: RpcClient
    host: str
    port: int
    state: str = "connecting"
    calls: dict[int, _Call] = attrs.field(factory=dict)
    connection: _ClientConnection | None = None
    connector: IConnector | None = None
    timer: IDelayedCall | None = None
    last_activity: float = 0.0

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    # -- calls

    def submit(self, call: _Call) -> None:
        self.calls[call.id] = call
        if self.state == "connected":
            self._send(call)

    def forget(self, call: _Call) -> None:
        self.calls.pop(call.id, None)

    def _send(self, call: _Call) -> None:
        assert self.connection is not None
        call.sent = True
        self.connection.write(call.frame)
        self.last_activity = self.client.clock.seconds()

    def response_received(self, response: Response) -> None:
        self.last_activity = self.client.clock.seconds()
        call = self.calls.pop(response.id, None)
        if call is None:
            self.client.logger.debug(
                "dropping RPC response for a forgotten call", id=response.id, server=self.address
            )
            return
        if response.error is not None:
            self.client.finish(call, Failure(RemoteError(response.error)))
        else:
            self.client.finish(call, response.result)

    # -- connection lifecycle

    def connect(self) -> None:
        clock = self.client.clock
        self.timer = clock.callLater(self.client.connect_timeout, self._connect_timed_out)
        try:
            bind = self.client.bind_address
            self.connector = self.client.reactor.connectTCP(
                self.host,
                self.port,
                _PeerFactory(self),
                timeout=self.client.connect_timeout,
                bindAddress=(bind, 0) if bind else None,
            )
        except Exception as e:  # a host connectTCP cannot even try
            self.connect_failed(Failure(e))

    def connected(self, connection: _ClientConnection) -> None:
        if self.state != "connecting":  # closed or timed out meanwhile
            connection.abort()
            return
        self._cancel_timer()
        self.state = "connected"
        self.connection = connection
        self.last_activity = self.client.clock.seconds()
        for call in list(self.calls.values()):
            self._send(call)
        self._arm_idle(self.client.idle_timeout)

    def connect_failed(self, reason: Failure) -> None:
        if self.state != "connecting":
            return
        self._fail_all(ConnectError(dial_error_text(self.host, self.port, reason)))

    def _connect_timed_out(self) -> None:
        self.timer = None
        if self.state != "connecting":
            return
        stop_dialling(self.connector)
        self.connect_failed(Failure(neterror.TimeoutError()))

    def malformed(self, text: str) -> None:
        self.client.logger.warn("malformed RPC response", error=text, server=self.address)
        self._fail_all(RpcError(f"rpc error making call: malformed response: {text}"))

    def lost(self, connection: _ClientConnection) -> None:
        if self.connection is connection and self.state == "connected":
            self._fail_all(RpcError("rpc error making call: EOF"))

    def _fail_all(self, error: RpcError) -> None:
        self._leave_pool()
        calls, self.calls = list(self.calls.values()), {}
        for call in calls:
            self.client.finish(call, Failure(error))

    def _leave_pool(self) -> None:
        self.state = "gone"
        self._cancel_timer()
        self.client.forget_peer(self)

    def shutdown(self) -> Deferred[None]:
        """Cancel every call and drop the connection (for :meth:`RpcClient.close`)."""
        was = self.state
        self._leave_pool()
        for call in list(self.calls.values()):
            call.deferred.cancel()
        self.calls.clear()
        if was == "connecting" and self.connector is not None:
            try:
                self.connector.stopConnecting()
            except neterror.NotConnectingError:
                pass
        if was == "connected" and self.connection is not None:
            self.connection.abort()
            return self.connection.closed
        return succeed(None)

    # -- idle timeout

    def _arm_idle(self, delay: float) -> None:
        self.timer = self.client.clock.callLater(delay, self._idle_check)

    def _idle_check(self) -> None:
        self.timer = None
        idle_for = self.client.clock.seconds() - self.last_activity
        if self.calls or idle_for < self.client.idle_timeout:
            self._arm_idle(self.client.idle_timeout - (0.0 if self.calls else idle_for))
            return
        self.client.logger.debug("closing idle RPC connection", server=self.address)
        self._leave_pool()
        if self.connection is not None:
            self.connection.close()

    def _cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


@attrs.define(eq=False)
class RpcClient:
    """
    Calls methods on servers' RPC ports.  ``request_timeout`` bounds each
    call from the moment it is made (dialling included); ``call(...,
    timeout=...)`` overrides it, e.g. for blocking queries.
    """

    reactor: IReactorTCP
    clock: IReactorTime
    connect_timeout: float
    request_timeout: float
    logger: HcLogger
    idle_timeout: float = IDLE_TIMEOUT
    #: Local address to dial from (a server dials from its bind address); None: the OS picks.
    bind_address: str | None = None
    _peers: dict[tuple[str, int], _Peer] = attrs.field(factory=dict, init=False)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def call(
        self, host: str, port: int, method: str, args: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        """Call ``method`` on the server at ``host:port``; the Deferred fires with its result."""
        if self._closed:
            return fail(RpcError("rpc error: failed to get conn: rpc client is closed"))
        call_id = next(self._ids) % MAX_ID
        try:
            frame = encode_frame(Request(call_id, method, args).to_wire())
        except FrameError as e:
            return fail(RpcError(f"rpc error: {e}"))
        call = _Call(call_id, method, frame)
        peer = self._peers.get((host, port))
        if peer is None:
            peer = _Peer(self, host, port)
            self._peers[(host, port)] = peer
            fresh = True
        else:
            fresh = False

        def cancel(_: Deferred[Any]) -> None:
            self._stop_timer(call)
            peer.forget(call)

        call.deferred = Deferred(cancel)
        limit = self.request_timeout if timeout is None else timeout
        call.timer = self.clock.callLater(limit, self._timed_out, peer, call)
        peer.submit(call)
        if fresh:
            peer.connect()
        return call.deferred

    def close(self) -> Deferred[None]:
        """Close every connection and cancel every pending call; later calls fail."""
        self._closed = True
        peers, self._peers = list(self._peers.values()), {}
        done = [peer.shutdown() for peer in peers]
        return gatherResults(done).addCallback(lambda _: None)

    @property
    def connections(self) -> list[str]:
        """Addresses with a pooled connection (connected or being dialled)."""
        return sorted(peer.address for peer in self._peers.values())

    # -- for _Peer

    def finish(self, call: _Call, outcome: Any) -> None:
        self._stop_timer(call)
        if call.deferred.called:
            return
        if isinstance(outcome, Failure):
            call.deferred.errback(outcome)
        else:
            call.deferred.callback(outcome)

    def forget_peer(self, peer: _Peer) -> None:
        if self._peers.get((peer.host, peer.port)) is peer:
            del self._peers[(peer.host, peer.port)]

    def _timed_out(self, peer: _Peer, call: _Call) -> None:
        call.timer = None
        peer.forget(call)
        self.finish(call, Failure(CallTimeout("rpc error making call: i/o deadline reached")))

    @staticmethod
    def _stop_timer(call: _Call) -> None:
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        call.timer = None
