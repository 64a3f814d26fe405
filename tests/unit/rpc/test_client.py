"""
RpcClient against real server factories over in-memory connections
(MemoryReactorClock records the dials; iosim pumps the bytes): pooling,
pipelining, Consul's error texts, timeouts on the clock, cancellation,
close().
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import NoRouteError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.test.iosim import IOPump
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.rpc.client import CallTimeout, ConnectError, RemoteError, RpcClient, RpcError
from consul_tw.rpc.framing import encode_frame
from consul_tw.rpc.protocol import HandlerError, RpcDispatcher, rpc_server_factory
from tests.unit.rpc.dials import accept_dial, flush, refuse_dial

SERVER = ("10.0.0.1", 8300)
OTHER = ("10.0.0.3", 8300)
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 7.0


class Network:
    """Dials recorded by a MemoryReactorClock, completed or refused by hand."""

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.servers: dict[tuple[str, int], Factory] = {}
        self.pumps: list[IOPump] = []

    def dials(self) -> list[tuple[str, int, float]]:
        return [(host, port, timeout) for host, port, _, timeout, _ in self.reactor.tcpClients]

    def accept(self) -> IOPump:
        return accept_dial(
            self.reactor,
            self.pumps,
            lambda host, port, client: self.servers[(host, port)].buildProtocol(client),
        )

    def refuse(self, reason: Exception | None = None) -> None:
        refuse_dial(self.reactor, reason)

    def flush(self) -> None:
        flush(self.pumps)


class Harness(SynchronousTestCase):
    def setUp(self) -> None:
        self.net = Network()
        self.log = EventLoggingObserver.createWithCleanup(
            self,
            globalLogPublisher,  # type: ignore[arg-type]
        )
        self.waiting: dict[Any, Deferred[Any]] = {}
        self.dispatcher = RpcDispatcher()
        self.dispatcher.register("Echo.Echo", lambda args: args)
        self.dispatcher.register("Wait.Wait", self._wait)
        self.server = rpc_server_factory(
            self.dispatcher, clock=self.net.reactor, logger=HcLogger("agent.server.rpc")
        )
        self.net.servers[SERVER] = self.server
        self.client = RpcClient(
            self.net.reactor,
            self.net.reactor,
            CONNECT_TIMEOUT,
            REQUEST_TIMEOUT,
            HcLogger("agent.client.rpc"),
        )

    def tearDown(self) -> None:
        self.client.close()
        self.net.flush()
        self.assertEqual(self.server.connections, set())
        self.assertEqual(self.net.reactor.getDelayedCalls(), [])

    def _wait(self, key: Any) -> Deferred[Any]:
        self.waiting[key] = Deferred()
        return self.waiting[key]

    def call(
        self, method: str, args: Any = None, server: tuple[str, int] = SERVER
    ) -> Deferred[Any]:
        return self.client.call(server[0], server[1], method, args)

    def error_text(self, d: Deferred[Any], kind: type = RpcError) -> str:
        return str(self.failureResultOf(d, kind).value)

    def lines(self, level: str | None = None) -> list[str]:
        return [
            e["hclog_message"]
            for e in self.log
            if "hclog_message" in e and (level is None or e["hclog_level"] == level)
        ]


class PoolTests(Harness):
    def test_one_connection_reused(self) -> None:
        first = self.call("Echo.Echo", "one")
        self.assertEqual(self.net.dials(), [("10.0.0.1", 8300, CONNECT_TIMEOUT)])
        self.assertNoResult(first)
        pump = self.net.accept()
        self.assertEqual(self.successResultOf(first), "one")
        second = self.call("Echo.Echo", {"two": [2]})
        pump.flush()
        self.assertEqual(self.successResultOf(second), {"two": [2]})
        self.assertEqual(self.net.dials(), [])
        self.assertEqual(len(self.server.connections), 1)
        self.assertEqual(self.client.connections, ["10.0.0.1:8300"])

    def test_one_connection_per_server(self) -> None:
        self.net.servers[OTHER] = self.server
        calls = [self.call("Echo.Echo", server=s) for s in (SERVER, OTHER, SERVER)]
        self.assertEqual([d[:2] for d in self.net.dials()], [SERVER, OTHER])
        self.assertEqual(self.client.connections, ["10.0.0.1:8300", "10.0.0.3:8300"])
        self.net.accept()
        self.net.accept()
        self.assertEqual([self.successResultOf(d) for d in calls], [None, None, None])
        self.assertEqual(len(self.server.connections), 2)

    def test_pipelined_calls_answered_out_of_order(self) -> None:
        calls = [self.call("Wait.Wait", i) for i in range(10)]  # queued while dialling
        pump = self.net.accept()
        self.assertEqual(sorted(self.waiting), list(range(10)))  # all in flight at once
        for i in reversed(range(10)):
            self.waiting[i].callback(f"answer {i}")
            pump.flush()
            self.assertEqual(self.successResultOf(calls[i]), f"answer {i}")
        self.assertEqual(len(self.server.connections), 1)

    def test_reconnect_after_loss(self) -> None:
        pending = self.call("Wait.Wait", "w")
        pump = self.net.accept()
        self.server.disconnect_all()
        pump.flush()
        self.assertEqual(self.error_text(pending), "rpc error making call: EOF")
        self.assertEqual(self.client.connections, [])
        again = self.call("Echo.Echo", "again")
        self.assertEqual(len(self.net.dials()), 1)
        self.net.accept()
        self.assertEqual(self.successResultOf(again), "again")

    def test_idle_connection_closed(self) -> None:
        self.call("Echo.Echo")
        pump = self.net.accept()
        self.net.reactor.advance(self.client.idle_timeout - 1)
        self.assertEqual(self.client.connections, ["10.0.0.1:8300"])
        self.net.reactor.advance(1)
        pump.flush()
        self.assertEqual(self.client.connections, [])
        self.assertEqual(self.server.connections, set())
        self.assertEqual(self.lines("DEBUG"), ["closing idle RPC connection"])

    def test_calls_in_flight_keep_the_connection(self) -> None:
        d = self.client.call(*SERVER, "Wait.Wait", "blocking", timeout=600)
        pump = self.net.accept()
        self.net.reactor.advance(self.client.idle_timeout * 3)
        self.assertEqual(self.client.connections, ["10.0.0.1:8300"])
        self.waiting["blocking"].callback("changed")
        pump.flush()
        self.assertEqual(self.successResultOf(d), "changed")
        self.net.reactor.advance(self.client.idle_timeout)
        pump.flush()
        self.assertEqual(self.client.connections, [])


class ErrorTests(Harness):
    def test_remote_error(self) -> None:
        d = self.call("Nope.Nope")
        self.net.accept()
        failure = self.failureResultOf(d, RemoteError)
        self.assertEqual(
            str(failure.value), "rpc error making call: rpc: can't find method Nope.Nope"
        )
        self.assertEqual(failure.value.remote, "rpc: can't find method Nope.Nope")

    def test_connection_refused(self) -> None:
        calls = [self.call("Echo.Echo", i) for i in range(3)]
        self.net.refuse()
        for d in calls:
            self.assertEqual(
                self.error_text(d, ConnectError),
                "rpc error: failed to get conn: dial tcp 10.0.0.1:8300: connect: connection refused",
            )
        self.assertEqual(self.client.connections, [])
        retry = self.call("Echo.Echo", "retry")
        self.net.accept()
        self.assertEqual(self.successResultOf(retry), "retry")

    def test_other_dial_errors(self) -> None:
        d = self.client.call("::1", 8300, "Echo.Echo")
        self.net.refuse(NoRouteError())
        self.assertEqual(
            self.error_text(d, ConnectError),
            "rpc error: failed to get conn: dial tcp [::1]:8300: connect: no route to host",
        )

    def test_dial_that_cannot_start(self) -> None:
        def refuse_at_once(*args: Any, **kwargs: Any) -> Any:
            raise ValueError("invalid host")

        self.net.reactor.connectTCP = refuse_at_once  # type: ignore[method-assign]
        d = self.client.call("bad host", 8300, "Echo.Echo")
        self.assertEqual(
            self.error_text(d, ConnectError),
            "rpc error: failed to get conn: dial tcp bad host:8300: invalid host",
        )
        self.assertEqual(self.client.connections, [])

    def test_connect_timeout(self) -> None:
        self.client.request_timeout = CONNECT_TIMEOUT + 5
        d = self.call("Echo.Echo")
        self.net.reactor.advance(CONNECT_TIMEOUT)
        self.assertEqual(
            self.error_text(d, ConnectError),
            "rpc error: failed to get conn: dial tcp 10.0.0.1:8300: i/o timeout",
        )
        self.assertTrue(self.net.reactor.connectors[0].stoppedConnecting)
        late = self.net.reactor.tcpClients[0][2]
        self.assertIsNone(late.buildProtocol(IPv4Address("TCP", *SERVER)))
        self.net.refuse()  # the reactor's own report of the stopped dial: ignored

    def test_request_timeout(self) -> None:
        d = self.call("Wait.Wait", "slow")
        pump = self.net.accept()
        self.net.reactor.advance(REQUEST_TIMEOUT)
        self.assertEqual(
            self.error_text(d, CallTimeout), "rpc error making call: i/o deadline reached"
        )
        self.waiting["slow"].callback("too late")
        pump.flush()
        self.assertEqual(self.lines("DEBUG"), ["dropping RPC response for a forgotten call"])
        after = self.call("Echo.Echo", "still pooled")
        pump.flush()
        self.assertEqual(self.successResultOf(after), "still pooled")

    def test_timeout_per_call(self) -> None:
        d = self.client.call(*SERVER, "Wait.Wait", "blocking", timeout=600)
        self.net.accept()
        self.net.reactor.advance(599)
        self.assertNoResult(d)
        self.net.reactor.advance(1)
        self.failureResultOf(d, CallTimeout)

    def test_unencodable_args(self) -> None:
        d = self.call("Echo.Echo", object())
        self.assertTrue(self.error_text(d).startswith("rpc error: can't encode: "))
        self.assertEqual(self.net.dials(), [])

    def test_malformed_response(self) -> None:
        class Junk(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                self.transport.write(encode_frame({"no": "id"}))

        self.net.servers[OTHER] = Factory.forProtocol(Junk)
        d = self.call("Echo.Echo", server=OTHER)
        pump = self.net.accept()
        pump.flush()
        self.assertEqual(
            self.error_text(d),
            "rpc error making call: malformed response: response id must be an unsigned 64-bit integer",
        )
        self.assertTrue(pump.clientIO.disconnecting)
        self.assertEqual(self.client.connections, [])
        self.assertEqual(self.lines("WARN"), ["malformed RPC response"])

    def test_forwarded_failure_is_passed_on_quietly(self) -> None:
        """A server handler forwarding to an unreachable leader answers the client's text."""
        self.dispatcher.register(
            "Catalog.Register", lambda args: self.client.call(*OTHER, "Catalog.Register", args)
        )
        d = self.call("Catalog.Register", {})
        pump = self.net.accept()
        self.net.refuse()
        pump.flush()
        self.assertEqual(
            self.failureResultOf(d, RemoteError).value.remote,
            "rpc error: failed to get conn: dial tcp 10.0.0.3:8300: connect: connection refused",
        )
        self.assertEqual(self.lines("ERROR"), [])
        self.assertTrue(issubclass(RpcError, HandlerError))


