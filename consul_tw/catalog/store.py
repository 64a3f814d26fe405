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

The KV table follows Consul's ``state/kvs.go``: a delete leaves a tombstone,
and the index a KV read reports comes from the rows it returns, the
tombstones under its prefix, or the ``kvs``/``tombstones`` table indexes,
in that order.  :meth:`StateStore.snapshot` and :meth:`StateStore.restore`
carry every table and index across Raft snapshots
(:mod:`consul_tw.catalog.snapshot`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs

from consul_tw.catalog import snapshot as _snapshot
from consul_tw.catalog.commands import (
    KV_CAS,
    KV_DELETE,
    KV_DELETE_CAS,
    KV_DELETE_TREE,
    KV_LOCK,
    KV_SET,
    KV_UNLOCK,
    KVS,
    CheckSpec,
    NodeSpec,
    Register,
    ServiceSpec,
)
from consul_tw.catalog.kv import DirEntry, KVTable
from consul_tw.catalog.structs import HealthCheck, Node, NodeService, ServiceInstance, Weights

NODES = "nodes"
SERVICES = "services"
CHECKS = "checks"
KV_TABLE = "kvs"
TOMBSTONES = "tombstones"
TABLES = (NODES, SERVICES, CHECKS, KV_TABLE, TOMBSTONES)


class RegistrationError(ValueError):
    """A write the catalog refuses; Consul answers these with HTTP 500."""


class KVSError(RegistrationError):
    """A KV write the store refuses (a lock without a known session): Consul's 500 text."""


def _go_quote(text: str) -> str:
    """Go's ``%#v`` of a string, as Consul's error texts quote session IDs."""
    return json.dumps(text, ensure_ascii=False)


@attrs.define
class StateStore:
    """In-memory tables, keyed for the lookups the HTTP API and DNS make."""

    _nodes: dict[str, Node] = attrs.field(factory=dict)
    _services: dict[str, dict[str, NodeService]] = attrs.field(factory=dict)
    _checks: dict[str, dict[str, HealthCheck]] = attrs.field(factory=dict)
    _kv: KVTable = attrs.field(factory=KVTable)
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

    # -- KV reads (Consul's KVSGet / KVSList / KVSListKeys) --------------------

    def kv_get(self, key: str) -> tuple[int, DirEntry | None]:
        """
        One entry and the index to report: its ModifyIndex, or for a missing
        key the KV tables' index (deletes included), as Consul's ``KVS.Get``.
        """
        entry = self._kv.get(key)
        if entry is not None:
            return entry.modify_index, entry
        return self.max_index(KV_TABLE, TOMBSTONES), None

    def kv_list(self, prefix: str) -> tuple[int, list[DirEntry]]:
        """The entries under ``prefix`` in key order, and the prefix's index."""
        entries = list(self._kv.with_prefix(prefix))
        newest = max((e.modify_index for e in entries), default=0)
        return self._kv_prefix_index(prefix, newest), entries

    def kv_keys(self, prefix: str, separator: str = "") -> tuple[int, list[str]]:
        """
        The keys under ``prefix``; with a separator, each key is cut after the
        first separator that follows the prefix and repeats are collapsed
        (``a/b/c`` and ``a/b/d`` under ``a/`` list as ``a/b/``).
        """
        keys: list[str] = []
        newest = 0
        last = None
        for entry in self._kv.with_prefix(prefix):
            newest = max(newest, entry.modify_index)
            cut = entry.key.find(separator, len(prefix)) if separator else -1
            if cut < 0:
                keys.append(entry.key)
                continue
            key = entry.key[: cut + len(separator)]
            if key != last:
                keys.append(key)
                last = key
        return self._kv_prefix_index(prefix, newest), keys

    def _kv_prefix_index(self, prefix: str, newest: int) -> int:
        """
        Consul's index of a prefix read: the newest row or tombstone under a
        non-empty prefix, else (nothing there, or the empty prefix) the KV
        tables' index, so that it never goes backwards after a delete.
        """
        table = self.max_index(KV_TABLE, TOMBSTONES)
        if not prefix:
            return table
        return max(newest, self._kv.tombstone_max(prefix)) or table

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

    # -- KV writes (FSM only; Consul's api.KVOp semantics) ------------------

    def kv_apply(self, index: int, command: KVS) -> bool:
        """
        Apply one KV write at ``index``; the result is what Consul's
        ``KVS.Apply`` answers (False when a CAS or a lock does not hold).
        """
        op = command.op
        if op == KV_SET:
            return self._kv_set(index, command)
        if op == KV_CAS:
            existing = self._kv.get(command.key)
            expected = existing.modify_index if existing is not None else 0
            if command.cas != expected:
                return False
            return self._kv_set(index, command)
        if op == KV_DELETE:
            self._kv_delete(index, command.key)
            return True
        if op == KV_DELETE_CAS:
            existing = self._kv.get(command.key)
            if existing is None or existing.modify_index != command.cas:
                # Consul: a CAS delete of a key that is already gone succeeds.
                return existing is None
            self._kv_delete(index, command.key)
            return True
        if op == KV_DELETE_TREE:
            self._kv_delete_tree(index, command.key)
            return True
        if op == KV_LOCK:
            return self._kv_lock(index, command)
        if op == KV_UNLOCK:
            return self._kv_unlock(index, command)
        raise KVSError(f"Invalid KVS operation '{op}'")

    def reap_tombstones(self, up_to: int) -> None:
        """
        Forget tombstones deleted at or before ``up_to`` (Consul's reap, which
        the leader drives through Raft once they are old enough).  Table
        indexes stay where they are, so reads never go backwards.
        """
        self._kv.reap(up_to)

    def _kv_set(self, index: int, command: KVS) -> bool:
        existing = self._kv.get(command.key)
        row = DirEntry(
            key=command.key,
            value=command.value,
            flags=command.flags,
            # Consul keeps the holder of a lock across a plain write.
            session=existing.session if existing is not None else None,
            create_index=existing.create_index if existing is not None else index,
            modify_index=index,
        )
        if existing is not None and existing.same_content(row):
            return True
        self._kv.put(row)
        self._bump(KV_TABLE, index)
        return True

    def _kv_delete(self, index: int, key: str) -> None:
        if self._kv.remove(key) is None:
            return
        self._kv.bury(key, index)
        self._table_index[TOMBSTONES] = index
        self._bump(KV_TABLE, index)

    def _kv_delete_tree(self, index: int, prefix: str) -> None:
        if not self._kv.remove_prefix(prefix):
            return
        if prefix:
            # One tombstone for the whole subtree; the empty prefix needs none,
            # since the table index already covers every key.
            self._kv.bury(prefix, index)
            self._table_index[TOMBSTONES] = index
        self._bump(KV_TABLE, index)

    def _session_exists(self, session: str) -> bool:
        """Sessions are not implemented yet: no session exists."""
        return False

    def _kv_lock(self, index: int, command: KVS) -> bool:
        if not command.session:
            raise KVSError("missing session")
        if not self._session_exists(command.session):
            raise KVSError(f"invalid session {_go_quote(command.session)}")
        raise KVSError("KV locks need sessions, which this agent does not implement yet")

    def _kv_unlock(self, index: int, command: KVS) -> bool:
        if not command.session:
            raise KVSError("missing session")
        existing = self._kv.get(command.key)
        if existing is None or existing.session != command.session:
            return False
        row = attrs.evolve(
            existing,
            value=command.value,
            flags=command.flags,
            session=None,
            modify_index=index,
        )
        self._kv.put(row)
        self._bump(KV_TABLE, index)
        return True

    # -- snapshot and restore ------------------------------------------------

    def snapshot(self) -> bytes:
        """Every table and table index, as bytes :meth:`restore` takes back."""
        return _snapshot.encode_state(
            _snapshot.StateImage(
                nodes=tuple(self._nodes.values()),
                services=tuple(
                    (key, svc) for key, rows in self._services.items() for svc in rows.values()
                ),
                checks=tuple(
                    (key, check) for key, rows in self._checks.items() for check in rows.values()
                ),
                kvs=tuple(self._kv.entries()),
                tombstones=tuple(self._kv.tombstones()),
                indexes=dict(self._table_index),
            )
        )

    def restore(self, data: bytes) -> None:
        """
        Replace the whole content with a snapshot's.  Junk raises
        :class:`consul_tw.catalog.snapshot.SnapshotError` and leaves the store
        as it was; the listeners stay and hear about the change.
        """
        image = _snapshot.decode_state(data, TABLES)
        nodes = {node.node.lower(): node for node in image.nodes}
        services: dict[str, dict[str, NodeService]] = {}
        for key, svc in image.services:
            services.setdefault(key, {})[svc.id] = svc
        checks: dict[str, dict[str, HealthCheck]] = {}
        for key, check in image.checks:
            checks.setdefault(key, {})[check.check_id] = check
        kv = KVTable()
        for entry in image.kvs:
            kv.put(entry)
        for key, index in image.tombstones:
            kv.bury(key, index)
        self._nodes, self._services, self._checks, self._kv = nodes, services, checks, kv
        self._table_index = {table: image.indexes.get(table, 0) for table in TABLES}
        for listener in list(self.listeners):
            listener()

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
