"""py-consul, a real third-party Consul client, against a dev agent."""

from __future__ import annotations

import consul
import pytest

from tests.integration.harness import AGENT_VERSION

pytestmark = pytest.mark.integration

NODE = "pyconsul-node"


@pytest.fixture(scope="module")
def agent(module_agents):
    return module_agents.start(NODE)


@pytest.fixture
def client(agent):
    return consul.Consul(host="127.0.0.1", port=agent.ports.http)


def test_catalog_nodes(client):
    index, nodes = client.catalog.nodes()
    assert int(index) >= 1
    assert [n["Node"] for n in nodes] == [NODE]
    assert nodes[0]["Address"] == "127.0.0.1"
    assert nodes[0]["Datacenter"] == "dc1"


def test_catalog_node(client, agent):
    index, data = client.catalog.node(NODE)
    assert int(index) >= 1
    assert data["Node"]["Node"] == NODE
    assert data["Services"]["consul"]["Port"] == agent.ports.server


def test_catalog_services_and_datacenters(client):
    index, services = client.catalog.services()
    assert int(index) >= 1
    assert services == {"consul": []}
    assert client.catalog.datacenters() == ["dc1"]


def test_blocking_catalog_nodes_with_index(client):
    index, _ = client.catalog.nodes()
    again, nodes = client.catalog.nodes(index=index, wait="100ms")
    assert again == index
    assert [n["Node"] for n in nodes] == [NODE]


def test_status_leader_and_peers(client, agent):
    server = f"127.0.0.1:{agent.ports.server}"
    assert client.status.leader() == server
    assert client.status.peers() == [server]


def test_agent_members(client, agent):
    (member,) = client.agent.members()
    assert member["Name"] == NODE
    assert member["Port"] == agent.ports.serf_lan
    assert member["Status"] == 1
    assert member["Tags"]["role"] == "consul"
    (wan,) = client.agent.members(wan=True)
    assert wan["Name"] == f"{NODE}.dc1"


def test_agent_self(client, agent):
    data = client.agent.self()
    assert data["Config"]["NodeName"] == NODE
    assert data["Config"]["Datacenter"] == "dc1"
    assert data["Config"]["Server"] is True
    assert data["Config"]["Version"] == AGENT_VERSION
    assert data["Member"]["Port"] == agent.ports.serf_lan
