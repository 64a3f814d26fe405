"""
The HTTP API of a real dev agent, through treq and urllib: shapes, headers,
errors, a blocking query and the request log line.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid

import pytest
import pytest_twisted
import treq

from tests.integration.harness import AGENT_VERSION, assert_no_traceback

pytestmark = pytest.mark.integration

NODE = "http-node"

NODE_KEYS = [
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "Meta",
    "CreateIndex",
    "ModifyIndex",
]
MEMBER_KEYS = [
    "Name",
    "Addr",
    "Port",
    "Tags",
    "Status",
    "ProtocolMin",
    "ProtocolMax",
    "ProtocolCur",
    "DelegateMin",
    "DelegateMax",
    "DelegateCur",
]
TAGGED = {"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1", "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"}


@pytest.fixture(scope="module")
def agent(module_agents):
    return module_agents.start(NODE)


def get(agent, path: str) -> tuple[int, dict[str, str], str]:
    """A plain GET that returns error statuses instead of raising."""
    try:
        with urllib.request.urlopen(agent.url(path), timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def pretty(value) -> str:
    """Go's json.MarshalIndent with four spaces, plus the newline Consul adds."""
    return json.dumps(value, indent=4) + "\n"


def _header(response, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return None if values is None else values[0]


@pytest_twisted.inlineCallbacks
def test_catalog_nodes_shape_and_headers(agent):
    response = yield treq.get(agent.url("/v1/catalog/nodes"), persistent=False, timeout=10)
    body = yield response.text("utf-8")
    assert response.code == 200
    assert _header(response, "Content-Type") == "application/json"
    index = int(_header(response, "X-Consul-Index"))
    assert index >= 1
    assert _header(response, "X-Consul-KnownLeader") == "true"
    assert _header(response, "X-Consul-LastContact") == "0"

    nodes = json.loads(body)
    assert body == pretty(nodes)  # dev mode pretty-prints, 4 spaces, trailing newline
    assert len(nodes) == 1
    node = nodes[0]
    assert list(node) == NODE_KEYS
    assert str(uuid.UUID(node["ID"])) == node["ID"]
    assert node["Node"] == NODE
    assert node["Address"] == "127.0.0.1"
    assert node["Datacenter"] == "dc1"
    assert list(node["TaggedAddresses"].items()) == list(TAGGED.items())
    assert node["Meta"] == {"consul-network-segment": ""}
    assert 1 <= node["CreateIndex"] <= node["ModifyIndex"] <= index


def test_catalog_node_with_consul_service(agent):
    status, headers, body = get(agent, f"/v1/catalog/node/{NODE}")
    assert status == 200
    assert int(headers["X-Consul-Index"]) >= 1
    data = json.loads(body)
    assert list(data) == ["Node", "Services"]
    assert list(data["Node"]) == NODE_KEYS
    assert data["Node"]["Node"] == NODE
    consul = data["Services"]["consul"]
    assert consul["ID"] == "consul"
    assert consul["Service"] == "consul"
    assert consul["Tags"] == []
    assert consul["Address"] == ""
    assert consul["Port"] == agent.ports.server
    assert consul["Weights"] == {"Passing": 1, "Warning": 1}
    assert consul["EnableTagOverride"] is False
    assert list(consul)[:4] == ["ID", "Service", "Tags", "Address"]


def test_catalog_unknown_node_is_null(agent):
    status, headers, body = get(agent, "/v1/catalog/node/no-such-node")
    assert status == 200
    assert body.rstrip("\n") == "null"
    assert json.loads(body) is None
    assert int(headers["X-Consul-Index"]) >= 1


def test_catalog_datacenters(agent):
    status, _, body = get(agent, "/v1/catalog/datacenters")
    assert (status, json.loads(body)) == (200, ["dc1"])


def test_catalog_services(agent):
    status, _, body = get(agent, "/v1/catalog/services")
    assert (status, json.loads(body)) == (200, {"consul": []})


def test_status_leader_and_peers(agent):
    server = f"127.0.0.1:{agent.ports.server}"
    status, headers, body = get(agent, "/v1/status/leader")
    assert (status, json.loads(body)) == (200, server)
    assert "X-Consul-Index" not in headers
    status, _, body = get(agent, "/v1/status/peers")
    assert (status, json.loads(body)) == (200, [server])


def test_agent_self_config(agent):
    status, _, body = get(agent, "/v1/agent/self")
    assert status == 200
    data = json.loads(body)
    for key in ("Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"):
        assert key in data
    config = data["Config"]
    assert config["Datacenter"] == "dc1"
    assert config["NodeName"] == NODE
    assert str(uuid.UUID(config["NodeID"])) == config["NodeID"]
    assert config["Server"] is True
    assert config["Version"] == AGENT_VERSION
    assert isinstance(config["Revision"], str) and config["Revision"]
    assert data["Member"]["Name"] == NODE
    assert data["Member"]["Port"] == agent.ports.serf_lan
    assert data["Meta"] == {"consul-network-segment": ""}
    assert f"Node ID: '{config['NodeID']}'" in agent.stdout()


def test_agent_members_shape(agent):
    status, headers, body = get(agent, "/v1/agent/members")
    assert status == 200
    assert "X-Consul-Index" not in headers  # agent-local: no index headers
    members = json.loads(body)
    assert len(members) == 1
    member = members[0]
    assert list(member) == MEMBER_KEYS
    assert member["Name"] == NODE
    assert member["Addr"] == "127.0.0.1"
    assert member["Port"] == agent.ports.serf_lan
    assert member["Status"] == 1
    protocol = [member[k] for k in MEMBER_KEYS[5:]]
    assert protocol == [1, 5, 2, 2, 5, 4]
    tags = member["Tags"]
    assert all(isinstance(v, str) for v in tags.values())
    assert tags["role"] == "consul"
    assert tags["dc"] == "dc1"
    assert tags["port"] == str(agent.ports.server)
    assert tags["wan_join_port"] == str(agent.ports.serf_wan)
    assert tags["segment"] == ""


def test_agent_members_wan(agent):
    status, _, body = get(agent, "/v1/agent/members?wan=1")
    assert status == 200
    (member,) = json.loads(body)
    assert member["Name"] == f"{NODE}.dc1"
    assert member["Port"] == agent.ports.serf_wan
    assert member["Status"] == 1


def test_pretty_query_parameter(agent):
    status, _, body = get(agent, "/v1/agent/members?pretty")
    assert status == 200
    assert body == pretty(json.loads(body))
    assert body.startswith('[\n    {\n        "Name": ')


@pytest_twisted.inlineCallbacks
def test_get_on_agent_leave_is_405_and_does_not_leave(agent):
    response = yield treq.get(agent.url("/v1/agent/leave"), persistent=False, timeout=10)
    body = yield response.text("utf-8")
    assert response.code == 405
    assert body == "method GET not allowed"
    allow = _header(response, "Allow")
    assert allow is not None and "PUT" in allow.split(","), allow
    assert "GET" not in allow.split(",")
    status, _, _ = get(agent, "/v1/status/leader")
    assert status == 200
    assert agent.running
    assert "server starting leave" not in agent.stdout()


def test_unknown_path_is_404(agent):
    status, headers, body = get(agent, "/v1/no/such/endpoint")
    assert status == 404
    assert body == "Invalid URL path: not a recognized HTTP API endpoint"
    assert headers["Content-Type"].startswith("text/plain")


def test_stale_and_consistent_conflict_is_400(agent):
    status, _, body = get(agent, "/v1/catalog/nodes?stale&consistent")
    assert status == 400
    assert body == "Cannot specify ?stale with ?consistent, conflicting semantics."


def test_unknown_datacenter_is_500(agent):
    status, _, body = get(agent, "/v1/catalog/nodes?dc=other")
    assert (status, body) == (500, "No path to datacenter")


@pytest_twisted.inlineCallbacks
def test_blocking_query_times_out_with_same_index(agent):
    first = yield treq.get(agent.url("/v1/catalog/nodes"), persistent=False, timeout=10)
    yield first.text()
    index = int(_header(first, "X-Consul-Index"))

    started = time.monotonic()
    response = yield treq.get(
        agent.url(f"/v1/catalog/nodes?index={index}&wait=1s"), persistent=False, timeout=20
    )
    body = yield response.text("utf-8")
    elapsed = time.monotonic() - started
    assert response.code == 200
    # wait=1s plus up to 1/16 jitter; generous upper bound for a loaded machine.
    assert 0.9 <= elapsed <= 5.0, elapsed
    assert int(_header(response, "X-Consul-Index")) == index
    assert [n["Node"] for n in json.loads(body)] == [NODE]


def test_request_finished_logged_at_debug(agent):
    get(agent, "/v1/catalog/nodes")
    line = re.compile(
        r"^\S+ \[DEBUG\] agent\.http: Request finished: method=GET url=/v1/catalog/nodes "
        r"from=127\.0\.0\.1:\d+ latency=\S+$",
        re.MULTILINE,
    )
    agent.wait_for_output(line, timeout=10)


def test_no_traceback_in_agent_output(agent):
    assert_no_traceback(agent.stdout(), agent.stderr())
