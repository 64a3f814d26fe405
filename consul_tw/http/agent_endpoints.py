# -*- test-case-name: tests.unit.http.test_api -*-
"""
``/v1/agent/*``: this agent's own view (members, self) and actions (leave).

These are agent-local: answered without Raft and without the index,
leader and contact headers, as in Consul.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from consul_tw import __version__
from consul_tw.agent import Agent
from consul_tw.catalog.shapes import member_json
from consul_tw.gossip.members import REVISION
from consul_tw.http._request import ApiCall, HTTPError, Reply
from consul_tw.http.root import Route
from consul_tw.raft.node import describe_contact, format_servers


def members(call: ApiCall) -> Reply:
    wan = bool(call.get("wan"))
    segment = call.get("segment", "")
    if wan and segment not in ("", "_all"):
        raise HTTPError(400, "Cannot provide a segment with wan=true")
    found = call.agent.members(wan=wan)
    return Reply(None if found is None else [member_json(m) for m in found])


def _raft_stats(agent: Agent) -> dict[str, str] | None:
    status = agent.raft_status()
    if status is None:
        return None
    return {
        "applied_index": str(status.applied_index),
        "commit_index": str(status.commit_index),
        "fsm_pending": "0",
        "last_contact": describe_contact(status, agent.clock.seconds()),
        "last_log_index": str(status.last_log_index),
        "last_log_term": str(status.last_log_term),
        "last_snapshot_index": "0",
        "last_snapshot_term": "0",
        "latest_configuration": format_servers(status.voters),
        "latest_configuration_index": str(status.configuration_index),
        "num_peers": str(max(0, len(status.voters) - 1)),
        "protocol_version": "3",
        "protocol_version_max": "3",
        "protocol_version_min": "0",
        "snapshot_version_max": "1",
        "snapshot_version_min": "0",
        "state": status.state,
        "term": str(status.term),
    }


def _debug_config(agent: Agent) -> dict[str, Any]:
    """The runtime configuration, Consul-style keys; nothing secret is held yet."""
    config = agent.config
    return {
        "Bootstrap": config.bootstrap,
        "BindAddr": config.bind_addr,
        "ClientAddrs": [config.client_addr],
        "DataDir": config.data_dir or "",
        "Datacenter": config.datacenter,
        "DevMode": config.dev,
        "DNSDomain": config.domain,
        "DNSPort": config.ports.dns,
        "HTTPPort": config.ports.http,
        "LeaveDrainTime": f"{config.leave_drain_time}s",
        "LeaveOnTerm": config.leave_on_terminate,
        "LogLevel": config.log_level,
        "NodeID": config.node_id,
        "NodeMeta": dict(config.node_meta),
        "NodeName": config.node_name,
        "RaftMultiplier": config.raft_multiplier,
        "SerfPortLAN": config.ports.serf_lan,
        "SerfPortWAN": config.ports.serf_wan,
        "ServerMode": config.server,
        "ServerPort": config.ports.server,
        "SkipLeaveOnInt": config.skip_leave_on_interrupt,
    }


def self_info(call: ApiCall) -> Reply:
    agent = call.agent
    config = agent.config
    local = agent.lan.local_member()
    stats: dict[str, Any] = {
        "agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
        "build": {"prerelease": "", "revision": REVISION, "version": __version__},
        "consul": {
            "acl": "disabled",
            "bootstrap": "true" if config.bootstrap else "false",
            "known_datacenters": "1",
            "leader": "true" if agent.is_leader() else "false",
            "leader_addr": agent.leader_address(),
            "server": "true" if config.server else "false",
        },
        "runtime": {
            "arch": platform.machine(),
            "cpu_count": str(os.cpu_count() or 1),
            "os": sys.platform,
            "version": f"python{platform.python_version()}",
        },
        "serf_lan": agent.lan.stats(),
    }
    raft = _raft_stats(agent)
    if raft is not None:
        stats["raft"] = raft
    if agent.wan is not None:
        stats["serf_wan"] = agent.wan.stats()
    if not config.server:
        stats["consul"] = {"known_servers": "0", "server": "false"}
    return Reply(
        {
            "Config": {
                "Datacenter": config.datacenter,
                "NodeName": config.node_name,
                "NodeID": config.node_id,
                "Server": config.server,
                "Revision": REVISION,
                "Version": __version__,
            },
            "DebugConfig": _debug_config(agent),
            "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
            "Member": member_json(local),
            "Stats": {k: stats[k] for k in sorted(stats)},
            "Meta": {"consul-network-segment": "", **dict(config.node_meta)},
        }
    )


def leave(call: ApiCall) -> Deferred[Reply]:
    agent = call.agent

    def left(_: object) -> Reply:
        # Exit only once this answer has reached the client.
        call.after_reply.append(agent.leave_answered)
        return Reply(b"", json=False)

    return agent.leave().addCallback(left)


def join(call: ApiCall) -> Deferred[Reply]:
    address = call.suffix
    if not address:
        raise HTTPError(400, "Missing address to join")
    wan = bool(call.get("wan"))
    joining = call.agent.join([address], wan=wan)
    return joining.addCallbacks(lambda _: Reply(b"", json=False), _as_500)


def force_leave(call: ApiCall) -> Deferred[Reply]:
    node = call.suffix
    if not node:
        raise HTTPError(400, "Missing node name")
    done = call.agent.force_leave(node, prune=call.has("prune"), wan=bool(call.get("wan")))
    return done.addCallbacks(lambda _: Reply(b"", json=False), _as_500)


def _as_500(failure: Failure) -> Failure:
    """Membership actions fail for ordinary reasons (unreachable seed, unknown node)."""
    if failure.check(HTTPError):
        return failure
    return Failure(HTTPError(500, failure.getErrorMessage() or failure.type.__name__))


ROUTES = [
    Route("/v1/agent/members", {"GET": members}),
    Route("/v1/agent/self", {"GET": self_info}),
    Route("/v1/agent/leave", {"PUT": leave}),
    Route("/v1/agent/join/", {"PUT": join}, prefix=True),
    Route("/v1/agent/force-leave/", {"PUT": force_leave}, prefix=True),
]
