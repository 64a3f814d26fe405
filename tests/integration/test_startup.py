"""
What a user sees on the console when ``consul agent -dev`` starts: the
banner, hclog-formatted log lines, and the tutorial's startup story.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.integration.harness import (
    AGENT_VERSION,
    LOG_LINE,
    RUNNING_LINE,
    assert_in_order,
    assert_no_traceback,
)

pytestmark = pytest.mark.integration

NODE = "banner-node"
NODE_ID = "6f1c3a52-0d4e-4b1a-9e77-2c5d8f0a1b34"


@pytest.fixture(scope="module")
def agent(module_agents):
    return module_agents.start(NODE, extra_args=("--node-id", NODE_ID))


def _after_banner(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    marker = lines.index("==> Log data will now stream in as it occurs:")
    return lines[marker + 1 :]


def test_banner_lines_exact(agent):
    p = agent.ports
    expected = [
        "==> Starting Consul agent...",
        f"           Version: '{AGENT_VERSION}'",
        f"           Node ID: '{NODE_ID}'",
        f"         Node name: '{NODE}'",
        "        Datacenter: 'dc1' (Segment: '<all>')",
        "            Server: true (Bootstrap: false)",
        f"       Client Addr: [127.0.0.1] (HTTP: {p.http}, HTTPS: -1, gRPC: 8502, DNS: {p.dns})",
        f"      Cluster Addr: 127.0.0.1 (LAN: {p.serf_lan}, WAN: {p.serf_wan})",
        "           Encrypt: Gossip: false, TLS-Outgoing: false, TLS-Incoming: false, "
        "Auto-Encrypt-TLS: false",
        "",
        "==> Log data will now stream in as it occurs:",
        "",
    ]
    lines = agent.stdout().splitlines()
    assert lines[: len(expected)] == expected, agent.describe()


def test_banner_labels_right_aligned_on_the_colon(agent):
    labels = agent.stdout().splitlines()[1:9]
    assert len(labels) == 8
    for line in labels:
        assert line.index(":") == 18, repr(line)
        assert line[19] == " ", repr(line)


def test_every_line_after_the_banner_is_hclog_or_console(agent):
    after = [line for line in _after_banner(agent.stdout()) if line != ""]
    assert after, agent.describe()
    others = [line for line in after if not LOG_LINE.match(line)]
    assert others == [RUNNING_LINE], agent.describe()
    # One space after the padded level, then "subsystem: message".
    for line in after:
        if line != RUNNING_LINE:
            assert re.match(LOG_LINE.pattern + r"[a-z][a-z.]*: \S", line), repr(line)


def test_no_blank_lines_between_log_lines(agent):
    after = _after_banner(agent.stdout())
    assert after[0] == ""  # the banner's own closing blank line
    assert after[1] != ""
    assert "" not in after[1:]


def test_startup_story_raft_election_in_order(agent):
    srv = f"127.0.0.1:{agent.ports.server}"
    assert_in_order(
        agent.stdout(),
        [
            "[INFO]  agent.server.raft: initial configuration: index=1 "
            f'servers="[{{Suffrage:Voter ID:{NODE_ID} Address:{srv}}}]"',
            "[INFO]  agent.server.raft: entering follower state: "
            f'follower="Node at {srv} [Follower]" leader=',
            "[WARN]  agent.server.raft: heartbeat timeout reached, starting election:",
            "[INFO]  agent.server.raft: entering candidate state: "
            f'node="Node at {srv} [Candidate]" term=2',
            f"[DEBUG] agent.server.raft: vote granted: from={NODE_ID} term=2 tally=1",
            "[INFO]  agent.server.raft: election won: tally=1",
            f'[INFO]  agent.server.raft: entering leader state: leader="Node at {srv} [Leader]"',
            "[INFO]  agent.server: cluster leadership acquired",
            "[INFO]  agent: Synced node info",
        ],
    )


def test_startup_story_serf_dns_http_in_order(agent):
    """
    Serf joins (Consul sets up WAN before LAN, so only each one's position
    relative to raft and DNS is checked), then DNS on udp and tcp, then HTTP,
    then "agent running".
    """
    out = agent.stdout()
    p = agent.ports
    lan = f"[INFO]  agent.server.serf.lan: serf: EventMemberJoin: {NODE} 127.0.0.1\n"
    wan = f"[INFO]  agent.server.serf.wan: serf: EventMemberJoin: {NODE}.dc1 127.0.0.1\n"
    dns_udp = f"[INFO]  agent: Started DNS server: address=127.0.0.1:{p.dns} network=udp\n"
    dns_tcp = f"[INFO]  agent: Started DNS server: address=127.0.0.1:{p.dns} network=tcp\n"
    http = f"[INFO]  agent: Started HTTP server: address=127.0.0.1:{p.http} network=tcp\n"
    follower = "agent.server.raft: entering follower state"
    for join in (lan, wan):
        assert_in_order(out, [follower, join, dns_udp, dns_tcp, http, RUNNING_LINE])
    for needle in (lan, wan, dns_udp, dns_tcp, http):
        assert out.count(needle) == 1, needle
    assert out.count(RUNNING_LINE) == 1


def test_no_traceback_and_empty_stderr(agent):
    assert_no_traceback(agent.stdout(), agent.stderr())
    assert agent.stderr() == ""


def test_node_id_from_flag_is_the_catalog_id(agent):
    with urllib.request.urlopen(agent.url("/v1/agent/self"), timeout=10) as resp:
        config = json.load(resp)["Config"]
    assert config["NodeID"] == NODE_ID
    assert config["NodeName"] == NODE


def test_node_name_with_dot_warns_but_starts(agents):
    agent = agents.start("bad.name", config={"performance": {"leave_drain_time": "0s"}})
    warning = (
        '[WARN]  agent: Node name "bad.name" will not be discoverable via DNS due to '
        "invalid characters. Valid characters include all alpha-numerics and dashes."
    )
    lines = [line for line in agent.log_lines() if "will not be discoverable" in line]
    assert len(lines) == 1, agent.describe()
    assert lines[0].endswith(warning), lines[0]
    with urllib.request.urlopen(agent.url("/v1/catalog/nodes"), timeout=10) as resp:
        assert [n["Node"] for n in json.load(resp)] == ["bad.name"]
    assert_no_traceback(agent.stdout(), agent.stderr())


def test_valid_node_name_does_not_warn(agent):
    assert "will not be discoverable" not in agent.stdout()


def test_consul_single_dash_flags(agents):
    agent = agents.start("dash-node", single_dash=True)
    assert "         Node name: 'dash-node'" in agent.stdout()
    assert f"(HTTP: {agent.ports.http}, HTTPS: -1" in agent.stdout()
    assert agent.cli("members").returncode == 0
