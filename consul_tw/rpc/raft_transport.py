# -*- test-case-name: tests.unit.rpc.test_raft_transport -*-
"""
The sending end of Raft traffic: one outbound connection per peer address.

Raft messages are one-way (see :mod:`consul_tw.rpc.raft_channel`): a
connection to a peer's server RPC port opens with the byte ``0x02`` and
then carries frames, each one message, and nothing ever comes back.  So
:meth:`RaftTransport.send` is fire-and-forget and never raises: Raft
already tolerates lost messages (it resends on the next heartbeat or
election), and what it must not tolerate is a dead or slow peer costing
the sender memory, CPU or log lines.  Hence:

* A connection is dialled on the first send to an address; messages sent
  while it is being dialled wait in a queue bounded in messages and bytes,
  which drops its *oldest* message when full (a newer heartbeat or
  AppendEntries supersedes an older one).  The same queue holds messages
  while the connection's send buffer is full (Twisted's producer
  back-pressure), so a stalled peer is bounded too.
* A failed dial or a lost connection drops what was queued; the next send
  dials again, but not before a backoff (100 ms, doubling to 2 s; none after
  losing a connection that had stayed up that long) -- sends during the
  backoff are dropped, so a dead peer costs one dial per backoff period,
  without any timer running.
* Logging follows state changes, never messages: one WARN "failed to
  contact Raft peer" when a peer becomes unreachable, DEBUG lines when a
  connection comes up or goes away; repeated failures stay silent.
* :meth:`RaftTransport.close` (shutdown) flushes what is written, closes
  every connection and leaves no timer behind; later sends are dropped.

Outgoing connections may be bound to a local source address
(``bind_address``), so that a test proxy on loopback can tell servers apart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet import error as neterror
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IConnector, IDelayedCall, IPushProducer
from twisted.internet.protocol import ClientFactory
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from consul_tw._logging import HcLogger
from consul_tw.raft.messages import Message
from consul_tw.rpc.client import dial_error_text
from consul_tw.rpc.framing import PROTOCOL_RAFT, FrameError, encode_frame
from consul_tw.rpc.protocol import set_no_delay, stop_dialling
from consul_tw.rpc.raft_channel import raft_receiver
from consul_tw.rpc.raft_codec import encode_message

#: Give up dialling a peer after this long (hashicorp/raft's network transport uses 10 s).
CONNECT_TIMEOUT = 10.0
#: First wait after a failed dial or lost connection before dialling again...
BACKOFF_INITIAL = 0.1
#: ... doubling on each failure up to this.
BACKOFF_MAX = 2.0
#: Most messages waiting for one peer's connection; older ones are dropped first.
MAX_QUEUE_MESSAGES = 1024
#: Most bytes waiting for one peer's connection (two maximal frames).
MAX_QUEUE_BYTES = 16 * 1024 * 1024
#: How long :meth:`RaftTransport.close` lets a connection flush before aborting it.
CLOSE_TIMEOUT = 1.0

_DIAL_PREFIX = "rpc error: failed to get conn: "


class TcpClock(Protocol):
    """What the transport needs of a reactor: dialling and time (both in Twisted's reactor)."""

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: ClientFactory,
        timeout: float = ...,
        bindAddress: tuple[str, int] | None = ...,
    ) -> IConnector: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> IDelayedCall: ...

    def seconds(self) -> float: ...


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as a host and a port; ValueError if malformed."""
    if not isinstance(address, str):
        raise ValueError(f"address must be a string, not {type(address).__name__}")
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"address {address}: too many colons")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"address {address}: missing host or port")
    return host, int(port_text)


def _loss_text(reason: Failure | None) -> str:
    if reason is None or reason.check(neterror.ConnectionDone):
        return "EOF"
    if reason.check(neterror.ConnectionLost):
        return "connection reset by peer"
    return reason.getErrorMessage()


@implementer(IPushProducer)
class _RaftConnection(StreamProtocol):
    """
    One outbound Raft connection.  It registers itself as the transport's
    producer only to hear when the send buffer is full (``pauseProducing``)
    and drained again (``resumeProducing``).
    """

    def __init__(self, peer: _Peer) -> None:
        self._peer = peer
        self.closed: Deferred[None] = Deferred()
        self.abort_timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        set_no_delay(self.transport)
        self.transport.write(bytes([PROTOCOL_RAFT]))
        self._peer.connected(self)

    def dataReceived(self, data: bytes) -> None:
        pass  # the channel is one-way: whatever a peer writes back is ignored

    def write(self, frames: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writeSequence(frames)

    def push(self) -> None:
        """
        Hand what is buffered to the kernel now rather than at the reactor's
        next write pass: the leader does this before its own fsync, so the
        followers store the entries in parallel with it.
        """
        do_write = getattr(self.transport, "doWrite", None)
        if do_write is not None and getattr(self.transport, "connected", False):
            try:
                do_write()
            except OSError:
                pass  # the reactor's own write pass reports the failure

    def close(self, timeout: float) -> None:
        """Flush and close; abort after ``timeout`` if the peer does not read."""
        if self.transport is None:
            return
        self.transport.loseConnection()
        self.abort_timer = self._peer.transport.clock.callLater(timeout, self.abort)

    def abort(self) -> None:
        self.abort_timer = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.abort_timer is not None and self.abort_timer.active():
            self.abort_timer.cancel()
        self.abort_timer = None
        self._peer.lost(self, reason)
        self.closed.callback(None)

    # -- IPushProducer

    def pauseProducing(self) -> None:
        self._peer.paused = True

    def resumeProducing(self) -> None:
        self._peer.resume(self)

    def stopProducing(self) -> None:
        pass  # connectionLost follows


class _DialFactory(ClientFactory):
    """One dial attempt; reports from an attempt the peer has given up on are ignored."""

    noisy = False

    def __init__(self, peer: _Peer) -> None:
        self._peer = peer

    def buildProtocol(self, addr: Any) -> _RaftConnection | None:  # type: ignore[override]
        if self._peer.dial is not self or self._peer.state != "connecting":
            return None  # timed out, disconnected or closed meanwhile: refuse it
        return _RaftConnection(self._peer)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        if self._peer.dial is self:
            self._peer.connect_failed(reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        pass  # _RaftConnection.connectionLost handles it


@attrs.define(eq=False)
class _Peer:
    """
    The connection to one address: ``idle`` (none; maybe backing off),
    ``connecting``, ``connected``, then ``gone`` once disconnected or closed.
    """

    transport: RaftTransport
    address: str
    host: str
    port: int
    state: str = "idle"
    queue: deque[bytes] = attrs.field(factory=deque)
    queued_bytes: int = 0
    connection: _RaftConnection | None = None
    dial: _DialFactory | None = None
    connector: IConnector | None = None
    timer: IDelayedCall | None = None
    #: The send buffer is full: queue instead of writing.
    paused: bool = False
    #: Consecutive failures (dials, or connections lost within backoff_max): the backoff exponent.
    failures: int = 0
    retry_at: float = 0.0
    connected_at: float = 0.0
    #: A WARN has been logged for the current outage.
    reported: bool = False
    #: The queue overflowed since it was last emptied (logged once per episode).
    overflowing: bool = False

    # -- messages

    def send(self, frame: bytes) -> None:
        if self.state == "connected" and not self.paused:
            assert self.connection is not None
            self.connection.write([frame])
            return
        if self.state == "idle":
            if self.transport.clock.seconds() < self.retry_at:
                self.transport.dropped += 1
                return
            self._enqueue(frame)
            self._connect()
            return
        self._enqueue(frame)

    def _enqueue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        limits = self.transport
        while len(self.queue) > 1 and (
            len(self.queue) > limits.max_queue_messages
            or self.queued_bytes > limits.max_queue_bytes
        ):
            self.queued_bytes -= len(self.queue.popleft())
            limits.dropped += 1
            if not self.overflowing:
                self.overflowing = True
                limits.logger.debug(
                    "Raft send queue full, dropping oldest messages",
                    address=self.address,
                    state=self.state,
                )

    def _flush(self) -> None:
        """Write queued frames until the queue is empty or the buffer fills up."""
        assert self.connection is not None
        while self.queue and not self.paused and self.state == "connected":
            frame = self.queue.popleft()
            self.queued_bytes -= len(frame)
            self.connection.write([frame])
        if not self.queue:
            self.overflowing = False

    def _drop_queue(self) -> int:
        dropped = len(self.queue)
        self.transport.dropped += dropped
        self.queue.clear()
        self.queued_bytes = 0
        self.overflowing = False
        return dropped

    # -- connection lifecycle

    def _connect(self) -> None:
        transport = self.transport
        self.state = "connecting"
        self.paused = False
        dial = self.dial = _DialFactory(self)
        self.timer = transport.clock.callLater(transport.connect_timeout, self._connect_timed_out)
        bind = (transport.bind_address, 0) if transport.bind_address is not None else None
        try:
            connector = transport.reactor.connectTCP(
                self.host, self.port, dial, timeout=transport.connect_timeout, bindAddress=bind
            )
        except Exception as e:  # a host or bind address connectTCP cannot even try
            self.connect_failed(Failure(e))
            return
        if self.dial is dial:
            self.connector = connector

    def connected(self, connection: _RaftConnection) -> None:
        if self.state != "connecting":
            connection.abort()
            return
        self._cancel_timer()
        self.state = "connected"
        self.connection = connection
        self.dial = self.connector = None
        self.connected_at = self.transport.clock.seconds()
        self.transport.logger.debug(
            "connected to Raft peer", address=self.address, queued=len(self.queue)
        )
        self.reported = False
        self._flush()

    def resume(self, connection: _RaftConnection) -> None:
        if self.connection is connection:
            self.paused = False
            self._flush()

    def connect_failed(self, reason: Failure) -> None:
        if self.state != "connecting":
            return
        self._cancel_timer()
        self.state = "idle"
        self.dial = self.connector = None
        dropped = self._drop_queue()
        self._back_off()
        if self.reported:
            return
        self.reported = True
        text = dial_error_text(self.host, self.port, reason).removeprefix(_DIAL_PREFIX)
        self.transport.logger.warn(
            "failed to contact Raft peer", address=self.address, error=text, dropped=dropped
        )

    def _connect_timed_out(self) -> None:
        self.timer = None
        if self.state != "connecting":
            return
        stop_dialling(self.connector)
        self.connect_failed(Failure(neterror.TimeoutError()))

    def lost(self, connection: _RaftConnection, reason: Failure | None) -> None:
        if self.connection is not connection or self.state != "connected":
            return
        self.state = "idle"
        self.connection = None
        self.paused = False
        dropped = self._drop_queue()
        now = self.transport.clock.seconds()
        if now - self.connected_at >= self.transport.backoff_max:
            # It stayed up: dialling again at once still costs at most one
            # dial per backoff_max, and a peer that merely restarted (or
            # closed an idle stream) is not kept waiting.
            self.failures, self.retry_at = 0, now
        else:
            self._back_off()
        self.transport.logger.debug(
            "Raft connection lost", address=self.address, error=_loss_text(reason), dropped=dropped
        )

    def _back_off(self) -> None:
        transport = self.transport
        self.failures += 1
        delay = transport.backoff_initial * 2 ** min(self.failures - 1, 32)
        self.retry_at = transport.clock.seconds() + min(delay, transport.backoff_max)

    def shutdown(self) -> Deferred[None]:
        """Leave for good: flush and close the connection, or stop dialling."""
        was, self.state = self.state, "gone"
        self._cancel_timer()
        if was == "connecting":
            self._drop_queue()
            connector, self.dial, self.connector = self.connector, None, None
            if connector is not None:
                try:
                    connector.stopConnecting()
                except neterror.NotConnectingError:
                    pass
        if was == "connected" and self.connection is not None:
            connection = self.connection
            if self.queue:  # held back by a full buffer: hand it to the transport's
                connection.write(list(self.queue))
                self.queue.clear()
                self.queued_bytes = 0
            connection.close(self.transport.close_timeout)
            return connection.closed
        return succeed(None)

    def _cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


@attrs.define(eq=False)
class RaftTransport:
    """
    Sends Raft messages to peers' server RPC ports (``host:port``), one
    lazily dialled connection per address.  ``reactor`` provides both
    ``connectTCP`` and the clock (Twisted's reactor, or a ``MemoryReactorClock``).
    """

    reactor: TcpClock
    logger: HcLogger
    connect_timeout: float = attrs.field(default=CONNECT_TIMEOUT, kw_only=True)
    #: Local host to dial from (``bindAddress=(host, 0)``); None lets the OS choose.
    bind_address: str | None = attrs.field(default=None, kw_only=True)
    backoff_initial: float = attrs.field(default=BACKOFF_INITIAL, kw_only=True)
    backoff_max: float = attrs.field(default=BACKOFF_MAX, kw_only=True)
    max_queue_messages: int = attrs.field(default=MAX_QUEUE_MESSAGES, kw_only=True)
    max_queue_bytes: int = attrs.field(default=MAX_QUEUE_BYTES, kw_only=True)
    close_timeout: float = attrs.field(default=CLOSE_TIMEOUT, kw_only=True)
    #: Messages dropped so far: queue overflow, backoff, failed dials, lost connections, closed.
    dropped: int = attrs.field(default=0, init=False)
    _peers: dict[str, _Peer] = attrs.field(factory=dict, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    #: The last malformed address and encoding error logged: a repeat is not logged again.
    _last_bad_address: object = attrs.field(default=None, init=False)
    _last_encode_error: str | None = attrs.field(default=None, init=False)

    @property
    def clock(self) -> TcpClock:
        return self.reactor

    def push(self) -> None:
        """Write what every open connection has buffered to its socket at once."""
        for peer in self._peers.values():
            if peer.state == "connected" and peer.connection is not None:
                peer.connection.push()

    def send(self, address: str, message: Message) -> None:
        """Queue ``message`` for the peer at ``address``; never raises, may drop."""
        try:
            self._send(address, message)
        except Exception as e:  # a bug here must not reach the Raft node
            self.dropped += 1
            self.logger.error(
                "failed to send Raft message",
                address=str(address),
                type=type(message).__name__,
                error=repr(e),
            )

    def _send(self, address: str, message: Message) -> None:
        if self._closed:
            self.dropped += 1
            return
        try:
            frame = encode_frame(encode_message(message))
        except FrameError as e:  # the caller's bug (e.g. a batch too large for a frame)
            self.dropped += 1
            if str(e) != self._last_encode_error:
                self._last_encode_error = str(e)
                self.logger.error(
                    "failed to encode Raft message",
                    address=str(address),
                    type=type(message).__name__,
                    error=str(e),
                )
            return
        peer = self._peers.get(address)
        if peer is None:
            try:
                host, port = split_address(address)
            except ValueError as e:
                self.dropped += 1
                if address != self._last_bad_address:
                    self._last_bad_address = address
                    self.logger.warn("dropping Raft message to a malformed address", error=str(e))
                return
            peer = self._peers[address] = _Peer(self, address, host, port)
        peer.send(frame)

    def disconnect(self, address: str) -> Deferred[None]:
        """Close the connection to ``address`` and forget its backoff (a server that left)."""
        peer = self._peers.pop(address, None)
        return succeed(None) if peer is None else peer.shutdown()

    def close(self) -> Deferred[None]:
        """Close every connection; the Deferred fires once all are closed.  Later sends drop."""
        if not self._closed:
            self._closed = True
            self.logger.debug("closing Raft transport", peers=len(self._peers))
        peers, self._peers = list(self._peers.values()), {}
        done = [peer.shutdown() for peer in peers]
        return gatherResults(done).addCallback(lambda _: None)

    @property
    def connections(self) -> dict[str, str]:
        """Address → ``idle``/``connecting``/``connected``, for every peer known."""
        return {address: peer.state for address, peer in sorted(self._peers.items())}

    def queued(self, address: str) -> int:
        """Messages waiting for ``address``'s connection."""
        peer = self._peers.get(address)
        return 0 if peer is None else len(peer.queue)


__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "CONNECT_TIMEOUT",
    "MAX_QUEUE_BYTES",
    "MAX_QUEUE_MESSAGES",
    "RaftTransport",
    "TcpClock",
    "raft_receiver",
    "split_address",
]
