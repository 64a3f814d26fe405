# -*- test-case-name: tests.unit.catalog.test_reads -*-
"""
Reads of the replicated catalog, by name, as Consul's RPC endpoints serve them.

Each read names the tables whose index it reports and a function from the
state store and the read's arguments to Consul's JSON shape.  A server
answers them from its own store (:func:`local_read`), with Consul's
consistency rules and blocking; a client agent sends the same name and
arguments to a server over RPC and gets the same :class:`ReadResult`, so
the HTTP layer renders both alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed

from consul_tw.catalog.shapes import check_json, node_json, node_service_json, service_node_json
from consul_tw.catalog.store import CHECKS, NODES, SERVICES, StateStore


class UnknownRead(ValueError):
    """A read name this release does not serve (a peer running a newer release)."""


@attrs.frozen(kw_only=True)
class ReadOptions:
    stale: bool = False
    consistent: bool = False
    #: Blocking: answer once the index passes this (0: at once) or ``wait`` ends.
    index: int = 0
    wait: float = 300.0

    @property
    def mode(self) -> str:
        return "stale" if self.stale else "consistent" if self.consistent else "leader"


@attrs.frozen(kw_only=True)
class ReadResult:
    value: Any
    index: int
    known_leader: bool
    last_contact_ms: int
    consistency: str

    def to_wire(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> ReadResult:
        if not isinstance(data, dict):
            raise ValueError("malformed read result")
        try:
            return cls(
                value=data["value"],
                index=int(data["index"]),
                known_leader=bool(data["known_leader"]),
                last_contact_ms=int(data["last_contact_ms"]),
                consistency=str(data["consistency"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError("malformed read result") from None


def _meta_matches(meta: Any, wanted: dict[str, str]) -> bool:
    return all(meta.get(k) == v for k, v in wanted.items())


def _nodes(store: StateStore, args: dict[str, Any]) -> Any:
    wanted = dict(args.get("node_meta") or {})
    return [node_json(n) for n in store.nodes() if _meta_matches(n.meta, wanted)]


def _node(store: StateStore, args: dict[str, Any]) -> Any:
    row = store.get_node(str(args.get("node", "")))
    if row is None:
        return None
    return {
        "Node": node_json(row),
        "Services": {s.id: node_service_json(s) for s in store.node_services(row.node)},
    }


def _services(store: StateStore, args: dict[str, Any]) -> Any:
    return store.services()


def _service(store: StateStore, args: dict[str, Any]) -> Any:
    tags = [str(t).lower() for t in args.get("tags") or []]
    wanted = dict(args.get("node_meta") or {})
    found = []
    for instance in store.service_instances(str(args.get("service", ""))):
        instance_tags = {t.lower() for t in instance.service.tags}
        if all(t in instance_tags for t in tags) and _meta_matches(instance.node.meta, wanted):
            found.append(service_node_json(instance.node, instance.service))
    return found


def _node_checks(store: StateStore, args: dict[str, Any]) -> Any:
    return [check_json(c) for c in store.node_checks(str(args.get("node", "")))]


#: name → (tables whose index the answer carries, producer)
READS: dict[str, tuple[tuple[str, ...], Callable[[StateStore, dict[str, Any]], Any]]] = {
    "Catalog.ListNodes": ((NODES,), _nodes),
    "Catalog.NodeServices": ((NODES, SERVICES), _node),
    "Catalog.ListServices": ((SERVICES,), _services),
    "Catalog.ServiceNodes": ((NODES, SERVICES), _service),
    "Health.NodeChecks": ((CHECKS,), _node_checks),
}


class Reader:
    """What a local read needs of the agent (kept small so it is easy to fake)."""

    def __init__(
        self,
        *,
        store: StateStore,
        known_leader: Callable[[], bool],
        last_contact_ms: Callable[[], int],
        wait_for_change: Callable[[float], Deferred[bool]],
        seconds: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.store = store
        self.known_leader = known_leader
        self.last_contact_ms = last_contact_ms
        self.wait_for_change = wait_for_change
        self.seconds = seconds
        self.rng = rng

    def read(self, name: str, args: dict[str, Any], options: ReadOptions) -> Deferred[ReadResult]:
        """
        Answer a named read.  Default reads need the leader; ``stale`` may be
        answered by any server; ``consistent`` needs the leader (in a one-voter cluster, its
        own quorum): the caller checks leadership first.  With
        ``options.index`` the answer waits until the tables' index passes it
        or the wait (plus up to 1/16 jitter) ends.
        """
        if name not in READS:
            raise UnknownRead(f"rpc: can't find method {name}")
        tables, produce = READS[name]
        store = self.store

        def answer() -> ReadResult:
            return ReadResult(
                value=produce(store, args),
                index=max(1, store.max_index(*tables)),
                known_leader=self.known_leader(),
                last_contact_ms=self.last_contact_ms(),
                consistency=options.mode,
            )

        if options.index == 0 or store.max_index(*tables) > options.index:
            return succeed(answer())
        deadline = self.seconds() + options.wait + self.rng.random() * options.wait / 16

        def until_changed(_: object = None) -> Deferred[ReadResult] | ReadResult:
            remaining = deadline - self.seconds()
            if store.max_index(*tables) > options.index or remaining <= 0:
                return answer()
            return self.wait_for_change(remaining).addCallback(until_changed)

        result = until_changed()
        return result if isinstance(result, Deferred) else succeed(result)
