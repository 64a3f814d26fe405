"""
RaftTransport and raft_receiver.

Most tests run on a MemoryReactorClock (which records the dials) with
iosim pumping bytes to a real server factory or a recording protocol:
the 0x02 byte and frames, queueing while dialling and its bound, backoff
on the clock, connection loss, back-pressure, close() and bindAddress.
One test runs end to end on the real reactor over 127.0.0.1.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.raft.messages import AppendEntries, LogEntry, Message, RequestVote, TimeoutNow
from consul_tw.rpc.framing import PROTOCOL_RAFT, decode_frames, encode_frame
from consul_tw.rpc.protocol import RpcDispatcher, RpcServerFactory, rpc_server_factory
from consul_tw.rpc.raft_codec import MAX_ENTRIES, decode_message, encode_message
from consul_tw.rpc.raft_transport import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CONNECT_TIMEOUT,
    RaftTransport,
    raft_receiver,
    split_address,
)
from tests.unit.rpc.dials import accept_dial, flush, refuse_dial

PEER = "10.0.0.1:8300"
OTHER = "10.0.0.3:8300"


def heartbeat(seq: int, entries: int = 0) -> AppendEntries:
    return AppendEntries(
        term=3,
        leader_id="leader",
        leader_address="10.0.0.2:8300",
        prev_log_index=seq,
        prev_log_term=3,
        entries=tuple(
            LogEntry(index=seq + i + 1, term=3, data=b"x" * (i + 1)) for i in range(entries)
        ),
        leader_commit=seq,
        seq=seq,
    )


class Recorder(Protocol):
    """A peer that only records the bytes it receives."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def messages(self) -> list[Message]:
        assert self.data[:1] == bytes([PROTOCOL_RAFT])
        return [decode_message(value) for value in decode_frames(self.data[1:])]


