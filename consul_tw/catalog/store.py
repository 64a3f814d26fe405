# -*- test-case-name: tests.unit.catalog.test_store -*-
"""
The catalog state store: nodes, services and checks with per-table indexes.

Only the Raft FSM writes here, each write stamped with the Raft index of the
log entry that caused it; everything else (HTTP, DNS, the agent) reads.  Each
table remembers the highest index that touched it, including deletions, so an
``X-Consul-Index`` header never goes backwards, exactly as Consul's memdb
``index`` table does.

Node names are unique case-insensitively (Consul's memdb index on Node is
lower-cased), but every row keeps the spelling it was registered with.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from consul_tw.catalog.commands import CheckSpec, NodeSpec, Register, ServiceSpec
from consul_tw.catalog.structs import HealthCheck, Node, NodeService, ServiceInstance, Weights

NODES = "nodes"
SERVICES = "services"
CHECKS = "checks"
TABLES = (NODES, SERVICES, CHECKS)


class RegistrationError(ValueError):
    """A write the catalog refuses; Consul answers these with HTTP 500."""


@attrs.define
class StateStore:
    """In-memory tables, keyed for the lookups the HTTP API and DNS make."""

    _nodes: dict[str, Node] = attrs.field(factory=dict)
    _services: dict[str, dict[str, NodeService]] = attrs.field(factory=dict)
    _checks: dict[str, dict[str, HealthCheck]] = attrs.field(factory=dict)
    _table_index: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(TABLES, 0))
    #: Called after every write that changed a table (blocking queries wake on it).
    listeners: list[Callable[[], None]] = attrs.field(factory=list)

    # -- reads ------------------------------------------------------------

    def max_index(self, *tables: str) -> int:
        """The highest index of the named tables (all tables when none given)."""
        return max(self._table_index[t] for t in (tables or TABLES))

    def nodes(self) -> list[Node]:
        """Every node, sorted by name as Consul's catalog lists them."""
        return sorted(self._nodes.values(), key=lambda n: n.node)

    def get_node(self, name: str) -> Node | None:
        """A node by name, case-insensitively; None if unknown."""
        return self._nodes.get(name.lower())

    def node_services(self, name: str) -> list[NodeService]:
        """The services on a node, sorted by ID."""
        services = self._services.get(name.lower(), {})
        return [services[k] for k in sorted(services)]

    def node_checks(self, name: str) -> list[HealthCheck]:
        """All checks on a node (node-level and service-level), sorted by check ID."""
        checks = self._checks.get(name.lower(), {})
        return [checks[k] for k in sorted(checks)]

    def services(self) -> dict[str, list[str]]:
        """Service name to the union of its instances' tags (``/v1/catalog/services``)."""
        result: dict[str, set[str]] = {}
        for services in self._services.values():
            for svc in services.values():
                result.setdefault(svc.service, set()).update(svc.tags)
        return {name: sorted(tags) for name, tags in sorted(result.items())}

    def service_instances(self, service: str, tag: str | None = None) -> list[ServiceInstance]:
        """
        Instances of a service (case-insensitive name), each with the node's
        checks and its own, ordered by node name then service ID.
        """
        wanted = service.lower()
        found: list[ServiceInstance] = []
        for node in self.nodes():
            key = node.node.lower()
            checks = self._checks.get(key, {})
            for svc_id in sorted(self._services.get(key, {})):
                svc = self._services[key][svc_id]
                if svc.service.lower() != wanted:
                    continue
                if tag is not None and tag.lower() not in {t.lower() for t in svc.tags}:
                    continue
                bearing = tuple(
                    c for _, c in sorted(checks.items()) if c.service_id in ("", svc.id)
                )
                found.append(ServiceInstance(node=node, service=svc, checks=bearing))
        return found

    # -- writes (FSM only) -----------------------------------------------

    def register(self, index: int, request: Register) -> None:
        """Apply a registration at ``index``; unchanged rows keep their indexes."""
        self._check_registration(request)
        key = request.node.node.lower()
        if not (request.skip_node_update and key in self._nodes):
            self._upsert_node(index, request.node)
        if request.service is not None:
            self._upsert_service(index, key, request.service)
        for check in request.checks:
            self._upsert_check(index, key, request.node.node, check)

    def deregister_node(self, index: int, name: str) -> None:
        key = name.lower()
        if key not in self._nodes:
            return
        del self._nodes[key]
        self._bump(NODES, index)
        if self._services.pop(key, None):
            self._bump(SERVICES, index)
        if self._checks.pop(key, None):
            self._bump(CHECKS, index)

    def deregister_service(self, index: int, node: str, service_id: str) -> None:
        key = node.lower()
        if self._services.get(key, {}).pop(service_id, None) is None:
            return
        self._bump(SERVICES, index)
        checks = self._checks.get(key, {})
        for check_id in [c for c, v in checks.items() if v.service_id == service_id]:
            del checks[check_id]
            self._bump(CHECKS, index)

    def deregister_check(self, index: int, node: str, check_id: str) -> None:
        if self._checks.get(node.lower(), {}).pop(check_id, None) is not None:
            self._bump(CHECKS, index)

    # -- helpers ----------------------------------------------------------

    def _bump(self, table: str, index: int) -> None:
        self._table_index[table] = index
        for listener in list(self.listeners):
            listener()

    def _check_registration(self, request: Register) -> None:
        if not request.node.node:
            raise RegistrationError("Must provide node")
        if not request.node.address:
            raise RegistrationError("Must provide address")
        existing = self._nodes.get(request.node.node.lower())
        if (
            existing is not None
            and existing.id
            and request.node.id
            and existing.id != request.node.id
        ):
            raise RegistrationError(
                f'node ID "{request.node.id}" for node "{request.node.node}" aliases '
                f'existing node "{existing.node}"'
            )
        if request.service is not None and not request.service.service:
            raise RegistrationError("Must provide service name")
        known = set(self._services.get(request.node.node.lower(), {}))
        if request.service is not None:
            known.add(request.service.id)
        for check in request.checks:
            if check.service_id and check.service_id not in known:
                raise RegistrationError(
                    f'Unknown service ID "{check.service_id}" for check ID "{check.check_id}"'
                )

    def _upsert_node(self, index: int, spec: NodeSpec) -> None:
        key = spec.node.lower()
        old = self._nodes.get(key)
        row = Node(
            id=spec.id,
            node=spec.node,
            address=spec.address,
            datacenter=spec.datacenter,
            tagged_addresses=spec.tagged_addresses,
            meta=spec.meta,
            create_index=old.create_index if old else index,
            modify_index=old.modify_index if old else index,
        )
        if old == row:
            return
        self._nodes[key] = attrs.evolve(row, modify_index=index)
        self._bump(NODES, index)

    def _upsert_service(self, index: int, key: str, spec: ServiceSpec) -> None:
        services = self._services.setdefault(key, {})
        old = services.get(spec.id)
        row = NodeService(
            id=spec.id,
            service=spec.service,
            tags=spec.tags,
            address=spec.address,
            meta=spec.meta,
            port=spec.port,
            weights=Weights(passing=spec.weights_passing, warning=spec.weights_warning),
            enable_tag_override=spec.enable_tag_override,
            create_index=old.create_index if old else index,
            modify_index=old.modify_index if old else index,
        )
        if old == row:
            return
        services[spec.id] = attrs.evolve(row, modify_index=index)
        self._bump(SERVICES, index)

    def _upsert_check(self, index: int, key: str, node: str, spec: CheckSpec) -> None:
        checks = self._checks.setdefault(key, {})
        old = checks.get(spec.check_id)
        service = self._services.get(key, {}).get(spec.service_id) if spec.service_id else None
        row = HealthCheck(
            node=self._nodes[key].node if key in self._nodes else node,
            check_id=spec.check_id,
            name=spec.name,
            status=spec.status,
            notes=spec.notes,
            output=spec.output,
            service_id=spec.service_id,
            service_name=service.service if service else "",
            service_tags=service.tags if service else (),
            type=spec.type,
            create_index=old.create_index if old else index,
            modify_index=old.modify_index if old else index,
        )
        if old == row:
            return
        checks[spec.check_id] = attrs.evolve(row, modify_index=index)
        self._bump(CHECKS, index)
