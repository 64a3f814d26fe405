# -*- test-case-name: tests.integration.test_gossip_net -*-
"""
memberlist over real sockets: the wire adapter between Twisted and the
protocol core.

One port number serves UDP (probes, gossip) and TCP (push/pull, fallback
pings, stream user messages), as memberlist's does.  Outbound, records are
encoded with the codec, piggybacked into compound packets within the UDP
budget, compressed when that helps, and sealed with the keyring's primary
key.  Inbound, every datagram and stream is untrusted: whatever does not
decrypt or decode is dropped (UDP) or answered with memberlist's ``err``
message and closed (TCP), with one DEBUG/WARN line and never a traceback.

The protocol node only sees records (:class:`IGossipTransport` outbound;
``packet_received``, ``push_pull_received`` and ``stream_ping_received``
inbound), so it runs unchanged on :mod:`consul_tw.testing.network`.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.codec import encode_message
from consul_tw.gossip.memberlist.keyring import NOT_ENCRYPTED_TEXT, DecryptError, Keyring
from consul_tw.gossip.memberlist.messages import (
    Ack,
    Err,
    Message,
    MessageType,
    Ping,
    PushPull,
    User,
)
from consul_tw.gossip.memberlist.packet import compound, decode_packet, encode_packet
from consul_tw.gossip.memberlist.stream import EncryptedStream, StreamReader, encode_stream

#: memberlist's UDP budget; encryption and the CRC header come out of it.
UDP_BUDGET = 1400
ENCRYPTION_OVERHEAD = 29
CRC_OVERHEAD = 5
#: Larger datagrams are still read (memberlist's receive buffer).
MAX_DATAGRAM = 65536


class InboundNode(Protocol):
    """What the transport hands inbound traffic to (a Memberlist)."""

    def packet_received(self, from_addr: str, from_port: int, messages: list[Message]) -> None: ...

    def push_pull_received(self, from_addr: str, from_port: int, message: PushPull) -> PushPull: ...

    def stream_ping_received(self, ping: Ping) -> Ack | None: ...


class RemoteError(Exception):
    """The peer answered a stream with memberlist's ``err`` message."""


@attrs.define(eq=False)
class _Sealer:
    """Encryption, if a keyring is configured; the identity otherwise."""

    keyring: Keyring | None

    def packet(self, data: bytes) -> bytes:
        return self.keyring.encrypt_packet(data) if self.keyring else data

    def open_packet(self, data: bytes) -> bytes:
        if self.keyring is None:
            return data
        return self.keyring.decrypt_packet(data)

    def stream(self, data: bytes) -> bytes:
        return self.keyring.encrypt_stream(data) if self.keyring else data


class _StreamSession(StreamProtocol):
    """
    Reads one stream message (decrypting first when keyed) and hands it to
    ``on_message``; any failure goes to ``on_error``.  Used for both sides.
    """

    def __init__(self, sealer: _Sealer, max_size: int = 20 * 1024 * 1024) -> None:
        self._sealer = sealer
        self._buffer = b""
        self._reader = StreamReader(max_size=max_size)
        self._done = False
        self._started = False
        self.finished: Deferred[Message] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        try:
            message = self._consume(data)
        except (WireError, EncryptedStream) as e:
            self._done = True
            self.finished.errback(Failure(e))
            return
        if message is not None:
            self._done = True
            self.finished.callback(message)

    def _consume(self, data: bytes) -> Message | None:
        keyring = self._sealer.keyring
        if keyring is None:
            if not self._started and data[:1] == bytes([MessageType.ENCRYPT]):
                raise DecryptError("Remote state is encrypted and encryption is not configured")
            self._started = self._started or bool(data)
            return self._reader.feed(data)
        self._buffer += data
        if self._buffer[:1] and self._buffer[:1] != bytes([MessageType.ENCRYPT]):
            raise DecryptError(NOT_ENCRYPTED_TEXT)
        opened = keyring.decrypt_stream(self._buffer)
        if opened is None:
            return None
        plaintext, _ = opened
        message = StreamReader().feed(plaintext)
        if message is None:
            raise WireError("truncated stream message")
        return message

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self._done:
            self._done = True
            self.finished.errback(Failure(ConnectionError("stream closed before a message")))