class Harness(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.log = EventLoggingObserver.createWithCleanup(
            self,
            globalLogPublisher,  # type: ignore[arg-type]
        )
        self.transport = RaftTransport(self.reactor, HcLogger("agent.server.raft"))
        self.pumps: list[IOPump] = []
        self.recorders: list[Recorder] = []

    def tearDown(self) -> None:
        closed = self.transport.close()
        self.flush()
        self.successResultOf(closed)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def dials(self) -> list[tuple[str, int]]:
        return [(host, port) for host, port, *_ in self.reactor.tcpClients]

    def accept(self, server: Protocol | None = None) -> IOPump:
        """Complete the oldest dial to ``server`` (by default a new Recorder)."""
        if server is None:
            server = Recorder()
            self.recorders.append(server)
        chosen = server
        return accept_dial(self.reactor, self.pumps, lambda host, port, client: chosen)

    def refuse(self, reason: Exception | None = None) -> None:
        refuse_dial(self.reactor, reason)

    def flush(self) -> None:
        flush(self.pumps)

    def lines(self, level: str | None = None) -> list[str]:
        """Log lines as hclog renders them, without timestamp and name."""
        return [
            " ".join([e["hclog_message"], *(f"{k}={v}" for k, v in e["hclog_pairs"])])
            for e in self.log
            if "hclog_message" in e and (level is None or e["hclog_level"] == level)
        ]


class SendTests(Harness):
    def test_protocol_byte_then_frames_in_order(self) -> None:
        sent = [heartbeat(i, entries=i % 3) for i in range(5)]
        for message in sent[:3]:
            self.transport.send(PEER, message)  # queued while dialling
        self.assertEqual(self.dials(), [("10.0.0.1", 8300)])
        self.assertEqual(self.transport.queued(PEER), 3)
        self.assertEqual(self.transport.connections, {PEER: "connecting"})
        pump = self.accept()
        self.assertEqual(self.transport.connections, {PEER: "connected"})
        self.assertEqual(self.transport.queued(PEER), 0)
        for message in sent[3:]:
            self.transport.send(PEER, message)
        pump.flush()
        (peer,) = self.recorders
        self.assertEqual(peer.data[0], 0x02)
        self.assertEqual(peer.messages(), sent)
        self.assertEqual(self.dials(), [])
        self.assertEqual(self.transport.dropped, 0)
        self.assertEqual(self.lines("WARN"), [])

    def test_one_connection_per_address(self) -> None:
        for address in (PEER, OTHER, PEER, OTHER, PEER):
            self.transport.send(address, heartbeat(1))
        self.assertEqual(self.dials(), [("10.0.0.1", 8300), ("10.0.0.3", 8300)])
        self.accept()
        self.accept()
        self.transport.send(OTHER, heartbeat(2))
        self.flush()
        self.assertEqual(self.dials(), [])
        first, second = self.recorders
        self.assertEqual(first.messages(), [heartbeat(1)] * 3)
        self.assertEqual(second.messages(), [heartbeat(1)] * 2 + [heartbeat(2)])

    def test_ipv6_address(self) -> None:
        self.transport.send("[::1]:8300", heartbeat(1))
        self.assertEqual(self.dials(), [("::1", 8300)])

    def test_bind_address(self) -> None:
        self.transport.send(PEER, heartbeat(1))
        bound = RaftTransport(
            self.reactor, HcLogger("agent.server.raft"), bind_address="127.0.0.7", connect_timeout=3
        )
        bound.send(PEER, heartbeat(1))
        (_, _, _, timeout, default), (_, _, _, bound_timeout, bind) = self.reactor.tcpClients
        self.assertIsNone(default)
        self.assertEqual(timeout, CONNECT_TIMEOUT)
        self.assertEqual(bind, ("127.0.0.7", 0))
        self.assertEqual(bound_timeout, 3)
        self.successResultOf(bound.close())

    def test_peer_writing_back_is_ignored(self) -> None:
        class Chatty(Recorder):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.write(b"unexpected")

        self.transport.send(PEER, heartbeat(1))
        pump = self.accept(Chatty())
        self.transport.send(PEER, heartbeat(2))
        pump.flush()
        self.assertEqual(self.transport.connections, {PEER: "connected"})


class QueueTests(Harness):
    def test_bounded_in_messages_dropping_the_oldest(self) -> None:
        self.transport.max_queue_messages = 3
        for seq in range(7):
            self.transport.send(PEER, heartbeat(seq))
        self.assertEqual(self.transport.queued(PEER), 3)
        self.assertEqual(self.transport.dropped, 4)
        self.assertEqual(
            self.lines(),
            [
                "Raft send queue full, dropping oldest messages"
                " address=10.0.0.1:8300 state=connecting"
            ],
        )
        pump = self.accept()
        pump.flush()
        self.assertEqual(self.recorders[0].messages(), [heartbeat(4), heartbeat(5), heartbeat(6)])

    def test_bounded_in_bytes(self) -> None:
        size = len(encode_frame(encode_message(heartbeat(0, entries=10))))
        self.transport.max_queue_bytes = 2 * size
        for seq in range(5):
            self.transport.send(PEER, heartbeat(seq, entries=10))
        self.assertEqual(self.transport.queued(PEER), 2)
        self.assertEqual(self.transport.dropped, 3)

    def test_the_newest_message_is_always_kept(self) -> None:
        self.transport.max_queue_bytes = 10
        self.transport.send(PEER, heartbeat(0, entries=50))
        self.assertEqual(self.transport.queued(PEER), 1)
        self.assertEqual(self.transport.dropped, 0)

    def test_back_pressure_queues_until_the_buffer_drains(self) -> None:
        self.transport.max_queue_messages = 2
        self.transport.send(PEER, heartbeat(0))
        pump = self.accept()
        connection = pump.clientIO.producer
        connection.pauseProducing()  # what a full send buffer does
        for seq in range(1, 5):
            self.transport.send(PEER, heartbeat(seq))
        self.assertEqual(self.transport.queued(PEER), 2)
        self.assertEqual(self.transport.dropped, 2)
        connection.resumeProducing()
        pump.flush()
        self.assertEqual(self.transport.queued(PEER), 0)
        self.assertEqual(self.recorders[0].messages(), [heartbeat(0), heartbeat(3), heartbeat(4)])


class FailureTests(Harness):
    def test_refused_then_backoff_doubling_to_the_cap(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        self.transport.send(PEER, heartbeat(1))
        self.refuse()
        self.assertEqual(self.transport.connections, {PEER: "idle"})
        self.assertEqual(self.transport.dropped, 2)
        self.assertEqual(
            self.lines("WARN"),
            [
                "failed to contact Raft peer address=10.0.0.1:8300"
                " error=dial tcp 10.0.0.1:8300: connect: connection refused dropped=2"
            ],
        )
        delay = BACKOFF_INITIAL
        for _ in range(8):
            self.reactor.advance(delay - 0.01)
            self.transport.send(PEER, heartbeat(2))  # too early: dropped, no dial
            self.assertEqual(self.dials(), [])
            self.reactor.advance(0.02)
            self.transport.send(PEER, heartbeat(3))
            self.assertEqual(len(self.dials()), 1)
            self.refuse()
            delay = min(delay * 2, BACKOFF_MAX)
        self.assertEqual(delay, BACKOFF_MAX)
        self.assertEqual(len(self.lines("WARN")), 1)  # once per outage, not per dial
        self.assertEqual(self.reactor.getDelayedCalls(), [])  # no timer while backing off

        self.reactor.advance(delay)
        self.transport.send(PEER, heartbeat(4))
        pump = self.accept()
        pump.flush()
        self.assertEqual(self.recorders[0].messages(), [heartbeat(4)])
        self.assertIn("connected to Raft peer address=10.0.0.1:8300 queued=1", self.lines("DEBUG"))

    def test_connect_timeout(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        self.reactor.advance(CONNECT_TIMEOUT - 0.1)
        self.assertEqual(self.transport.connections, {PEER: "connecting"})
        self.reactor.advance(0.1)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(
            self.lines("WARN"),
            [
                "failed to contact Raft peer address=10.0.0.1:8300"
                " error=dial tcp 10.0.0.1:8300: i/o timeout dropped=1"
            ],
        )
        late = self.reactor.tcpClients[0][2]
        self.assertIsNone(late.buildProtocol(IPv4Address("TCP", "10.0.0.1", 8300)))
        self.refuse()  # the reactor's own report of the stopped dial: ignored
        self.assertEqual(len(self.lines("WARN")), 1)

    def test_dial_that_cannot_start(self) -> None:
        def refuse_at_once(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("invalid bind address")

        self.reactor.connectTCP = refuse_at_once  # type: ignore[method-assign]
        self.transport.send(PEER, heartbeat(0))
        self.assertEqual(self.transport.connections, {PEER: "idle"})
        self.assertEqual(
            self.lines("WARN"),
            [
                "failed to contact Raft peer address=10.0.0.1:8300"
                " error=dial tcp 10.0.0.1:8300: invalid bind address dropped=1"
            ],
        )

    def test_lost_connection_drops_the_queue_and_backs_off(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        pump = self.accept()
        pump.clientIO.producer.pauseProducing()
        self.transport.send(PEER, heartbeat(1))  # held back by the full buffer
        pump.serverIO.loseConnection()
        pump.flush()
        self.assertEqual(self.transport.connections, {PEER: "idle"})
        self.assertEqual(self.transport.dropped, 1)
        self.assertEqual(
            self.lines("DEBUG")[-1],
            "Raft connection lost address=10.0.0.1:8300 error=EOF dropped=1",
        )
        self.transport.send(PEER, heartbeat(2))  # it lived less than BACKOFF_MAX: back off
        self.assertEqual(self.dials(), [])
        self.reactor.advance(BACKOFF_INITIAL)
        self.transport.send(PEER, heartbeat(3))
        self.assertEqual(len(self.dials()), 1)
        self.accept()
        self.assertEqual(self.lines("WARN"), [])

    def test_after_a_long_lived_connection_redial_at_once(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        pump = self.accept()
        self.reactor.advance(BACKOFF_MAX)
        pump.serverIO.loseConnection()
        pump.flush()
        self.transport.send(PEER, heartbeat(1))
        self.assertEqual(len(self.dials()), 1)
        self.refuse()  # a restarting peer: now it is reported
        self.assertEqual(len(self.lines("WARN")), 1)

    def test_warn_again_after_recovery(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        self.refuse()
        self.reactor.advance(BACKOFF_INITIAL)
        self.transport.send(PEER, heartbeat(1))
        pump = self.accept()
        self.reactor.advance(BACKOFF_MAX)
        pump.serverIO.loseConnection()
        pump.flush()
        self.transport.send(PEER, heartbeat(2))
        self.refuse()
        self.assertEqual(len(self.lines("WARN")), 2)

    def test_malformed_address_is_logged_once(self) -> None:
        for _ in range(3):
            self.transport.send("no-port", heartbeat(0))
        self.transport.send(12, heartbeat(0))  # type: ignore[arg-type]
        self.assertEqual(self.dials(), [])
        self.assertEqual(self.transport.dropped, 4)
        self.assertEqual(
            self.lines("WARN"),
            [
                "dropping Raft message to a malformed address"
                " error=address no-port: missing host or port",
                "dropping Raft message to a malformed address"
                " error=address must be a string, not int",
            ],
        )

    def test_unencodable_message_is_dropped_with_one_error(self) -> None:
        too_big = heartbeat(0, entries=MAX_ENTRIES + 1)
        for _ in range(3):
            self.transport.send(PEER, too_big)
        self.transport.send(PEER, object())  # type: ignore[arg-type]
        self.assertEqual(self.dials(), [])
        self.assertEqual(self.transport.dropped, 4)
        self.assertEqual(
            self.lines("ERROR"),
            [
                "failed to encode Raft message address=10.0.0.1:8300 type=AppendEntries"
                f" error=AppendEntries.entries: more than {MAX_ENTRIES} items ({MAX_ENTRIES + 1})",
                "failed to encode Raft message address=10.0.0.1:8300 type=object"
                " error=not a Raft message: object",
            ],
        )

    def test_a_bug_never_reaches_the_caller(self) -> None:
        class BrokenClock(MemoryReactorClock):
            def seconds(self) -> float:
                raise RuntimeError("bug")

        broken = RaftTransport(BrokenClock(), HcLogger("agent.server.raft"))
        broken.send(PEER, heartbeat(0))
        self.assertEqual(broken.dropped, 1)
        self.assertEqual(
            self.lines("ERROR"),
            [
                "failed to send Raft message address=10.0.0.1:8300 type=AppendEntries"
                " error=RuntimeError('bug')"
            ],
        )
        self.successResultOf(broken.close())


class ShutdownTests(Harness):
    def test_close(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        self.transport.send(OTHER, heartbeat(0))
        pump = self.accept()
        pump.clientIO.producer.pauseProducing()
        self.transport.send(PEER, heartbeat(1))  # held back: flushed by close()
        closed = self.transport.close()
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)  # OTHER's dial
        self.assertNoResult(closed)
        pump.flush()
        self.successResultOf(closed)
        self.assertEqual(self.recorders[0].messages(), [heartbeat(0), heartbeat(1)])
        self.assertEqual(self.transport.connections, {})
        self.assertEqual(self.reactor.getDelayedCalls(), [])

        self.transport.send(PEER, heartbeat(2))
        self.assertEqual(self.dials(), [("10.0.0.3", 8300)])  # only the stopped one
        self.assertEqual(self.transport.connections, {})
        self.assertEqual(self.lines("WARN"), [])

    def test_close_aborts_a_peer_that_does_not_read(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        _, _, factory, _, _ = self.reactor.tcpClients.pop(0)
        connection = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 8300))
        assert connection is not None
        wire = StringTransport()
        connection.makeConnection(wire)
        closed = self.transport.close()
        self.assertTrue(wire.disconnecting)
        self.assertNoResult(closed)
        self.reactor.advance(self.transport.close_timeout)
        self.assertTrue(wire.disconnected)  # aborted
        connection.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.assertEqual(decode_frames(wire.value()[1:]), [encode_message(heartbeat(0))])

    def test_disconnect_forgets_the_peer(self) -> None:
        self.transport.send(PEER, heartbeat(0))
        self.refuse()
        self.transport.send(PEER, heartbeat(1))  # backing off
        self.assertEqual(self.dials(), [])
        self.successResultOf(self.transport.disconnect(PEER))
        self.successResultOf(self.transport.disconnect(OTHER))  # unknown: nothing to do
        self.transport.send(PEER, heartbeat(2))  # a fresh peer: dialled at once
        pump = self.accept()
        closing = self.transport.disconnect(PEER)
        pump.flush()
        self.successResultOf(closing)
        self.assertEqual(self.transport.connections, {})
        self.assertEqual(self.recorders[0].messages(), [heartbeat(2)])


def test_split_address() -> None:
    assert split_address("10.0.0.1:8300") == ("10.0.0.1", 8300)
    assert split_address("[::1]:8300") == ("::1", 8300)
    assert split_address("server.example:1") == ("server.example", 1)
    for bad in ("", "host", ":8300", "host:", "host:0", "host:65536", "::1:8300", "h:x", "h:-1"):
        try:
            split_address(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


# -- the receiving side ---------------------------------------------------------


class ReceiverTests(Harness):
    """raft_receiver registered on 0x02 of a real server factory."""

    def setUp(self) -> None:
        super().setUp()
        self.received: list[Message] = []
        self.factory = rpc_server_factory(
            RpcDispatcher(),
            raft_handler=raft_receiver(self._deliver, HcLogger("agent.server.raft")),
            clock=self.reactor,
            logger=HcLogger("agent.server.rpc"),
        )

    def tearDown(self) -> None:
        for connection in list(self.factory.connections):
            connection.connectionLost(Failure(ConnectionDone()))
        super().tearDown()

    def _deliver(self, message: Message) -> None:
        if isinstance(message, TimeoutNow):
            raise RuntimeError("node bug")
        self.received.append(message)

    def connect(self) -> tuple[Protocol, StringTransport]:
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.2", 50123))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_records_are_delivered(self) -> None:
        protocol, transport = self.connect()
        vote = RequestVote(
            term=4,
            candidate_id="c",
            candidate_address="10.0.0.4:8300",
            last_log_index=1,
            last_log_term=1,
        )
        sent: list[Message] = [heartbeat(1, entries=2), vote]
        protocol.dataReceived(b"\x02" + b"".join(encode_frame(encode_message(m)) for m in sent))
        self.assertEqual(self.received, sent)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)

    def test_malformed_message_closes_the_connection(self) -> None:
        protocol, transport = self.connect()
        bad = encode_message(heartbeat(1))
        bad["term"] = True
        protocol.dataReceived(
            b"\x02" + encode_frame(encode_message(heartbeat(0))) + encode_frame(bad)
        )
        self.assertEqual(self.received, [heartbeat(0)])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            self.lines("WARN"),
            [
                "closing connection after malformed input"
                " error=AppendEntries.term: expected an unsigned integer, got boolean"
                " conn=from=10.0.0.2:50123"
            ],
        )
        self.assertEqual(self.lines("ERROR"), [])

    def test_a_failing_node_logs_and_keeps_the_stream(self) -> None:
        protocol, transport = self.connect()
        crash = TimeoutNow(term=1, leader_id="a", leader_address="b")
        protocol.dataReceived(
            b"\x02"
            + encode_frame(encode_message(crash))
            + encode_frame(encode_message(heartbeat(1)))
        )
        self.assertEqual(self.received, [heartbeat(1)])
        self.assertEqual(
            self.lines("ERROR"),
            [
                "failed to handle Raft message type=TimeoutNow error=RuntimeError('node bug')"
                " conn=from=10.0.0.2:50123"
            ],
        )
        self.assertFalse(transport.disconnecting)

    def test_from_transport_to_receiver(self) -> None:
        """The sender's bytes, pumped into the server factory: every record, in order."""
        sent = [heartbeat(i, entries=3) for i in range(50)]
        for message in sent[:20]:
            self.transport.send(PEER, message)
        pump = self.accept(self.factory.buildProtocol(None))
        for message in sent[20:]:
            self.transport.send(PEER, message)
        pump.flush()
        self.assertEqual(self.received, sent)
        self.assertEqual(len(self.factory.connections), 1)
        closed = self.transport.close()
        pump.flush()
        self.successResultOf(closed)
        self.assertEqual(self.factory.connections, set())


# -- end to end on the real reactor ----------------------------------------------


class _Loopback:
    def __init__(self) -> None:
        self.received: list[Message] = []
        self.arrived: Deferred[None] | None = None
        self.expected = 0
        self.factory: RpcServerFactory = rpc_server_factory(
            RpcDispatcher(),
            raft_handler=raft_receiver(self._deliver, HcLogger("agent.server.raft")),
            clock=global_reactor,
            logger=HcLogger("agent.server.rpc"),
        )
        self.port = global_reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.address = f"127.0.0.1:{self.port.getHost().port}"  # type: ignore[attr-defined]

    def _deliver(self, message: Message) -> None:
        self.received.append(message)
        if len(self.received) == self.expected and self.arrived is not None:
            self.arrived.callback(None)

    def wait_for(self, count: int) -> Deferred[None]:
        self.expected = count
        self.arrived = Deferred()
        if len(self.received) >= count:
            self.arrived.callback(None)
        return self.arrived

    async def stop(self) -> None:
        self.factory.disconnect_all()
        await maybeDeferred(self.port.stopListening)


@pytest_twisted.async_yield_fixture
async def loopback() -> AsyncIterator[_Loopback]:
    server = _Loopback()
    yield server
    await server.stop()


@pytest_twisted.ensureDeferred
async def test_loopback_end_to_end(loopback: _Loopback) -> None:
    transport = RaftTransport(global_reactor, HcLogger("agent.server.raft"), connect_timeout=5.0)
    sent = [heartbeat(i, entries=1 + i % 5) for i in range(100)]
    try:
        for message in sent:
            transport.send(loopback.address, message)  # the first ones while dialling
        done = loopback.wait_for(len(sent))
        done.addTimeout(10, global_reactor)
        await done
        assert loopback.received == sent
        assert len(loopback.factory.connections) == 1
        assert transport.dropped == 0
    finally:
        await transport.close()
    assert transport.connections == {}


@pytest.mark.skipif(
    sys.platform != "linux", reason="binds 127.0.0.2 (all of 127/8 is local on Linux)"
)
@pytest_twisted.ensureDeferred
async def test_loopback_bind_address(loopback: _Loopback) -> None:
    """Outgoing Raft connections leave from the bind address: partition tests cut by source IP."""
    transport = RaftTransport(
        global_reactor, HcLogger("agent.server.raft"), bind_address="127.0.0.2"
    )
    try:
        transport.send(loopback.address, heartbeat(1))
        done = loopback.wait_for(1)
        done.addTimeout(10, global_reactor)
        await done
        (connection,) = loopback.factory.connections
        assert connection.peer.startswith("127.0.0.2:")
    finally:
        await transport.close()
