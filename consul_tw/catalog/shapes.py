# -*- test-case-name: tests.unit.http.test_api -*-
"""
Catalog and membership records as Consul's JSON objects.

Field order follows Consul's Go struct declarations, because clients and
humans diff this output against Consul's; map keys are sorted as Go's
encoder sorts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consul_tw.catalog.structs import HealthCheck, Node, NodeService
from consul_tw.gossip.members import Member


def _sorted(mapping: Mapping[str, str]) -> dict[str, str]:
    return {k: mapping[k] for k in sorted(mapping)}


def node_json(node: Node) -> dict[str, Any]:
    return {
        "ID": node.id,
        "Node": node.node,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": _sorted(node.tagged_addresses),
        "Meta": _sorted(node.meta),
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }


def weights_json(service: NodeService) -> dict[str, int]:
    return {"Passing": service.weights.passing, "Warning": service.weights.warning}


def node_service_json(service: NodeService) -> dict[str, Any]:
    return {
        "ID": service.id,
        "Service": service.service,
        "Tags": list(service.tags),
        "Address": service.address,
        "Meta": _sorted(service.meta) if service.meta else None,
        "Port": service.port,
        "Weights": weights_json(service),
        "EnableTagOverride": service.enable_tag_override,
        "Proxy": {"MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "CreateIndex": service.create_index,
        "ModifyIndex": service.modify_index,
    }


def service_node_json(node: Node, service: NodeService) -> dict[str, Any]:
    """One entry of ``/v1/catalog/service/:name`` (Consul's ServiceNode)."""
    return {
        "ID": node.id,
        "Node": node.node,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": _sorted(node.tagged_addresses),
        "NodeMeta": _sorted(node.meta),
        "ServiceKind": "",
        "ServiceID": service.id,
        "ServiceName": service.service,
        "ServiceTags": list(service.tags),
        "ServiceAddress": service.address,
        "ServiceWeights": weights_json(service),
        "ServiceMeta": _sorted(service.meta),
        "ServicePort": service.port,
        "ServiceEnableTagOverride": service.enable_tag_override,
        "ServiceProxy": {"MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "CreateIndex": service.create_index,
        "ModifyIndex": service.modify_index,
    }


def check_json(check: HealthCheck) -> dict[str, Any]:
    return {
        "Node": check.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(check.service_tags),
        "Type": check.type,
        "Definition": {},
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    }


def member_json(member: Member) -> dict[str, Any]:
    return {
        "Name": member.name,
        "Addr": member.addr,
        "Port": member.port,
        "Tags": _sorted(member.tags),
        "Status": int(member.status),
        "ProtocolMin": member.protocol_min,
        "ProtocolMax": member.protocol_max,
        "ProtocolCur": member.protocol_cur,
        "DelegateMin": member.delegate_min,
        "DelegateMax": member.delegate_max,
        "DelegateCur": member.delegate_cur,
    }
