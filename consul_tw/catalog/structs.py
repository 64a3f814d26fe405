# -*- test-case-name: tests.unit.catalog.test_store -*-
"""
Catalog records: nodes, the services on them and their health checks.

These are the rows of the state store.  They are frozen so that a reader
(an HTTP resource, the DNS authority) can hold one without copying while the
Raft FSM keeps writing: a write replaces a row, it never mutates one.  Field
names are Python's; the Consul JSON names live in :mod:`consul_tw.catalog.shapes`.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

#: Health check statuses, as Consul spells them.
PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
CHECK_STATUSES = (PASSING, WARNING, CRITICAL)

#: The node check the leader manages from gossip membership.
SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"
SERF_ALIVE_OUTPUT = "Agent alive and reachable"
SERF_FAILED_OUTPUT = "Agent not live or unreachable"


def _frozen_dict(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class Weights:
    """DNS SRV weights of a service instance, by its health."""

    passing: int = 1
    warning: int = 1


@attrs.frozen(kw_only=True)
class Node:
    """One row of the nodes table (Consul's ``structs.Node``)."""

    id: str
    node: str
    address: str
    datacenter: str
    tagged_addresses: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_dict)
    meta: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_dict)
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen(kw_only=True)
class NodeService:
    """A service instance registered on a node (Consul's ``structs.NodeService``)."""

    id: str
    service: str
    tags: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    address: str = ""
    meta: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_dict)
    port: int = 0
    weights: Weights = attrs.field(factory=Weights)
    enable_tag_override: bool = False
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen(kw_only=True)
class HealthCheck:
    """A node-level or service-level check (Consul's ``structs.HealthCheck``)."""

    node: str
    check_id: str
    name: str
    status: str = CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    type: str = ""
    create_index: int = 0
    modify_index: int = 0


@attrs.frozen(kw_only=True)
class ServiceInstance:
    """A service joined with its node and every check that bears on its health."""

    node: Node
    service: NodeService
    checks: tuple[HealthCheck, ...] = ()

    @property
    def status(self) -> str:
        """The worst status of the node checks and the service's own checks."""
        return aggregate_status(self.checks)


def aggregate_status(checks: tuple[HealthCheck, ...] | list[HealthCheck]) -> str:
    """Critical beats warning beats passing; no checks at all is passing."""
    statuses = {check.status for check in checks}
    for status in (CRITICAL, WARNING):
        if status in statuses:
            return status
    return PASSING
