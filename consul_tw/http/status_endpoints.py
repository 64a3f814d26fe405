# -*- test-case-name: tests.unit.http.test_api -*-
"""
``/v1/status/leader`` and ``/v1/status/peers``: a server's own Raft view (no
index headers); a client agent asks a server, as Consul's agents do.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from consul_tw.http._request import ApiCall, Reply, check_datacenter
from consul_tw.http.root import Route


def leader(call: ApiCall) -> Deferred[Reply]:
    check_datacenter(call)
    return call.agent.status_leader().addCallback(Reply)


def peers(call: ApiCall) -> Deferred[Reply]:
    check_datacenter(call)
    return call.agent.status_peers().addCallback(Reply)


ROUTES = [
    Route("/v1/status/leader", {"GET": leader}),
    Route("/v1/status/peers", {"GET": peers}),
]
