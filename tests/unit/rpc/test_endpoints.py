"""
Forwarding between a client agent and a server over the RPC methods:
the server's dispatcher on a dev agent, and a client agent whose RPC
caller is wired straight to it (no sockets, one Clock).
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.catalog.commands import NodeSpec, Register, encode_command
from consul_tw.http.root import build_site
from consul_tw.rpc.endpoints import build_dispatcher
from consul_tw.rpc.protocol import HandlerError
from consul_tw.testing.agents import client_of, dev_server
from consul_tw.testing.reactor import MemoryReactorWithUDP


class DirectCaller:
    """An RpcCaller that calls the server's dispatcher in memory."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.calls: list[tuple[str, Any]] = []

    def call(
        self, host: str, port: int, method: str, args: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        self.calls.append((method, args))
        return maybeDeferred(self.dispatcher.dispatch, method, args)

    def close(self) -> None:
        pass


class ForwardingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorWithUDP()
        self.server = dev_server(self.reactor)
        self.dispatcher = build_dispatcher(self.server.agent)
        self.caller = DirectCaller(self.dispatcher)
        self.client = client_of("srv", self.caller)
        self.treq = StubTreq(build_site(self.client.agent, logger=HcLogger("agent.http")).resource)

    def get(self, path: str) -> tuple[int, bytes, Any]:
        pending = self.treq.get("http://127.0.0.1:8500" + path)
        for _ in range(5):  # the leader's read barrier fires a turn or two later
            self.reactor.advance(0)
            self.treq.flush()
        response = self.successResultOf(pending)
        return response.code, self.successResultOf(response.content()), response.headers

    def test_client_reads_answer_like_the_server(self) -> None:
        code, body, headers = self.get("/v1/catalog/nodes")
        self.assertEqual(code, 200)
        self.assertIn(b'"Node":"srv"', body)
        self.assertEqual(headers.getRawHeaders("X-Consul-KnownLeader"), ["true"])
        self.assertEqual(self.caller.calls[-1][0], "Catalog.Read")
        code, body, _ = self.get("/v1/catalog/node/srv")
        self.assertIn(b'"consul"', body)

    def test_client_writes_go_through_the_server(self) -> None:
        command = Register(node=NodeSpec(id="", node="cli", address="10.0.0.5", datacenter="dc1"))
        done = self.client.agent.write(command)
        self.reactor.advance(0)
        self.successResultOf(done)
        self.assertIsNotNone(self.server.agent.catalog().get_node("cli"))

    def test_server_errors_reach_the_client(self) -> None:
        bad = Register(node=NodeSpec(id="", node="", address="1.1.1.1", datacenter="dc1"))
        applying = maybeDeferred(self.dispatcher.dispatch, "Catalog.Apply", encode_command(bad))
        self.reactor.advance(0)  # the writer's Deferred fires one turn after the commit
        failure = self.failureResultOf(applying)
        self.assertIsInstance(failure.value, HandlerError)
        self.assertEqual(failure.getErrorMessage(), "Must provide node")
        self.failureResultOf(
            maybeDeferred(self.dispatcher.dispatch, "Catalog.Read", "junk"), HandlerError
        )

    def test_status_methods(self) -> None:
        leader = self.successResultOf(
            maybeDeferred(self.dispatcher.dispatch, "Status.Leader", None)
        )
        peers = self.successResultOf(maybeDeferred(self.dispatcher.dispatch, "Status.Peers", None))
        self.assertEqual((leader, peers), ("127.0.0.1:8300", ["127.0.0.1:8300"]))

    def test_client_status_and_operator_come_from_a_server(self) -> None:
        leader = self.server.agent.leader_address()
        code, body, _ = self.get("/v1/status/leader")
        self.assertEqual((code, json.loads(body)), (200, leader))
        code, body, _ = self.get("/v1/status/peers")
        self.assertEqual(json.loads(body), [leader])
        code, body, _ = self.get("/v1/operator/raft/configuration")
        (server,) = json.loads(body)["Servers"]
        self.assertEqual(
            (server["Node"], server["Address"], server["Leader"], server["Voter"]),
            ("srv", leader, True, True),
        )
        self.assertEqual(
            [call[0] for call in self.caller.calls[-3:]],
            ["Status.Leader", "Status.Peers", "Operator.RaftGetConfiguration"],
        )

    def test_malformed_read_options_are_refused_not_raised(self) -> None:
        for options in (
            {"wait": float("inf")},
            {"wait": float("nan")},
            {"wait": -1.0},
            {"index": float("inf")},
            {"index": -5},
            {"max_stale": float("nan")},
        ):
            read = maybeDeferred(
                self.dispatcher.dispatch,
                "Catalog.Read",
                {"name": "Catalog.ListNodes", "args": {}, "options": options},
            )
            failure = self.failureResultOf(read, HandlerError)
            self.assertEqual(failure.getErrorMessage(), "Catalog.Read: malformed options")
