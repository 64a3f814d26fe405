# -*- test-case-name: tests.unit.rpc.test_protocol -*-
"""
The server side of the server-RPC port: one Twisted protocol per
connection, a factory, and the RPC method registry.

A connection's first byte picks a *channel* registered for it on the
factory (:data:`~consul_tw.rpc.framing.PROTOCOL_RPC` serves
:class:`RpcDispatcher` calls; :data:`~consul_tw.rpc.framing.PROTOCOL_RAFT`
is plugged in by :mod:`consul_tw.rpc.raft_channel`).  The connection then
cuts the stream into frames and hands each decoded value to its channel;
the channel answers through :class:`Connection`.  Layers:

* :mod:`consul_tw.rpc.framing` -- bytes ↔ values (pure);
* :class:`_ServerConnection` -- the wire: protocol byte, frames, idle
  timeout, junk handling, logging of the peer;
* channels -- what the frames mean (:class:`_RpcChannel` here);
* :class:`RpcDispatcher` -- the domain: method name → handler.

Peers are untrusted.  Whatever is not well formed (unknown protocol byte,
bad frame, request without an id, duplicate id) closes the connection
with one WARN line; a handler failure goes back to the caller as the
error text (``rpc: can't find method X``, or the exception's message),
never a traceback, and only exceptions other than :class:`HandlerError`
log one ERROR line.  Losing a connection cancels its calls in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet import error as neterror
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.internet.protocol import ServerFactory
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.rpc.framing import (
    PROTOCOL_RAFT,
    PROTOCOL_RPC,
    FrameDecoder,
    FrameError,
    Response,
    encode_frame,
    request_from_wire,
)

#: Close a connection that has sent no protocol byte after this long (Consul's
#: ``rpc_handshake_timeout`` default).
HANDSHAKE_TIMEOUT = 5.0
#: Close a connection with no traffic and no call in flight after this long;
#: longer than the client pool's idle timeout, so the client normally closes first.
IDLE_TIMEOUT = 300.0
#: Calls one connection may have in flight; more are answered with an error.
MAX_IN_FLIGHT = 1024

Handler = Callable[[Any], Any]
"""An RPC method: ``args`` in, a msgpack-able result (or a Deferred of one) out."""


class HandlerError(Exception):
    """
    An expected failure of an RPC method ("No cluster leader", "Permission
    denied"): its text goes back to the caller and nothing is logged.
    Any other exception is answered with its message too, but logs an ERROR.
    """


# -- the domain: methods ---------------------------------------------------------


@attrs.define
class RpcDispatcher:
    """Method name → handler, as Consul's ``Catalog.Register``, ``Status.Leader``..."""

    _handlers: dict[str, Handler] = attrs.field(factory=dict, init=False)

    def register(self, method: str, handler: Handler) -> None:
        if method in self._handlers:
            raise ValueError(f"rpc: method {method} already registered")
        self._handlers[method] = handler

    @property
    def methods(self) -> list[str]:
        return sorted(self._handlers)

    def dispatch(self, method: str, args: Any) -> Deferred[Any]:
        """Run the handler (sync or Deferred); unknown methods fail with HandlerError."""
        handler = self._handlers.get(method)
        if handler is None:
            return fail(HandlerError(f"rpc: can't find method {method}"))
        return maybeDeferred(handler, args)


# -- what channels see -----------------------------------------------------------


class Connection(Protocol):
    """One accepted connection, as its channel sees it."""

    @property
    def peer(self) -> str:
        """``host:port`` of the remote end, for log lines."""
        ...

    def send(self, value: Any) -> None:
        """Write one frame (FrameError if ``value`` cannot be encoded or is too large)."""
        ...

    def close(self) -> None: ...


class Channel(Protocol):
    """What a connection's frames are delivered to, once its protocol byte is known."""

    def frame_received(self, value: Any) -> None:
        """One decoded frame; raise FrameError to drop the connection as junk."""
        ...

    def busy(self) -> bool:
        """True while the connection must not be closed as idle."""
        ...

    def connection_lost(self) -> None: ...


ChannelFactory = Callable[[Connection], Channel]
"""A handler registered for one protocol byte: builds the channel of each connection."""


def format_address(address: IAddress | None) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return "unknown"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# -- the RPC channel -------------------------------------------------------------


@attrs.define(eq=False)
class _RpcChannel:
    """Pipelined calls: each request runs at once, each answer goes out when ready."""

    dispatcher: RpcDispatcher
    connection: Connection
    logger: HcLogger
    max_in_flight: int = MAX_IN_FLIGHT
    _in_flight: dict[int, Deferred[Any]] = attrs.field(factory=dict, init=False)
    _lost: bool = attrs.field(default=False, init=False)

    def frame_received(self, value: Any) -> None:
        request = request_from_wire(value)
        if request.id in self._in_flight:
            raise FrameError(f"duplicate request id {request.id}")
        if len(self._in_flight) >= self.max_in_flight:
            self._answer(Response(request.id, error="rpc: too many calls in flight"))
            return
        running = self.dispatcher.dispatch(request.method, request.args)
        self._in_flight[request.id] = running
        running.addCallbacks(
            self._succeeded,
            self._failed,
            callbackArgs=(request.id, request.method),
            errbackArgs=(request.id, request.method),
        )

    def busy(self) -> bool:
        return bool(self._in_flight)

    def connection_lost(self) -> None:
        self._lost = True
        for running in list(self._in_flight.values()):
            running.cancel()
        self._in_flight.clear()

    def _succeeded(self, result: Any, call_id: int, method: str) -> None:
        if self._in_flight.pop(call_id, None) is None or self._lost:
            return
        try:
            self.connection.send(Response(call_id, result=result).to_wire())
        except FrameError as e:
            self.logger.error(
                "failed to encode RPC response",
                method=method,
                error=str(e),
                conn=f"from={self.connection.peer}",
            )
            self._answer(Response(call_id, error=f"rpc: can't encode response: {e}"))

    def _failed(self, failure: Failure, call_id: int, method: str) -> None:
        if self._in_flight.pop(call_id, None) is None or self._lost:
            return
        error = failure.value
        text = str(error) or type(error).__name__
        if not isinstance(error, HandlerError):
            self.logger.error(
                "RPC handler failed",
                method=method,
                error=repr(error),
                conn=f"from={self.connection.peer}",
            )
        self._answer(Response(call_id, error=text))

    def _answer(self, response: Response) -> None:
        try:
            self.connection.send(response.to_wire())
        except FrameError:  # an error text is always encodable; shorten it anyway
            self.connection.send(Response(response.id, error="rpc: error text too large").to_wire())


def rpc_handler(
    dispatcher: RpcDispatcher, logger: HcLogger, *, max_in_flight: int = MAX_IN_FLIGHT
) -> ChannelFactory:
    """The channel factory serving ``dispatcher`` on :data:`PROTOCOL_RPC` connections."""

    def build(connection: Connection) -> Channel:
        return _RpcChannel(dispatcher, connection, logger, max_in_flight)

    return build


# -- the wire ----------------------------------------------------------------------


class _ServerConnection(StreamProtocol):
    """One accepted connection: protocol byte, then frames to the channel."""

    def __init__(self, factory: RpcServerFactory) -> None:
        self._factory = factory
        self._decoder = FrameDecoder()
        self._channel: Channel | None = None
        self._closing = False
        self._timer: IDelayedCall | None = None
        self._last_activity = 0.0
        self.peer = "unknown"

    # -- Connection, for the channel

    def send(self, value: Any) -> None:
        data = encode_frame(value)
        if self._closing or self.transport is None:
            return
        self.transport.write(data)
        self._last_activity = self._factory.clock.seconds()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.loseConnection()

    # -- Twisted

    def connectionMade(self) -> None:
        assert self.transport is not None
        set_no_delay(self.transport)
        self.peer = format_address(self.transport.getPeer())
        self._factory.connections.add(self)
        self._last_activity = self._factory.clock.seconds()
        self._timer = self._factory.clock.callLater(
            self._factory.handshake_timeout, self._timed_out
        )

    def dataReceived(self, data: bytes) -> None:
        if self._closing or not data:
            return
        self._last_activity = self._factory.clock.seconds()
        if self._channel is None:
            build = self._factory.handlers.get(data[0])
            if build is None:
                self._drop("unrecognized RPC byte", byte=data[0])
                return
            self._channel = build(self)
            data = data[1:]
        self._decoder.feed(data)
        try:
            for value in self._decoder.frames():
                if self._closing:
                    return
                self._channel.frame_received(value)
        except FrameError as e:
            self._drop("closing connection after malformed input", error=str(e))
        except Exception as e:  # a bug in a channel must not take the listener down
            self._factory.logger.error(
                "failed to handle frame", error=repr(e), conn=f"from={self.peer}"
            )
            self.close()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._factory.connections.discard(self)
        if self._decoder.buffered and not self._closing:
            self._factory.logger.debug(
                "connection closed in the middle of a frame", conn=f"from={self.peer}"
            )
        self._closing = True
        if self._channel is not None:
            self._channel.connection_lost()

    # -- internals

    def _drop(self, message: str, **pairs: Any) -> None:
        self._factory.logger.warn(message, **pairs, conn=f"from={self.peer}")
        self.close()

    def _timed_out(self) -> None:
        """The handshake deadline, then (re-armed) the idle deadline."""
        self._timer = None
        clock = self._factory.clock
        if self._channel is None:
            self._factory.logger.debug(
                "closing connection: no protocol byte received", conn=f"from={self.peer}"
            )
            self.close()
            return
        idle_for = clock.seconds() - self._last_activity
        if self._channel.busy() or idle_for < self._factory.idle_timeout:
            remaining = self._factory.idle_timeout - (0.0 if self._channel.busy() else idle_for)
            self._timer = clock.callLater(remaining, self._timed_out)
            return
        self._factory.logger.debug("closing idle connection", conn=f"from={self.peer}")
        self.close()


class RpcServerFactory(ServerFactory):
    """
    Builds one :class:`_ServerConnection` per accepted connection and holds
    the channel factory registered for each protocol byte.
    """

    noisy = False

    def __init__(
        self,
        *,
        clock: IReactorTime,
        logger: HcLogger,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.clock = clock
        self.logger = logger
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.handlers: dict[int, ChannelFactory] = {}
        self.connections: set[_ServerConnection] = set()

    def register(self, protocol_byte: int, handler: ChannelFactory) -> None:
        if not 0 <= protocol_byte <= 255:
            raise ValueError(f"protocol byte out of range: {protocol_byte}")
        if protocol_byte in self.handlers:
            raise ValueError(f"protocol byte {protocol_byte:#04x} already registered")
        self.handlers[protocol_byte] = handler

    def buildProtocol(self, addr: IAddress | None) -> _ServerConnection:
        return _ServerConnection(self)

    def disconnect_all(self) -> None:
        """Close every open connection (when the agent stops serving)."""
        for connection in list(self.connections):
            connection.close()


def rpc_server_factory(
    dispatcher: RpcDispatcher,
    *,
    raft_handler: ChannelFactory | None = None,
    clock: IReactorTime,
    logger: HcLogger,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> RpcServerFactory:
    """
    The factory for the server RPC port: ``dispatcher`` on 0x01 and, when
    given, ``raft_handler`` (see :func:`consul_tw.rpc.raft_channel.raft_handler`)
    on 0x02.  Any other first byte closes the connection.
    """
    factory = RpcServerFactory(
        clock=clock, logger=logger, handshake_timeout=handshake_timeout, idle_timeout=idle_timeout
    )
    factory.register(PROTOCOL_RPC, rpc_handler(dispatcher, logger, max_in_flight=max_in_flight))
    if raft_handler is not None:
        factory.register(PROTOCOL_RAFT, raft_handler)
    return factory


__all__ = [
    "Channel",
    "ChannelFactory",
    "Connection",
    "Handler",
    "HandlerError",
    "RpcDispatcher",
    "RpcServerFactory",
    "rpc_handler",
    "rpc_server_factory",
]


def set_no_delay(transport: object) -> None:
    """
    Small frames go out at once (TCP_NODELAY).  Raft connections are one-way,
    so without it Nagle's algorithm holds each frame for the peer's delayed
    ACK -- tens of milliseconds on every write's round trip.
    """
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        try:
            setter(True)
        except OSError:
            pass


def stop_dialling(connector: IConnector | None) -> None:
    """Give up a connection attempt that timed out (if it is still being made)."""
    if connector is None:
        return
    try:
        connector.stopConnecting()
    except neterror.NotConnectingError:
        pass
