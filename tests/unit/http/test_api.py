"""
The HTTP API in memory: treq's StubTreq against the real resource tree of a
dev agent built on a memory reactor.  Shapes, headers, status codes, errors.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.build import build_agent
from consul_tw.catalog.store import NODES
from consul_tw.config import build_config
from consul_tw.http.root import build_site
from consul_tw.testing.reactor import MemoryReactorWithUDP

NODE_ID = "7a82fb12-a621-004b-a8cd-98861b80d64c"


class ApiTestCase(SynchronousTestCase):
    leader = True

    def setUp(self) -> None:
        self.reactor = MemoryReactorWithUDP()
        config = build_config(
            dev=True,
            server=False,
            flags={"node": "host"},
            config_files=[],
            hostname="h",
            new_uuid=lambda: NODE_ID,
        )
        self.service = build_agent(config, self.reactor)
        self.agent = self.service.agent
        self.service.startService()
        if self.leader:
            self.reactor.advance(0.2)
        self.site = build_site(self.agent, logger=HcLogger("agent.http"))
        self.treq = StubTreq(self.site.resource)
        self.addCleanup(self.service.stopService)

    def settle(self) -> None:
        """Let the leader's read barrier and Raft's group commit run (a turn or two)."""
        for _ in range(3):
            self.reactor.advance(0)
            self.treq.flush()

    def request(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        pending = self.treq.request(method, "http://127.0.0.1:8500" + url, **kwargs)
        self.settle()
        response = self.successResultOf(pending)
        body = self.successResultOf(response.content())
        headers = {
            k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()
        }
        return response.code, headers, body

    def get_json(self, url: str) -> tuple[Any, dict[str, str]]:
        code, headers, body = self.request("GET", url)
        self.assertEqual(code, 200, body)
        self.assertEqual(headers["content-type"], "application/json")
        return json.loads(body), headers


class CatalogTests(ApiTestCase):
    def test_nodes_shape_and_headers(self) -> None:
        body, headers = self.get_json("/v1/catalog/nodes")
        self.assertEqual(len(body), 1)
        self.assertEqual(
            list(body[0]),
            [
                "ID",
                "Node",
                "Address",
                "Datacenter",
                "TaggedAddresses",
                "Meta",
                "CreateIndex",
                "ModifyIndex",
            ],
        )
        self.assertEqual(body[0]["ID"], NODE_ID)
        self.assertEqual(
            body[0]["TaggedAddresses"],
            {
                "lan": "127.0.0.1",
                "lan_ipv4": "127.0.0.1",
                "wan": "127.0.0.1",
                "wan_ipv4": "127.0.0.1",
            },
        )
        self.assertEqual(body[0]["Meta"], {"consul-network-segment": ""})
        self.assertEqual(headers["x-consul-index"], str(self.agent.catalog().max_index(NODES)))
        self.assertEqual(
            (headers["x-consul-knownleader"], headers["x-consul-lastcontact"]), ("true", "0")
        )

    def test_dev_output_is_pretty_with_newline(self) -> None:
        _, _, body = self.request("GET", "/v1/catalog/datacenters")
        self.assertEqual(body, b'[\n    "dc1"\n]\n')

    def test_node_with_services_and_unknown_node(self) -> None:
        body, _ = self.get_json("/v1/catalog/node/HOST")
        self.assertEqual(body["Node"]["Node"], "host")
        self.assertEqual(body["Services"]["consul"]["Port"], 8300)
        self.assertEqual(body["Services"]["consul"]["Weights"], {"Passing": 1, "Warning": 1})
        code, _, raw = self.request("GET", "/v1/catalog/node/nobody")
        self.assertEqual((code, raw), (200, b"null\n"))
        code, _, raw = self.request("GET", "/v1/catalog/node/")
        self.assertEqual((code, raw), (400, b"Missing node name"))

    def test_health_node_shows_serf_health(self) -> None:
        body, headers = self.get_json("/v1/health/node/host")
        self.assertEqual(
            [(c["CheckID"], c["Name"], c["Status"], c["Output"]) for c in body],
            [("serfHealth", "Serf Health Status", "passing", "Agent alive and reachable")],
        )
        self.assertEqual(self.get_json("/v1/health/node/nobody")[0], [])

    def test_services_and_service(self) -> None:
        body, _ = self.get_json("/v1/catalog/services")
        self.assertEqual(body, {"consul": []})
        body, _ = self.get_json("/v1/catalog/service/consul")
        self.assertEqual(
            (body[0]["ServiceID"], body[0]["ServicePort"], body[0]["Node"]),
            ("consul", 8300, "host"),
        )
        body, _ = self.get_json("/v1/catalog/service/nothing")
        self.assertEqual(body, [])

    def test_consistency_and_dc_errors(self) -> None:
        code, headers, body = self.request("GET", "/v1/catalog/nodes?stale&consistent")
        self.assertEqual(
            (code, body), (400, b"Cannot specify ?stale with ?consistent, conflicting semantics.")
        )
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        code, _, body = self.request("GET", "/v1/catalog/nodes?dc=elsewhere")
        self.assertEqual((code, body), (500, b"No path to datacenter"))
        _, headers = self.get_json("/v1/catalog/nodes?stale")
        self.assertEqual(headers["x-consul-effective-consistency"], "stale")

    def test_bad_blocking_parameters(self) -> None:
        self.assertEqual(
            self.request("GET", "/v1/catalog/nodes?index=abc")[::2], (400, b"Invalid index")
        )
        self.assertEqual(
            self.request("GET", "/v1/catalog/nodes?index=1&wait=30")[::2],
            (400, b"Invalid wait time"),
        )

    def test_max_stale_allows_stale_reads_and_is_validated(self) -> None:
        _, headers = self.get_json("/v1/catalog/nodes?max_stale=5s")
        self.assertEqual(headers["x-consul-effective-consistency"], "stale")
        code, _, body = self.request("GET", "/v1/catalog/nodes?max_stale=soon")
        self.assertEqual((code, body), (400, b'Invalid max_stale value "soon"'))
        code, _, body = self.request("GET", "/v1/catalog/nodes?max_stale=1s&consistent")
        self.assertEqual(code, 400)

    def test_blocking_query_waits_for_change_or_timeout(self) -> None:
        index = self.agent.catalog().max_index(NODES)
        pending = self.treq.get(f"http://127.0.0.1:8500/v1/catalog/nodes?index={index}&wait=2s")
        self.settle()
        self.assertNoResult(pending)
        self.reactor.advance(2 + 2 / 16 + 0.01)
        self.treq.flush()
        response = self.successResultOf(pending)
        self.assertEqual(response.headers.getRawHeaders("X-Consul-Index"), [str(index)])

    def test_blocking_query_wakes_on_write(self) -> None:
        from consul_tw.catalog.commands import NodeSpec, Register

        index = self.agent.catalog().max_index(NODES)
        pending = self.treq.get(f"http://127.0.0.1:8500/v1/catalog/nodes?index={index}")
        self.settle()
        self.assertNoResult(pending)
        self.agent.write(
            Register(node=NodeSpec(id="", node="other", address="10.0.0.9", datacenter="dc1"))
        )
        self.reactor.advance(0)
        self.reactor.advance(0)
        self.treq.flush()
        response = self.successResultOf(pending)
        self.assertGreater(int(response.headers.getRawHeaders("X-Consul-Index")[0]), index)
        self.assertEqual(len(json.loads(self.successResultOf(response.content()))), 2)

    def test_zero_wait_means_the_default_wait(self) -> None:
        index = self.agent.catalog().max_index(NODES)
        pending = self.treq.get(f"http://127.0.0.1:8500/v1/catalog/nodes?index={index}&wait=0s")
        self.settle()
        self.reactor.advance(60)
        self.treq.flush()
        self.assertNoResult(pending)
        self.reactor.advance(300)
        self.treq.flush()
        self.assertEqual(self.successResultOf(pending).code, 200)

    def test_client_hanging_up_on_a_blocking_query_is_quiet(self) -> None:
        from twisted.logger import globalLogPublisher
        from twisted.web.test.requesthelper import DummyRequest

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        index = self.agent.catalog().max_index(NODES)
        request = DummyRequest([b""])
        request.path = b"/v1/catalog/nodes"
        request.uri = f"/v1/catalog/nodes?index={index}&wait=30s".encode()
        request.content = None
        self.site.resource.render(request)
        self.reactor.advance(0)  # past the leader's read barrier: now it blocks
        before = {c for c in self.reactor.getDelayedCalls() if c.getTime() > self.reactor.seconds()}
        now = self.reactor.seconds()
        waiting = {c for c in before if 30 <= c.getTime() - now <= 30 + 30 / 16}
        self.assertEqual(len(waiting), 1, "the blocking query's timeout")
        # The client goes away before the index moves.
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        request.processingFailed(Failure(ConnectionDone()))
        self.reactor.advance(0)
        self.assertFalse([c for c in waiting if c.active()])
        self.assertFalse([e for e in events if e.get("hclog_level") == "ERROR"])
        self.assertEqual(request.written, [])


class NoLeaderTests(ApiTestCase):
    leader = False

    def test_default_read_needs_a_leader_stale_does_not(self) -> None:
        # Don't hold the request for a leader (tests/unit/server/test_router.py does).
        assert self.agent.router is not None
        self.agent.router.hold_timeout = 0.0
        code, _, body = self.request("GET", "/v1/catalog/nodes")
        self.assertEqual((code, body), (500, b"No cluster leader"))
        body, headers = self.get_json("/v1/catalog/nodes?stale")
        self.assertEqual(
            (body, headers["x-consul-knownleader"], headers["x-consul-index"]), ([], "false", "1")
        )
        self.assertEqual(self.get_json("/v1/status/leader")[0], "")


class AgentAndStatusTests(ApiTestCase):
    def test_members(self) -> None:
        body, headers = self.get_json("/v1/agent/members")
        self.assertNotIn("x-consul-index", headers)
        (member,) = body
        self.assertEqual(
            (member["Name"], member["Addr"], member["Port"], member["Status"]),
            ("host", "127.0.0.1", 8301, 1),
        )
        self.assertEqual(member["Tags"]["role"], "consul")
        self.assertEqual(member["Tags"]["id"], NODE_ID)
        self.assertEqual(
            [
                member[k]
                for k in (
                    "ProtocolMin",
                    "ProtocolMax",
                    "ProtocolCur",
                    "DelegateMin",
                    "DelegateMax",
                    "DelegateCur",
                )
            ],
            [1, 5, 2, 2, 5, 4],
        )
        wan, _ = self.get_json("/v1/agent/members?wan=1")
        self.assertEqual((wan[0]["Name"], wan[0]["Port"]), ("host.dc1", 8302))
        code, _, body = self.request("GET", "/v1/agent/members?wan=1&segment=alpha")
        self.assertEqual((code, body), (400, b"Cannot provide a segment with wan=true"))

    def test_self(self) -> None:
        body, _ = self.get_json("/v1/agent/self")
        self.assertEqual(list(body), ["Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"])
        self.assertEqual(
            {k: body["Config"][k] for k in ("Datacenter", "NodeName", "NodeID", "Server")},
            {"Datacenter": "dc1", "NodeName": "host", "NodeID": NODE_ID, "Server": True},
        )
        self.assertEqual(body["Stats"]["raft"]["state"], "Leader")
        self.assertEqual(body["Stats"]["raft"]["last_contact"], "0")
        self.assertEqual(body["Stats"]["consul"]["leader_addr"], "127.0.0.1:8300")

    def test_status(self) -> None:
        self.assertEqual(self.get_json("/v1/status/leader")[0], "127.0.0.1:8300")
        self.assertEqual(self.get_json("/v1/status/peers")[0], ["127.0.0.1:8300"])

    def test_errors_are_consul_one_liners(self) -> None:
        code, headers, body = self.request("GET", "/v1/agent/leave")
        self.assertEqual(
            (code, body, headers["allow"]), (405, b"method GET not allowed", "OPTIONS,PUT")
        )
        code, _, body = self.request("GET", "/v1/nope")
        self.assertEqual(
            (code, body), (404, b"Invalid URL path: not a recognized HTTP API endpoint")
        )
        code, headers, _ = self.request("OPTIONS", "/v1/catalog/nodes")
        self.assertEqual((code, headers["allow"]), (200, "OPTIONS,GET"))
        code, _, body = self.request("GET", "/v1/catalog/node/%ff")
        self.assertEqual((code, body), (400, b"Invalid URL encoding"))
        self.assertNotIn("server", self.request("GET", "/v1/status/leader")[1])
        code, headers, body = self.request("GET", "/")
        self.assertEqual((code, headers["content-type"]), (200, "text/plain; charset=utf-8"))
        self.assertTrue(body.startswith(b"Consul Agent: UI disabled."))

    def test_compact_json_without_dev(self) -> None:
        import attrs

        self.agent.config = attrs.evolve(self.agent.config, pretty_json=False)
        self.assertEqual(self.request("GET", "/v1/catalog/datacenters")[2], b'["dc1"]')
        self.assertEqual(
            self.request("GET", "/v1/catalog/datacenters?pretty")[2], b'[\n    "dc1"\n]\n'
        )

    def test_leave_answers_then_asks_to_exit(self) -> None:
        pending = self.treq.put("http://127.0.0.1:8500/v1/agent/leave")
        self.assertNoResult(pending)
        for _ in range(60):  # the pools' leaves, then the 5 s drain, in small steps
            self.reactor.advance(0.1)
        self.treq.flush()
        response = self.successResultOf(pending)
        self.assertEqual((response.code, self.successResultOf(response.content())), (200, b""))
        self.reactor.advance(0)
        self.assertTrue(self.reactor.hasStopped)


class JsonEncodingTests(SynchronousTestCase):
    def test_go_escapes_and_layouts(self) -> None:
        from consul_tw.http._json import encode

        value = {"b": "<a&b>", "a": "caf\u00e9 \u2028"}
        self.assertEqual(
            encode(value, pretty=False),
            '{"b":"\\u003ca\\u0026b\\u003e","a":"café \\u2028"}'.encode(),
        )
        self.assertEqual(encode([1], pretty=True), b"[\n    1\n]\n")
