"""
``consul-tw members`` (and the other read-only CLI commands) against a real
dev agent, compared with ``consul members`` output character for character.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.integration.harness import AGENT_VERSION, free_ports, run_cli

pytestmark = pytest.mark.integration

NODE = "cli-node"


@pytest.fixture(scope="module")
def agent(module_agents):
    return module_agents.start(NODE)


@pytest.fixture(scope="module")
def member(agent):
    with urllib.request.urlopen(agent.url("/v1/agent/members"), timeout=10) as resp:
        members = json.load(resp)
    assert len(members) == 1
    return members[0]


def columnize(rows: list[list[str]]) -> str:
    """ryanuber/columnize as Consul configures it: two spaces, left-aligned, last cell bare."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines) + "\n"


def members_table(agent) -> str:
    return columnize(
        [
            ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Segment"],
            [
                NODE,
                f"127.0.0.1:{agent.ports.serf_lan}",
                "alive",
                "server",
                AGENT_VERSION,
                "2",
                "dc1",
                "<all>",
            ],
        ]
    )


def test_members_table_exact(agent):
    result = agent.cli("members")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == members_table(agent)
    if len(str(agent.ports.serf_lan)) == 5:  # always, for Linux ephemeral ports
        assert result.stdout.splitlines()[0] == (
            "Node      Address          Status  Type    Build  Protocol  DC   Segment"
        )


def test_members_detailed(agent, member):
    tags = dict(member["Tags"])
    p = agent.ports
    assert tags["role"] == "consul"
    assert tags["dc"] == "dc1"
    assert tags["port"] == str(p.server)
    assert tags["wan_join_port"] == str(p.serf_wan)
    assert tags["build"].startswith(f"{AGENT_VERSION}:")
    assert (tags["vsn"], tags["vsn_min"], tags["vsn_max"], tags["raft_vsn"]) == ("2", "2", "3", "3")
    assert tags["acls"] == "0"
    assert tags["segment"] == ""
    tags["segment"] = "<all>"
    tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    expected = columnize(
        [
            ["Node", "Address", "Status", "Tags"],
            [NODE, f"127.0.0.1:{p.serf_lan}", "alive", tag_text],
        ]
    )
    result = agent.cli("members", "-detailed")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_members_status_filter_no_match_exits_2_silently(agent):
    result = agent.cli("members", "-status=failed")
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "")


def test_members_status_filter_regex_match(agent):
    result = agent.cli("members", "-status=(alive|failed)")
    assert result.returncode == 0, result.stderr
    assert result.stdout == members_table(agent)


def test_members_wan(agent):
    expected = columnize(
        [
            ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Segment"],
            [
                f"{NODE}.dc1",
                f"127.0.0.1:{agent.ports.serf_wan}",
                "alive",
                "server",
                AGENT_VERSION,
                "2",
                "dc1",
                "<all>",
            ],
        ]
    )
    result = agent.cli("members", "-wan")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.parametrize("prefix", ["", "http://"])
def test_members_honours_consul_http_addr(agent, prefix):
    result = run_cli(["members"], env={"CONSUL_HTTP_ADDR": prefix + agent.http_addr})
    assert result.returncode == 0, result.stderr
    assert result.stdout == members_table(agent)


def test_http_addr_flag_beats_environment(agent):
    (dead,) = free_ports(1)
    result = run_cli(
        ["members", f"-http-addr={agent.http_addr}"],
        env={"CONSUL_HTTP_ADDR": f"127.0.0.1:{dead}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == members_table(agent)


def test_members_without_agent_fails_with_go_style_error():
    (port,) = free_ports(1)
    result = run_cli(["members", f"-http-addr=127.0.0.1:{port}"])
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f'Error retrieving members: Get "http://127.0.0.1:{port}/v1/agent/members?segment=_all": '
        f"dial tcp 127.0.0.1:{port}: connect: connection refused\n"
    )


def test_catalog_nodes(agent, member):
    node_id = member["Tags"]["id"]
    result = agent.cli("catalog", "nodes")
    assert result.returncode == 0, result.stderr
    assert result.stdout == columnize(
        [["Node", "ID", "Address", "DC"], [NODE, node_id[:8], "127.0.0.1", "dc1"]]
    )


def test_catalog_datacenters(agent):
    result = agent.cli("catalog", "datacenters")
    assert (result.returncode, result.stdout) == (0, "dc1\n"), result.stderr


def test_catalog_services(agent):
    result = agent.cli("catalog", "services")
    assert (result.returncode, result.stdout) == (0, "consul\n"), result.stderr


def test_version():
    result = run_cli(["version"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Consul v{AGENT_VERSION}"
    assert any(line.startswith("Protocol 2 spoken by default") for line in lines)
