"""
The Raft configuration follows the servers, end to end with real processes:
three servers bootstrap with ``-bootstrap-expect 3``; a fourth and a fifth
join later and become voters, one at a time; a graceful leave removes a
server from the configuration; a killed server stays a voter (it may come
back) until a new server joins, when autopilot's dead-server cleanup
removes it.  Checked through ``consul-tw operator raft list-peers`` and
``/v1/status/peers`` on every live server.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import poll_until, run_cli
from tests.integration.raft_cluster import RaftCluster

pytestmark = pytest.mark.integration


def peers_everywhere(cluster: RaftCluster, expected: set[int]) -> bool:
    """Every live server lists exactly ``expected`` as the Raft peers."""
    wanted = {cluster.raft_addr(i) for i in expected}
    return all(cluster.peers_seen_by(i) == wanted for i in cluster.live())


def test_servers_join_leave_and_dead_ones_are_replaced(tmp_path: Path) -> None:
    with RaftCluster(tmp_path, size=6, expect=3, log_level="DEBUG") as cluster:
        try:
            for i in range(3):
                cluster.agents[i].start()
                cluster.states[i] = "running"
            leader = cluster.wait_for_leader(60, full_peers=False)
            poll_until(lambda: peers_everywhere(cluster, {0, 1, 2}), 30, "three voters")

            # ?stale from a follower: answered locally, with honest leader headers.
            follower = next(i for i in (0, 1, 2) if i != leader)
            with urllib.request.urlopen(
                cluster.http(follower) + "/v1/catalog/nodes?stale", timeout=10
            ) as response:
                headers = response.headers
            assert headers["X-Consul-Effective-Consistency"] == "stale"
            assert headers["X-Consul-KnownLeader"] == "true"
            assert 0 <= int(headers["X-Consul-LastContact"]) < 1000

            listed = run_cli(
                ["operator", "raft", "list-peers"],
                env={"CONSUL_HTTP_ADDR": cluster.http(leader).removeprefix("http://")},
            )
            assert listed.returncode == 0, listed.stderr
            lines = listed.stdout.splitlines()
            assert lines[0].split() == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
            states = sorted(line.split()[3] for line in lines[1:])
            assert states == ["follower", "follower", "leader"]

            # A fourth and a fifth server join the running cluster one at a time.
            for newcomer, members in ((3, {0, 1, 2, 3}), (4, {0, 1, 2, 3, 4})):
                cluster.agents[newcomer].start()
                cluster.states[newcomer] = "running"
                poll_until(lambda m=members: peers_everywhere(cluster, m), 60, f"peers {members}")

            # A graceful leave takes a server out of the configuration.
            request = urllib.request.Request(cluster.http(4) + "/v1/agent/leave", method="PUT")
            urllib.request.urlopen(request, timeout=30).read()
            cluster.agents[4].process.wait(30)  # type: ignore[union-attr]
            cluster.states[4] = "killed"
            poll_until(lambda: peers_everywhere(cluster, {0, 1, 2, 3}), 60, "leave removes s5")

            # A killed server stays a voter: it may come back with its data.
            victim = next(i for i in (3, 2, 1, 0) if cluster.raft_addr(i) != leader_addr(cluster))
            cluster.kill9(victim)
            wait_for_serf_failed(cluster, victim)
            survivors = {0, 1, 2, 3} - {victim}
            assert peers_everywhere(cluster, {0, 1, 2, 3})

            # A new server joins: it is added, and the dead one is cleaned up.
            cluster.agents[5].start()
            cluster.states[5] = "running"
            poll_until(
                lambda: peers_everywhere(cluster, survivors | {5}), 90, "dead server replaced"
            )
        except BaseException:
            print(cluster.log_tails(40))
            raise


def leader_addr(cluster: RaftCluster) -> str | None:
    for i in cluster.live():
        found = cluster.leader_seen_by(i)
        if found:
            return found
    return None


def wait_for_serf_failed(cluster: RaftCluster, victim: int) -> None:
    name = f"s{victim + 1}"

    def failed() -> bool:
        for i in cluster.live():
            with urllib.request.urlopen(cluster.http(i) + "/v1/agent/members", timeout=5) as r:
                members = {m["Name"]: m["Status"] for m in json.load(r)}
            if members.get(name) != 4:
                return False
        return True

    poll_until(failed, 60, f"{name} failed everywhere")
