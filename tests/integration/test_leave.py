"""
``consul leave`` against a dev server: the graceful path, which ends the
agent process with exit code 0 after the tutorial's leave sequence.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
import treq

from tests.integration.harness import assert_in_order, assert_no_traceback, run_cli

pytestmark = pytest.mark.integration

NO_DRAIN = {"performance": {"leave_drain_time": "0s"}}


def leave_sequence(agent, drain: str) -> list[str]:
    p = agent.ports
    return [
        "[INFO]  agent.server: server starting leave",
        f"[INFO]  agent.server.serf.lan: serf: EventMemberLeave: {agent.node} 127.0.0.1",
        f"[INFO]  agent.server: Waiting to drain RPC traffic: drain_time={drain}",
        "[INFO]  agent: Requesting shutdown",
        "[INFO]  agent.server: shutting down server",
        f"[INFO]  agent: Stopping server: protocol=DNS address=127.0.0.1:{p.dns} network=tcp",
        f"[INFO]  agent: Stopping server: protocol=DNS address=127.0.0.1:{p.dns} network=udp",
        f"[INFO]  agent: Stopping server: protocol=HTTP address=127.0.0.1:{p.http} network=tcp",
        "[INFO]  agent: Exit code: code=0",
    ]


def assert_gone(agent) -> None:
    """After the leave, the CLI finds nobody at the agent's address."""
    result = agent.cli("members")
    assert result.returncode == 1
    assert result.stdout == ""
    port = agent.ports.http
    assert result.stderr == (
        f'Error retrieving members: Get "http://127.0.0.1:{port}/v1/agent/members?segment=_all": '
        f"dial tcp 127.0.0.1:{port}: connect: connection refused\n"
    )


def test_cli_leave(agents):
    agent = agents.start("leaver", config=NO_DRAIN)
    result = agent.cli("leave")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Graceful leave complete\n"
    assert result.stderr == ""

    assert agent.wait_exit() == 0
    out = agent.stdout()
    assert_in_order(out, leave_sequence(agent, "0s"))
    assert_in_order(
        out,
        [
            "agent.server: server starting leave",
            f"[INFO]  agent.server.serf.wan: serf: EventMemberLeave: {agent.node}.dc1 127.0.0.1",
            "agent.server: Waiting to drain RPC traffic",
        ],
    )
    assert out.count("serf: EventMemberLeave") == 2
    assert "Caught: signal" not in out
    assert_no_traceback(out, agent.stderr())
    assert_gone(agent)


def test_cli_leave_with_default_drain_time(agents):
    """No config: leave_drain_time is 5s, so the leave call takes at least that long."""
    agent = agents.start("slow-leaver")
    started = time.monotonic()
    result = agent.cli("leave", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Graceful leave complete\n"
    assert 4.5 <= elapsed <= 30, elapsed

    assert agent.wait_exit() == 0
    out = agent.stdout()
    assert_in_order(out, leave_sequence(agent, "5s"))
    assert_no_traceback(out, agent.stderr())
    assert_gone(agent)


def test_leave_with_consul_http_addr(agents):
    agent = agents.start("env-leaver", config=NO_DRAIN)
    result = run_cli(["leave"], env={"CONSUL_HTTP_ADDR": agent.http_addr})
    assert (result.returncode, result.stdout) == (0, "Graceful leave complete\n"), result.stderr
    assert agent.wait_exit() == 0


@pytest_twisted.inlineCallbacks
def test_http_put_agent_leave(agents):
    agent = agents.start("put-leaver", config=NO_DRAIN)
    response = yield treq.put(agent.url("/v1/agent/leave"), persistent=False, timeout=20)
    body = yield response.content()
    assert response.code == 200
    assert body == b""
    assert agent.wait_exit() == 0
    assert_in_order(agent.stdout(), leave_sequence(agent, "0s"))
    assert_no_traceback(agent.stdout(), agent.stderr())


def test_leave_without_agent_fails():
    from tests.integration.harness import free_ports

    (port,) = free_ports(1)
    result = run_cli(["leave", f"-http-addr=127.0.0.1:{port}"])
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error leaving: ")
    assert "connection refused" in result.stderr