class CancelTests(Harness):
    def test_cancel_in_flight(self) -> None:
        d = self.call("Wait.Wait", "w")
        pump = self.net.accept()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.waiting["w"].callback("late")
        pump.flush()
        self.assertEqual(self.lines("DEBUG"), ["dropping RPC response for a forgotten call"])
        self.assertEqual(self.client.connections, ["10.0.0.1:8300"])

    def test_cancel_while_dialling(self) -> None:
        d = self.call("Wait.Wait", "never sent")
        kept = self.call("Echo.Echo", "kept")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.net.accept()
        self.assertEqual(self.waiting, {})
        self.assertEqual(self.successResultOf(kept), "kept")

    def test_close(self) -> None:
        self.net.servers[OTHER] = self.server
        in_flight = self.call("Wait.Wait", "w")
        dialling = self.call("Echo.Echo", server=OTHER)
        pump = self.net.accept()
        closed = self.client.close()
        self.failureResultOf(in_flight, CancelledError)
        self.failureResultOf(dialling, CancelledError)
        self.assertTrue(self.net.reactor.connectors[0].stoppedConnecting)
        pump.flush()
        self.successResultOf(closed)
        self.assertEqual(self.server.connections, set())
        self.assertEqual(self.client.connections, [])
        self.assertEqual(
            self.error_text(self.call("Echo.Echo")),
            "rpc error: failed to get conn: rpc client is closed",
        )
        self.assertEqual(self.net.reactor.getDelayedCalls(), [])
