"""
Several real agents in one gossip pool: a dev server and client agents
that join it with -join, on loopback.  Members everywhere, client reads
forwarded to the server, a kill -9 seen as `failed` with serfHealth
critical, a restart back to `alive`, a graceful leave deregistered, and an
agent with a gossip key refused by a pool without one.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.cluster_support import get_json, joiner, statuses
from tests.integration.harness import AgentPool, poll_until, run_cli

pytestmark = pytest.mark.integration

KEY = "MFGEKa64Dz/VEzW1NgiE4Kw69YFOn98xAr9JcWGuXXs="


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    return poll_until(check, timeout, what)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Any:
    pool = AgentPool(tmp_path_factory.mktemp("cluster"))
    try:
        server = pool.start("srv")
        clients = [joiner(pool, name, server).start_and_wait() for name in ("c1", "c2")]
        yield pool, server, clients
    finally:
        pool.stop_all()


def test_everyone_sees_everyone(cluster: Any) -> None:
    _, server, clients = cluster
    for agent in (server, *clients):
        eventually(
            lambda agent=agent: statuses(agent) == {"srv": 1, "c1": 1, "c2": 1},
            20,
            f"all alive on {agent.node}",
        )
    result = run_cli(["members", f"-http-addr={clients[0].http_addr}"])
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Segment",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["srv"][2:4] == ["alive", "server"]
    assert rows["c1"][2:4] == ["alive", "client"]
    assert rows["c1"][-1] == "<default>"


def test_client_reads_are_forwarded(cluster: Any) -> None:
    _, server, clients = cluster
    nodes = eventually(
        lambda: (
            {n["Node"] for n in get_json(clients[0], "/v1/catalog/nodes")} == {"srv", "c1", "c2"}
            and get_json(clients[0], "/v1/catalog/nodes")
        ),
        20,
        "the client's catalog view to list all three nodes",
    )
    assert nodes == get_json(server, "/v1/catalog/nodes")
    c1 = next(n for n in nodes if n["Node"] == "c1")
    assert c1["TaggedAddresses"]["lan"] == "127.0.0.1"
    checks = get_json(clients[1], "/v1/health/node/c1")
    assert [(c["CheckID"], c["Status"]) for c in checks] == [("serfHealth", "passing")]


def test_kill_restart_and_leave(cluster: Any) -> None:
    pool, server, clients = cluster
    c1, c2 = clients
    c2.send_signal(signal.SIGKILL)
    c2.wait_exit()
    killed = time.monotonic()
    eventually(lambda: statuses(server).get("c2") == 4, 30, "c2 failed on the server")
    detection = time.monotonic() - killed
    eventually(lambda: statuses(c1).get("c2") == 4, 30, "c2 failed on c1")

    def serf_health() -> str | None:
        checks = get_json(server, "/v1/health/node/c2")
        return checks[0]["Status"] if checks else None

    eventually(lambda: serf_health() == "critical", 10, "serfHealth critical for c2")
    assert "c2" in {n["Node"] for n in get_json(server, "/v1/catalog/nodes")}, "a failed node stays"
    assert detection < 30

    # Restarted on the same ports and data dir: back to alive.
    c2.start()
    c2.wait_ready()
    eventually(lambda: statuses(server).get("c2") == 1, 30, "c2 alive again")
    eventually(lambda: serf_health() == "passing", 10, "serfHealth passing again")

    # A graceful leave: `left` everywhere and deregistered from the catalog.
    result = run_cli(["leave", f"-http-addr={c1.http_addr}"])
    assert result.returncode == 0 and "Graceful leave complete" in result.stdout
    assert c1.wait_exit() == 0
    eventually(lambda: statuses(server).get("c1") == 3, 20, "c1 left on the server")
    eventually(
        lambda: "c1" not in {n["Node"] for n in get_json(server, "/v1/catalog/nodes")},
        20,
        "c1 deregistered",
    )


def test_agent_with_a_key_is_refused_by_a_plain_pool(tmp_path: Any) -> None:
    pool = AgentPool(tmp_path)
    try:
        server = pool.start("plain")
        keyed = joiner(pool, "keyed", server, "--encrypt", KEY).start()
        assert keyed.wait_exit(timeout=30) == 1
        out = keyed.stdout()
        assert "Gossip: true" in out
        assert "encrypt" in out.lower() and "failed to join" in out
        assert "keyed" not in statuses(server)
    finally:
        pool.stop_all()
