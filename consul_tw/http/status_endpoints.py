# -*- test-case-name: tests.unit.http.test_api -*-
"""``/v1/status/leader`` and ``/v1/status/peers``: the local Raft view, no index headers."""

from __future__ import annotations

from consul_tw.http._request import ApiCall, Reply, check_datacenter
from consul_tw.http.root import Route


def leader(call: ApiCall) -> Reply:
    check_datacenter(call)
    return Reply(call.agent.leader_address())


def peers(call: ApiCall) -> Reply:
    check_datacenter(call)
    return Reply(call.agent.peers())


ROUTES = [
    Route("/v1/status/leader", {"GET": leader}),
    Route("/v1/status/peers", {"GET": peers}),
]
