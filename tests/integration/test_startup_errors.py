"""
Starting the agent wrongly: one ``==> ...`` line on stderr and exit code 1,
never a traceback; and config keys Consul knows but consul-tw does not build
yet, which only warn.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.integration.harness import Ports, assert_no_traceback, free_ports

pytestmark = pytest.mark.integration


def assert_one_error_line(agent, *needles: str) -> str:
    """Exit 1, stderr is exactly one ``==> `` line containing the needles; returns it."""
    assert agent.wait_exit() == 1, agent.describe()
    stderr = agent.stderr()
    lines = stderr.splitlines()
    assert len(lines) == 1, agent.describe()
    assert stderr == lines[0] + "\n"
    assert lines[0].startswith("==> "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "==> Consul agent running!" not in agent.stdout()
    assert_no_traceback(agent.stdout(), stderr)
    return lines[0]


def test_bad_log_level(agents):
    agent = agents.new("bad-level", extra_args=("--log-level=LOUD",)).start()
    assert_one_error_line(agent, "LOUD")
    assert agent.stdout() == ""


def test_non_numeric_http_port(agents):
    agent = agents.new("bad-port", extra_args=("--http-port=abc",)).start()
    assert_one_error_line(agent, "abc")


def test_unknown_config_key(agents):
    agent = agents.new("bad-key", config={"no_such_key": True}).start()
    assert_one_error_line(agent, "invalid config key", "no_such_key")


def test_unknown_nested_config_key(agents):
    agent = agents.new("bad-nested", config={"performance": {"no_such_knob": 1}}).start()
    assert_one_error_line(agent, "invalid config key")


def test_known_but_unbuilt_key_warns_once_and_starts(agents):
    agent = agents.start(
        "acl-node",
        config={"acl": {"enabled": False}, "performance": {"leave_drain_time": "0s"}},
    )
    warnings = [line for line in agent.log_lines() if "[WARN] " in line and "acl" in line]
    assert len(warnings) == 1, agent.describe()
    assert "[WARN]  agent: " in warnings[0]
    with urllib.request.urlopen(agent.url("/v1/status/leader"), timeout=10) as resp:
        assert json.load(resp) == f"127.0.0.1:{agent.ports.server}"
    assert_no_traceback(agent.stdout(), agent.stderr())


def test_http_port_already_taken(agents):
    first = agents.start("first")
    dns, lan, wan, server = free_ports(4)
    second = agents.new(
        "second",
        ports=Ports(http=first.ports.http, dns=dns, serf_lan=lan, serf_wan=wan, server=server),
    ).start()
    line = assert_one_error_line(second, "==> Error starting agent:")
    assert str(first.ports.http) in line
    assert "address already in use" in line
    # The first agent is unharmed.
    assert first.running
    with urllib.request.urlopen(first.url("/v1/status/leader"), timeout=10) as resp:
        assert json.load(resp) == f"127.0.0.1:{first.ports.server}"
