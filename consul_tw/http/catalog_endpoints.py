# -*- test-case-name: tests.unit.http.test_api -*-
"""``/v1/catalog/*`` reads: nodes, one node, services, one service, datacenters."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from consul_tw.catalog.store import NODES, SERVICES, StateStore
from consul_tw.http._request import ApiCall, HTTPError, Reply, catalog_read
from consul_tw.http.root import Route
from consul_tw.http.shapes import node_json, node_service_json, service_node_json


def _node_meta_filter(call: ApiCall) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for item in call.query.get("node-meta", []):
        key, _, value = item.partition(":")
        wanted[key] = value
    return wanted


def _meta_matches(meta: Any, wanted: dict[str, str]) -> bool:
    return all(meta.get(k) == v for k, v in wanted.items())


def nodes(call: ApiCall) -> Deferred[Reply]:
    wanted = _node_meta_filter(call)
    return catalog_read(
        call,
        (NODES,),
        lambda store: [node_json(n) for n in store.nodes() if _meta_matches(n.meta, wanted)],
    )


def node(call: ApiCall) -> Deferred[Reply]:
    name = call.suffix
    if not name:
        raise HTTPError(400, "Missing node name")

    def produce(store: StateStore) -> Any:
        row = store.get_node(name)
        if row is None:
            return None
        return {
            "Node": node_json(row),
            "Services": {s.id: node_service_json(s) for s in store.node_services(row.node)},
        }

    return catalog_read(call, (NODES, SERVICES), produce)


def services(call: ApiCall) -> Deferred[Reply]:
    return catalog_read(call, (SERVICES,), lambda store: store.services())


def service(call: ApiCall) -> Deferred[Reply]:
    name = call.suffix
    if not name:
        raise HTTPError(400, "Missing service name")
    tags = call.query.get("tag", [])
    wanted = _node_meta_filter(call)

    def produce(store: StateStore) -> Any:
        found = []
        for instance in store.service_instances(name):
            instance_tags = {t.lower() for t in instance.service.tags}
            if all(t.lower() in instance_tags for t in tags) and _meta_matches(
                instance.node.meta, wanted
            ):
                found.append(service_node_json(instance.node, instance.service))
        return found

    return catalog_read(call, (NODES, SERVICES), produce)


def datacenters(call: ApiCall) -> Reply:
    return Reply([call.agent.config.datacenter])


ROUTES = [
    Route("/v1/catalog/nodes", {"GET": nodes}),
    Route("/v1/catalog/node/", {"GET": node}, prefix=True),
    Route("/v1/catalog/services", {"GET": services}),
    Route("/v1/catalog/service/", {"GET": service}, prefix=True),
    Route("/v1/catalog/datacenters", {"GET": datacenters}),
]
