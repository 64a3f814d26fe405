# -*- test-case-name: tests.unit.http.test_operator -*-
"""
``/v1/operator/raft/configuration`` and ``/v1/operator/raft/peer``.

The configuration is the Raft voters as the leader sees them (``?stale``:
as this server sees them), with the node names gossip knows for their IDs;
removing a peer is a configuration change the leader commits.  Clients
forward both to a server, as Consul's agents do.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from consul_tw.http._request import ApiCall, HTTPError, Reply, check_datacenter
from consul_tw.http.root import Route


def configuration(call: ApiCall) -> Deferred[Reply]:
    check_datacenter(call)
    return call.agent.raft_configuration(stale=call.has("stale")).addCallback(Reply)


def remove_peer(call: ApiCall) -> Deferred[Reply]:
    check_datacenter(call)
    peer_id = (call.query.get("id") or [""])[0] or None
    address = (call.query.get("address") or [""])[0] or None
    if peer_id is None and address is None:
        raise HTTPError(
            400,
            "Must specify either ?id with the server's ID or ?address with IP:port of peer "
            "to remove",
        )
    if peer_id is not None and address is not None:
        raise HTTPError(400, "Must specify only one of ?id or ?address")
    removing = call.agent.remove_raft_peer(peer_id=peer_id, address=address)
    return removing.addCallback(lambda _: Reply(b"", json=False))


ROUTES = [
    Route("/v1/operator/raft/configuration", {"GET": configuration}),
    Route("/v1/operator/raft/peer", {"DELETE": remove_peer}),
]
