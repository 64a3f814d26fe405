# -*- test-case-name: tests.unit.http.test_api -*-
"""
``/v1/catalog/*`` reads: nodes, one node, services, one service, datacenters.

Each handler turns the query into a named catalog read
(:mod:`consul_tw.catalog.reads`) and renders the answer with Consul's
headers; the agent answers it from its store (a server) or forwards it to
a server (a client), so both give the same bytes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from consul_tw.catalog.reads import ReadOptions, ReadResult
from consul_tw.durations import parse_duration
from consul_tw.http._request import ApiCall, HTTPError, Reply, blocking_params, check_datacenter
from consul_tw.http.root import Route


def _node_meta_filter(call: ApiCall) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for item in call.query.get("node-meta", []):
        key, _, value = item.partition(":")
        wanted[key] = value
    return wanted


def read(call: ApiCall, name: str, args: dict[str, Any]) -> Deferred[Reply]:
    """Consul's read path: ``?dc``, consistency flags, blocking, X-Consul-* headers."""
    check_datacenter(call)
    stale, consistent = call.has("stale"), call.has("consistent")
    max_stale = 0.0
    max_stale_text = call.get("max_stale")
    if max_stale_text:
        try:
            max_stale = parse_duration(max_stale_text)
        except ValueError:
            raise HTTPError(400, f'Invalid max_stale value "{max_stale_text}"') from None
        stale = stale or max_stale > 0  # as Consul: a max_stale allows stale reads
    if stale and consistent:
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    index, wait = blocking_params(call)
    options = ReadOptions(
        stale=stale, consistent=consistent, index=index, wait=wait, max_stale=max_stale
    )

    def render(result: ReadResult) -> Reply:
        return Reply(
            result.value,
            headers={
                "X-Consul-Index": str(result.index),
                "X-Consul-KnownLeader": "true" if result.known_leader else "false",
                "X-Consul-LastContact": str(result.last_contact_ms),
                "X-Consul-Effective-Consistency": result.consistency,
            },
        )

    return call.agent.read(name, args, options).addCallback(render)


def nodes(call: ApiCall) -> Deferred[Reply]:
    return read(call, "Catalog.ListNodes", {"node_meta": _node_meta_filter(call)})


def node(call: ApiCall) -> Deferred[Reply]:
    if not call.suffix:
        raise HTTPError(400, "Missing node name")
    return read(call, "Catalog.NodeServices", {"node": call.suffix})


def services(call: ApiCall) -> Deferred[Reply]:
    return read(call, "Catalog.ListServices", {})


def service(call: ApiCall) -> Deferred[Reply]:
    if not call.suffix:
        raise HTTPError(400, "Missing service name")
    args = {
        "service": call.suffix,
        "tags": call.query.get("tag", []),
        "node_meta": _node_meta_filter(call),
    }
    return read(call, "Catalog.ServiceNodes", args)


def datacenters(call: ApiCall) -> Reply:
    return Reply([call.agent.config.datacenter])


ROUTES = [
    Route("/v1/catalog/nodes", {"GET": nodes}),
    Route("/v1/catalog/node/", {"GET": node}, prefix=True),
    Route("/v1/catalog/services", {"GET": services}),
    Route("/v1/catalog/service/", {"GET": service}, prefix=True),
    Route("/v1/catalog/datacenters", {"GET": datacenters}),
]
