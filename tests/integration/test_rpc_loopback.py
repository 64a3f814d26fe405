"""
The server-RPC transport on the real reactor over 127.0.0.1: pipelined
calls on one pooled connection, Consul's refused-connection text, and a
server that survives a peer sending garbage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from consul_tw._logging import HcLogger
from consul_tw.rpc import ConnectError, RemoteError, RpcClient, RpcDispatcher, rpc_server_factory
from consul_tw.rpc.protocol import RpcServerFactory

pytestmark = pytest.mark.integration


class Server:
    def __init__(self) -> None:
        self.gates: dict[int, Deferred[Any]] = {}
        dispatcher = RpcDispatcher()
        dispatcher.register("Echo.Echo", lambda args: args)
        dispatcher.register("Gate.Wait", self._wait)
        dispatcher.register("Gate.Open", self._open)
        self.factory: RpcServerFactory = rpc_server_factory(
            dispatcher, clock=global_reactor, logger=HcLogger("agent.server.rpc")
        )
        self.port = global_reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.number: int = self.port.getHost().port  # type: ignore[attr-defined]

    def _wait(self, key: int) -> Deferred[Any]:
        self.gates[key] = Deferred()
        return self.gates[key]

    def _open(self, key: int) -> int:
        self.gates.pop(key).callback(key * 10)
        return key

    async def stop(self) -> None:
        self.factory.disconnect_all()
        await maybeDeferred(self.port.stopListening)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    running = Server()
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def client() -> AsyncIterator[RpcClient]:
    running = RpcClient(global_reactor, global_reactor, 5.0, 10.0, HcLogger("agent.client.rpc"))
    yield running
    await running.close()


@pytest_twisted.ensureDeferred
async def test_pipelined_calls_on_one_connection(server: Server, client: RpcClient) -> None:
    calls = [client.call("127.0.0.1", server.number, "Echo.Echo", {"n": i}) for i in range(100)]
    results = await gatherResults(calls)
    assert results == [{"n": i} for i in range(100)]
    assert len(server.factory.connections) == 1


@pytest_twisted.ensureDeferred
async def test_answers_out_of_order(server: Server, client: RpcClient) -> None:
    slow = client.call("127.0.0.1", server.number, "Gate.Wait", 7)
    # The gate only opens through a later call on the same connection.
    assert await client.call("127.0.0.1", server.number, "Gate.Open", 7) == 7
    assert await slow == 70
    assert len(server.factory.connections) == 1


@pytest_twisted.ensureDeferred
async def test_remote_error(server: Server, client: RpcClient) -> None:
    with pytest.raises(RemoteError, match="^rpc error making call: rpc: can't find method X.Y$"):
        await client.call("127.0.0.1", server.number, "X.Y")


@pytest_twisted.ensureDeferred
async def test_connection_refused(client: RpcClient) -> None:
    closed = Server()
    await closed.stop()
    with pytest.raises(ConnectError) as caught:
        await client.call("127.0.0.1", closed.number, "Echo.Echo")
    assert str(caught.value) == (
        f"rpc error: failed to get conn: dial tcp 127.0.0.1:{closed.number}:"
        " connect: connection refused"
    )


class Garbage(Protocol):
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


@pytest_twisted.ensureDeferred
async def test_server_survives_garbage(server: Server, client: RpcClient) -> None:
    endpoint = TCP4ClientEndpoint(global_reactor, "127.0.0.1", server.number)
    for junk in (
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x01\x00\x00\x00\x03\xc1\xc1\xc1",
        b"\x01\xff\xff\xff\xff",
    ):
        peer = await connectProtocol(endpoint, Garbage(junk))
        await peer.closed  # the server hung up on it
    assert await client.call("127.0.0.1", server.number, "Echo.Echo", "fine") == "fine"
