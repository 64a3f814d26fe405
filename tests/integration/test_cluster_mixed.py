"""
Bigger and mixed pools of real processes on loopback:

* three servers (one bootstrapped dev server, two more that join it) and
  two clients: gossip membership everywhere, a kill -9'd server `failed`
  on every agent with serfHealth critical in the leader's catalog, back
  `alive` after a restart, force-leave and a graceful leave `left`;
* two consul-tw agents and two real `serf agent`s in one pool, plain and
  encrypted with one key: everyone lists everyone `alive`, a kill -9 and a
  `serf leave` on the serf side are `failed` and `left` on ours.

Until multi-server Raft lands only the bootstrapped server leads; the
others keep the catalog of a server that is not leader, so catalog
assertions here read the leader's.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.integration.cluster_support import get_json, joiner, statuses
from tests.integration.harness import AgentPool, AgentProcess, poll_until, run_cli
from tests.integration.serf_agents import SERF, SerfPool

pytestmark = pytest.mark.integration

KEY = "MFGEKa64Dz/VEzW1NgiE4Kw69YFOn98xAr9JcWGuXXs="


def start_running(agent: AgentProcess) -> AgentProcess:
    agent.start()
    agent.wait_for_output("==> Consul agent running!", timeout=20)
    return agent


def serf_health(leader: AgentProcess, node: str) -> str | None:
    checks = get_json(leader, f"/v1/health/node/{node}")
    return checks[0]["Status"] if checks else None


def test_three_servers_two_clients(tmp_path: Any) -> None:
    pool = AgentPool(tmp_path)
    try:
        leader = pool.start("s1")
        servers = [start_running(joiner(pool, name, leader, "--server")) for name in ("s2", "s3")]
        clients = [start_running(joiner(pool, name, leader)) for name in ("c1", "c2")]
        everyone = [leader, *servers, *clients]
        names = {"s1", "s2", "s3", "c1", "c2"}
        for agent in everyone:
            poll_until(
                lambda agent=agent: statuses(agent) == dict.fromkeys(names, 1),
                30,
                f"all five alive on {agent.node}",
            )
        wan = get_json(leader, "/v1/agent/members?wan=1")
        assert {m["Name"] for m in wan} == {"s1.dc1"}
        poll_until(lambda: serf_health(leader, "s3") == "passing", 20, "s3 registered")

        s3 = servers[1]
        s3.send_signal(signal.SIGKILL)
        s3.wait_exit()
        for agent in (leader, servers[0], *clients):
            poll_until(
                lambda agent=agent: statuses(agent).get("s3") == 4, 30, f"s3 failed on {agent.node}"
            )
        poll_until(lambda: serf_health(leader, "s3") == "critical", 10, "serfHealth critical")
        assert "s3" in {n["Node"] for n in get_json(leader, "/v1/catalog/nodes")}

        start_running(s3)
        poll_until(lambda: statuses(leader).get("s3") == 1, 30, "s3 alive again")
        poll_until(lambda: serf_health(leader, "s3") == "passing", 10, "serfHealth passing")

        # force-leave moves a failed member to left.
        c2 = clients[1]
        c2.send_signal(signal.SIGKILL)
        c2.wait_exit()
        poll_until(lambda: statuses(leader).get("c2") == 4, 30, "c2 failed")
        result = run_cli(["force-leave", f"-http-addr={leader.http_addr}", "c2"])
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        poll_until(lambda: statuses(servers[0]).get("c2") == 3, 20, "c2 left after force-leave")

        # A graceful leave: left everywhere, deregistered by the leader.
        c1 = clients[0]
        assert run_cli(["leave", f"-http-addr={c1.http_addr}"]).returncode == 0
        assert c1.wait_exit() == 0
        for agent in (leader, *servers):
            poll_until(
                lambda agent=agent: statuses(agent).get("c1") == 3, 20, f"c1 left on {agent.node}"
            )
        poll_until(
            lambda: "c1" not in {n["Node"] for n in get_json(leader, "/v1/catalog/nodes")},
            20,
            "c1 deregistered",
        )
    finally:
        pool.stop_all()


@pytest.mark.skipif(SERF is None, reason="needs Debian's serf package (.ci/run installs it)")
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_consul_tw_agents_and_serf_agents_share_a_pool(tmp_path: Any, key: str | None) -> None:
    pool = AgentPool(tmp_path / "agents")
    (tmp_path / "serf").mkdir()
    serfs = SerfPool(tmp_path / "serf")
    encrypt = ("--encrypt", key) if key else ()
    try:
        server = pool.start("tw-server", config={"encrypt": key} if key else None)
        client = start_running(joiner(pool, "tw-client", server, *encrypt))
        assert server.ports is not None
        seed = f"127.0.0.1:{server.ports.serf_lan}"
        web = serfs.new("serf-web", tags={"role": "web"}, encrypt=key).start(join=seed)
        db = serfs.new("serf-db", tags={"role": "db"}, encrypt=key).start(join=seed)
        names = {"tw-server", "tw-client", "serf-web", "serf-db"}
        for agent in (server, client):
            poll_until(
                lambda agent=agent: statuses(agent) == dict.fromkeys(names, 1),
                30,
                f"all alive on {agent.node}",
            )
        poll_until(
            lambda: (
                {n: m["status"] for n, m in web.members().items()} == dict.fromkeys(names, "alive")
            ),
            30,
            "all alive in serf",
        )
        members = web.members()
        assert members["tw-server"]["tags"]["role"] == "consul"
        assert members["tw-client"]["tags"]["role"] == "node"
        assert members["tw-client"]["protocol"]["version"] == 4

        db.kill()
        poll_until(lambda: statuses(server).get("serf-db") == 4, 40, "serf-db failed here")
        assert web.command("leave").returncode == 0
        poll_until(lambda: statuses(client).get("serf-web") == 3, 30, "serf-web left here")
        # Plain serf members are listed but not Consul nodes: not in the catalog.
        nodes = {n["Node"] for n in get_json(server, "/v1/catalog/nodes")}
        assert "serf-db" not in nodes and "serf-web" not in nodes
    finally:
        serfs.stop_all()
        pool.stop_all()