@attrs.define(eq=False)
class GossipNet:
    """
    The real :class:`IGossipTransport` of one pool, plus its listeners.

    ``bind`` must be called with the protocol node before traffic flows;
    the node is not a constructor argument because it needs the transport
    to be built first.
    """

    reactor: Any
    interface: str
    port: int
    logger: HcLogger
    keyring: Keyring | None = None
    compress: bool = True
    tcp_timeout: float = 10.0
    _node: InboundNode | None = None
    _udp: IListeningPort | None = None
    _tcp: IListeningPort | None = None
    _sealer: _Sealer = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._sealer = _Sealer(self.keyring)

    # -- lifecycle -------------------------------------------------------

    def listen(self) -> None:
        """Bind UDP and TCP on the same port (synchronously: conflicts raise)."""
        self._udp = self.reactor.listenUDP(
            self.port, _Datagrams(self), interface=self.interface, maxPacketSize=MAX_DATAGRAM
        )
        factory = Factory.forProtocol(lambda: _InboundStream(self))
        factory.noisy = False
        try:
            self._tcp = self.reactor.listenTCP(
                self._udp.getHost().port, factory, interface=self.interface
            )
        except Exception:
            self._udp.stopListening()
            self._udp = None
            raise

    @property
    def bound_port(self) -> int:
        return self._udp.getHost().port if self._udp is not None else self.port

    def bind(self, node: InboundNode) -> None:
        self._node = node

    def stop(self) -> Deferred[Any]:
        from twisted.internet.defer import gatherResults, maybeDeferred

        ports = [p for p in (self._udp, self._tcp) if p is not None]
        self._udp = self._tcp = None
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])

    # -- IGossipTransport ----------------------------------------------------

    def send_packet(self, addr: str, port: int, messages: list[Message]) -> None:
        if self._udp is None or not messages:
            return
        budget = UDP_BUDGET - CRC_OVERHEAD - (ENCRYPTION_OVERHEAD if self.keyring else 0)
        try:
            parts = [encode_message(m) for m in messages]
        except ValueError as e:
            self.logger.error("memberlist: Failed to encode message", error=str(e))
            return
        for packet in compound(parts, limit=budget):
            data = encode_packet([packet], compress=self.compress)
            try:
                self._udp.write(self._sealer.packet(data), (addr, port))
            except OSError as e:
                self.logger.warn(
                    "memberlist: Failed to send UDP packet", to=f"{addr}:{port}", error=str(e)
                )

    def push_pull(self, addr: str, port: int, message: PushPull) -> Deferred[PushPull]:
        return self._exchange(addr, port, message, PushPull)

    def stream_ping(self, addr: str, port: int, ping: Ping) -> Deferred[Ack]:
        return self._exchange(addr, port, ping, Ack)

    def _exchange(self, addr: str, port: int, request: Message, expected: type) -> Deferred[Any]:
        endpoint = TCP4ClientEndpoint(self.reactor, addr, port, timeout=self.tcp_timeout)
        session = _StreamSession(self._sealer)
        connecting = connectProtocol(endpoint, session)
        data = self._sealer.stream(encode_stream(request, compress=self.compress))

        def connected(proto: _StreamSession) -> Deferred[Message]:
            assert proto.transport is not None
            proto.transport.write(data)
            return proto.finished

        def answered(reply: Message) -> Any:
            if isinstance(reply, Err):
                raise RemoteError(reply.error)
            if not isinstance(reply, expected):
                raise WireError(f"unexpected {type(reply).__name__} reply")
            return reply

        def cleanup(result: Any) -> Any:
            if session.transport is not None:
                session.transport.loseConnection()
            return result

        result = connecting.addCallback(connected).addCallback(answered).addBoth(cleanup)
        timer = self.reactor.callLater(self.tcp_timeout, result.cancel)

        def stop_timer(outcome: Any) -> Any:
            if timer.active():
                timer.cancel()
            if isinstance(outcome, Failure) and outcome.check(CancelledError):
                return Failure(TimeoutError(f"i/o timeout talking to {addr}:{port}"))
            return outcome

        return result.addBoth(stop_timer)

    # -- inbound -------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        host, port = addr
        if self._node is None:
            return
        try:
            plaintext = self._sealer.open_packet(data)
            decoded = decode_packet(plaintext)
        except WireError as e:
            self.logger.warn(
                "memberlist: Dropping packet", error=str(e), **{"from": f"{host}:{port}"}
            )
            return
        if decoded.dropped:
            self.logger.debug(
                "memberlist: Dropped parts of a compound packet",
                dropped=decoded.dropped,
                **{"from": f"{host}:{port}"},
            )
        if decoded.messages:
            self._node.packet_received(host, port, list(decoded.messages))

    def stream_message_received(self, host: str, port: int, message: Message) -> Message | None:
        """Answer an inbound stream message (None: nothing to send back)."""
        node = self._node
        if node is None:
            return Err(error="node is not ready")
        if isinstance(message, PushPull):
            return node.push_pull_received(host, port, message)
        if isinstance(message, Ping):
            return node.stream_ping_received(message)
        if isinstance(message, User):
            node.packet_received(host, port, [message])
            return None
        return Err(error=f"Received invalid msgType ({type(message).__name__})")

    def seal_reply(self, reply: Message) -> bytes:
        return self._sealer.stream(encode_stream(reply, compress=self.compress))


class _Datagrams(DatagramProtocol):
    def __init__(self, net: GossipNet) -> None:
        self._net = net

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._net.datagram_received(datagram, addr)


class _InboundStream(_StreamSession):
    """The responder's side of a stream: read one message, answer, close."""

    def __init__(self, net: GossipNet) -> None:
        super().__init__(_Sealer(net.keyring))
        self._net = net
        self.finished.addCallbacks(self._answer, self._refuse)
        self._timer: Any = None

    def connectionMade(self) -> None:
        self._timer = self._net.reactor.callLater(self._net.tcp_timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def _peer(self) -> tuple[str, int]:
        peer = self.transport.getPeer() if self.transport is not None else None
        return getattr(peer, "host", ""), getattr(peer, "port", 0)

    def _answer(self, message: Message) -> None:
        host, port = self._peer()
        try:
            reply = self._net.stream_message_received(host, port, message)
        except Exception as e:  # a bug in the node must not kill the listener
            self._net.logger.error("memberlist: Failed to handle stream", error=repr(e))
            reply = Err(error="internal error")
        if reply is not None and self.transport is not None:
            self.transport.write(self._net.seal_reply(reply))
        self._close()

    def _refuse(self, failure: Failure) -> None:
        host, port = self._peer()
        if failure.check(ConnectionError):
            self._close()
            return
        text = failure.getErrorMessage()
        self._net.logger.warn(
            "memberlist: Failed to read stream", error=text, **{"from": f"{host}:{port}"}
        )
        if self.transport is not None and failure.check(WireError, EncryptedStream):
            self.transport.write(self._net.seal_reply(Err(error=text)))
        self._close()

    def _close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        super().connectionLost(reason)
