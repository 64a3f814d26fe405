"""
The server side of the RPC port, one connection at a time on a
StringTransport and a Clock: protocol byte, pipelined and out-of-order
calls, errors, junk, limits and timeouts, and the Raft hook.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.rpc.framing import (
    MAX_FRAME_SIZE,
    PROTOCOL_RAFT,
    PROTOCOL_RPC,
    Request,
    Response,
    decode_frames,
    encode_frame,
    response_from_wire,
)
from consul_tw.rpc.protocol import (
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    HandlerError,
    RpcDispatcher,
    RpcServerFactory,
    rpc_server_factory,
)
from consul_tw.rpc.raft_channel import raft_handler

PEER = IPv4Address("TCP", "10.0.0.2", 50123)
RPC = bytes([PROTOCOL_RPC])
RAFT = bytes([PROTOCOL_RAFT])


def request(call_id: int, method: str, args: Any = None) -> bytes:
    return encode_frame(Request(call_id, method, args).to_wire())


class Harness(SynchronousTestCase):
    max_in_flight = 1024

    def setUp(self) -> None:
        self.clock = Clock()
        self.log = EventLoggingObserver.createWithCleanup(
            self,
            globalLogPublisher,  # type: ignore[arg-type]
        )
        self.dispatcher = RpcDispatcher()
        self.raft_messages: list[dict[str, Any]] = []
        self.waiting: dict[Any, Deferred[Any]] = {}
        self.dispatcher.register("Echo.Echo", lambda args: args)
        self.dispatcher.register("Wait.Wait", self._wait)
        self.factory: RpcServerFactory = rpc_server_factory(
            self.dispatcher,
            raft_handler=raft_handler(self._raft, HcLogger("agent.server.raft")),
            clock=self.clock,
            logger=HcLogger("agent.server.rpc"),
            max_in_flight=self.max_in_flight,
        )

    def tearDown(self) -> None:
        for connection in list(self.factory.connections):
            connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def _wait(self, key: Any) -> Deferred[Any]:
        self.waiting[key] = Deferred()
        return self.waiting[key]

    def _raft(self, message: dict[str, Any]) -> None:
        if message["type"] == "Crash":
            raise RuntimeError("node bug")
        self.raft_messages.append(message)

    def connect(self) -> tuple[Any, StringTransport]:
        protocol = self.factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        return protocol, transport

    def responses(self, transport: StringTransport) -> list[Response]:
        found = [response_from_wire(v) for v in decode_frames(transport.value())]
        transport.clear()
        return found

    def lines(self, level: str | None = None) -> list[str]:
        return [
            e["hclog_message"] + "".join(f" {k}={v}" for k, v in e["hclog_pairs"])
            for e in self.log
            if "hclog_message" in e and (level is None or e["hclog_level"] == level)
        ]


class CallTests(Harness):
    def test_call(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Echo.Echo", {"x": [1, b"2"]}))
        self.assertEqual(self.responses(transport), [Response(1, {"x": [1, b"2"]})])
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.lines(), [])

    def test_protocol_byte_and_frames_split_anyhow(self) -> None:
        protocol, transport = self.connect()
        data = RPC + request(1, "Echo.Echo", "a") + request(2, "Echo.Echo", "b")
        for i in range(len(data)):
            protocol.dataReceived(data[i : i + 1])
        self.assertEqual(self.responses(transport), [Response(1, "a"), Response(2, "b")])

    def test_pipelined_requests_in_one_read(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + b"".join(request(i, "Echo.Echo", i) for i in range(1, 51)))
        self.assertEqual(self.responses(transport), [Response(i, i) for i in range(1, 51)])

    def test_out_of_order_completion(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(
            RPC + request(1, "Wait.Wait", "slow") + request(2, "Wait.Wait", "fast")
        )
        protocol.dataReceived(request(3, "Echo.Echo", "sync"))
        self.assertEqual(self.responses(transport), [Response(3, "sync")])
        self.waiting["fast"].callback("F")
        self.assertEqual(self.responses(transport), [Response(2, "F")])
        self.waiting["slow"].callback("S")
        self.assertEqual(self.responses(transport), [Response(1, "S")])

    def test_async_handler(self) -> None:
        async def lookup(args: Any) -> Any:
            return {"Node": args, "Address": "10.0.0.9"}

        self.dispatcher.register("Catalog.GetNode", lookup)
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Catalog.GetNode", "db1"))
        self.assertEqual(
            self.responses(transport), [Response(1, {"Node": "db1", "Address": "10.0.0.9"})]
        )

    def test_unknown_method(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(9, "Nope.Nope"))
        self.assertEqual(
            self.responses(transport), [Response(9, error="rpc: can't find method Nope.Nope")]
        )
        self.assertEqual(self.lines(), [])

    def test_handler_error_is_answered_quietly(self) -> None:
        def leaderless(args: Any) -> Any:
            raise HandlerError("No cluster leader")

        self.dispatcher.register("Catalog.Register", leaderless)
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Catalog.Register", {}))
        self.assertEqual(self.responses(transport), [Response(1, error="No cluster leader")])
        self.assertEqual(self.lines(), [])

    def test_unexpected_exception_logs_one_error_line(self) -> None:
        def buggy(args: Any) -> Any:
            table: dict[str, int] = {}
            return table["missing"]

        self.dispatcher.register("Bug.Sync", buggy)
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Bug.Sync") + request(2, "Wait.Wait", "w"))
        self.waiting["w"].errback(RuntimeError("deferred boom"))
        answers = self.responses(transport)
        self.assertEqual(
            answers, [Response(1, error="'missing'"), Response(2, error="deferred boom")]
        )
        self.assertEqual(
            self.lines(),
            [
                "RPC handler failed method=Bug.Sync error=KeyError('missing') conn=from=10.0.0.2:50123",
                "RPC handler failed method=Wait.Wait error=RuntimeError('deferred boom') conn=from=10.0.0.2:50123",
            ],
        )
        self.assertEqual(self.lines("ERROR"), self.lines())
        self.assertFalse([e for e in self.log if "log_failure" in e])
        self.assertFalse(transport.disconnecting)

    def test_exception_without_text_answers_its_type(self) -> None:
        def empty(args: Any) -> Any:
            raise ValueError()

        self.dispatcher.register("Bug.Empty", empty)
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Bug.Empty"))
        self.assertEqual(self.responses(transport), [Response(1, error="ValueError")])

    def test_unencodable_result(self) -> None:
        self.dispatcher.register("Bug.Result", lambda args: object())
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Bug.Result"))
        [answer] = self.responses(transport)
        self.assertTrue(answer.error.startswith("rpc: can't encode response: can't encode: "))  # type: ignore[union-attr]
        self.assertEqual(len(self.lines("ERROR")), 1)

    def test_too_large_result(self) -> None:
        self.dispatcher.register("Big.Big", lambda args: b"x" * MAX_FRAME_SIZE)
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Big.Big"))
        [answer] = self.responses(transport)
        self.assertEqual(
            answer.error,
            "rpc: can't encode response: frame too large: 8388632 bytes (limit 8388608)",
        )

    def test_connection_loss_cancels_calls_in_flight(self) -> None:
        cancelled: list[str] = []

        def blocking(args: Any) -> Deferred[Any]:
            return Deferred(lambda d: cancelled.append(args))

        self.dispatcher.register("KVS.Get", blocking)
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "KVS.Get", "a") + request(2, "Wait.Wait", "w"))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(cancelled, ["a"])
        self.assertTrue(self.waiting["w"].called)  # cancelled (no canceller: CancelledError)
        self.waiting["w"].callback("late")  # cancelled without a canceller: ignored
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.lines(), [])

    def test_registering_twice(self) -> None:
        with self.assertRaises(ValueError):
            self.dispatcher.register("Echo.Echo", lambda args: args)
        self.assertEqual(self.dispatcher.methods, ["Echo.Echo", "Wait.Wait"])
        with self.assertRaises(ValueError):
            self.factory.register(PROTOCOL_RAFT, lambda connection: None)  # type: ignore[arg-type,return-value]


class InFlightLimitTests(Harness):
    max_in_flight = 2

    def test_calls_beyond_the_limit_are_refused(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + b"".join(request(i, "Wait.Wait", i) for i in (1, 2, 3)))
        self.assertEqual(
            self.responses(transport), [Response(3, error="rpc: too many calls in flight")]
        )
        self.waiting[1].callback("one")
        protocol.dataReceived(request(4, "Echo.Echo", "four"))
        self.assertEqual(self.responses(transport), [Response(1, "one"), Response(4, "four")])


class JunkTests(Harness):
    def assert_dropped(self, transport: StringTransport, line: str) -> None:
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.lines("WARN"), [line])
        self.assertEqual(self.lines(), [line])

    def test_wrong_protocol_byte(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assert_dropped(transport, "unrecognized RPC byte byte=71 conn=from=10.0.0.2:50123")
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(RPC + request(1, "Echo.Echo"))  # ignored once closing
        self.assertEqual(transport.value(), b"")

    def test_junk_bytes(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Echo.Echo", 1) + struct.pack(">I", 1) + b"\xc1")
        self.assertEqual(self.responses(transport), [Response(1, 1)])
        self.assert_dropped(
            transport,
            "closing connection after malformed input error=malformed msgpack: FormatError"
            " conn=from=10.0.0.2:50123",
        )

    def test_not_a_request(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + encode_frame({"method": "Echo.Echo"}))
        self.assert_dropped(
            transport,
            "closing connection after malformed input"
            " error=request id must be an unsigned 64-bit integer conn=from=10.0.0.2:50123",
        )

    def test_duplicate_id_in_flight(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Wait.Wait", "a") + request(1, "Echo.Echo"))
        self.assert_dropped(
            transport,
            "closing connection after malformed input error=duplicate request id 1"
            " conn=from=10.0.0.2:50123",
        )

    def test_oversize_frame_refused_from_its_header(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + struct.pack(">I", MAX_FRAME_SIZE + 1))
        self.assert_dropped(
            transport,
            "closing connection after malformed input"
            " error=frame too large: 8388609 bytes (limit 8388608) conn=from=10.0.0.2:50123",
        )

    def test_a_buggy_channel_closes_only_its_connection(self) -> None:
        class Buggy:
            def __init__(self, connection: Any) -> None:
                pass

            def frame_received(self, value: Any) -> None:
                raise RuntimeError("channel bug")

            def busy(self) -> bool:
                return False

            def connection_lost(self) -> None:
                pass

        self.factory.register(0x03, Buggy)
        protocol, transport = self.connect()
        protocol.dataReceived(b"\x03" + encode_frame(1))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            self.lines("ERROR"),
            ["failed to handle frame error=RuntimeError('channel bug') conn=from=10.0.0.2:50123"],
        )

    def test_connection_closed_mid_frame(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Echo.Echo")[:3])
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            self.lines("DEBUG"),
            ["connection closed in the middle of a frame conn=from=10.0.0.2:50123"],
        )


class TimeoutTests(Harness):
    def test_handshake_timeout(self) -> None:
        protocol, transport = self.connect()
        self.clock.advance(HANDSHAKE_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            self.lines(), ["closing connection: no protocol byte received conn=from=10.0.0.2:50123"]
        )

    def test_idle_timeout(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC)
        self.clock.advance(100)
        protocol.dataReceived(request(1, "Echo.Echo"))
        self.clock.advance(IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.lines("DEBUG"), ["closing idle connection conn=from=10.0.0.2:50123"])

    def test_calls_in_flight_keep_the_connection(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RPC + request(1, "Wait.Wait", "w"))
        self.clock.pump([60.0] * 20)  # a 20-minute blocking query
        self.assertFalse(transport.disconnecting)
        self.waiting["w"].callback("done")
        self.assertEqual(self.responses(transport), [Response(1, "done")])
        self.clock.advance(IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(60)
        self.assertTrue(transport.disconnecting)

    def test_disconnect_all(self) -> None:
        connections = [self.connect() for _ in range(3)]
        self.factory.disconnect_all()
        self.assertTrue(all(t.disconnecting for _, t in connections))


class RaftHookTests(Harness):
    def test_messages_are_delivered(self) -> None:
        protocol, transport = self.connect()
        messages = [{"type": "RequestVote", "term": 2}, {"type": "AppendEntries", "term": 3}]
        protocol.dataReceived(RAFT + b"".join(encode_frame(m) for m in messages))
        self.assertEqual(self.raft_messages, messages)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)

    def test_a_failing_node_logs_and_keeps_the_stream(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(
            RAFT + encode_frame({"type": "Crash"}) + encode_frame({"type": "RequestVote"})
        )
        self.assertEqual(self.raft_messages, [{"type": "RequestVote"}])
        self.assertEqual(
            self.lines("ERROR"),
            [
                "failed to handle Raft message type=Crash error=RuntimeError('node bug')"
                " conn=from=10.0.0.2:50123"
            ],
        )
        self.assertFalse(transport.disconnecting)

    def test_junk_message(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(RAFT + encode_frame([1, 2]))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            self.lines("WARN"),
            [
                "closing connection after malformed input"
                " error=raft message must be a map with a text type conn=from=10.0.0.2:50123"
            ],
        )

    def test_without_a_raft_handler_the_byte_is_refused(self) -> None:
        self.factory = rpc_server_factory(
            self.dispatcher, clock=self.clock, logger=HcLogger("agent.server.rpc")
        )
        protocol, transport = self.connect()
        protocol.dataReceived(RAFT)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            self.lines("WARN"), ["unrecognized RPC byte byte=2 conn=from=10.0.0.2:50123"]
        )


class FuzzTests(Harness):
    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from([b"", RPC, RAFT]),
        st.lists(st.binary(min_size=1, max_size=30), max_size=8),
    )
    def test_junk_never_escapes_the_connection(self, first: bytes, chunks: list[bytes]) -> None:
        """Whatever arrives, the connection answers, ignores or closes; never raises or logs ERROR."""
        protocol, transport = self.connect()
        for chunk in [first, *chunks]:
            if chunk:
                protocol.dataReceived(chunk)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.lines("ERROR"), [])
        decode_frames(transport.value())  # whatever was written is well formed
        self.assertEqual(self.clock.getDelayedCalls(), [])
