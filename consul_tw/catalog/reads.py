# -*- test-case-name: tests.unit.catalog.test_reads -*-
"""
Reads of the replicated catalog, by name, as Consul's RPC endpoints serve them.

Each read names the tables whose index it reports and a function from the
state store and the read's arguments to Consul's JSON shape.  A server
answers them from its own store (:func:`local_read`), with Consul's
consistency rules and blocking; a client agent sends the same name and
arguments to a server over RPC and gets the same :class:`ReadResult`, so
the HTTP layer renders both alike.

Most reads report their tables' index; the KV reads report their own (the
entry's ModifyIndex, a prefix's newest row or tombstone) by returning an
:class:`Indexed`, and blocking compares that index, so a blocking KV read
wakes on any store change but answers only once its own index moves.
KV values stay bytes here (msgpack carries them as they are).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed

from consul_tw.catalog.kv import entry_record
from consul_tw.catalog.shapes import check_json, node_json, node_service_json, service_node_json
from consul_tw.catalog.store import CHECKS, KV_TABLE, NODES, SERVICES, TOMBSTONES, StateStore

#: Consul's longest blocking-query wait (10 minutes).
MAX_WAIT = 600.0


class UnknownRead(ValueError):
    """A read name this release does not serve (a peer running a newer release)."""


@attrs.frozen(kw_only=True)
class ReadOptions:
    stale: bool = False
    consistent: bool = False
    #: Blocking: answer once the index passes this (0: at once) or ``wait`` ends.
    index: int = 0
    wait: float = 300.0
    #: ``?max_stale``: a stale read from a server that has not heard from the
    #: leader for longer than this goes to the leader instead (0: no limit).
    max_stale: float = 0.0

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


@attrs.frozen
class Indexed:
    """A read's value with the index it reports, when that is not its tables' index."""

    value: Any
    index: int


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


def _kv_get(store: StateStore, args: dict[str, Any]) -> Indexed:
    index, entry = store.kv_get(str(args.get("key", "")))
    return Indexed([] if entry is None else [entry_record(entry)], index)


def _kv_list(store: StateStore, args: dict[str, Any]) -> Indexed:
    index, entries = store.kv_list(str(args.get("prefix", "")))
    return Indexed([entry_record(e) for e in entries], index)


def _kv_list_keys(store: StateStore, args: dict[str, Any]) -> Indexed:
    index, keys = store.kv_keys(str(args.get("prefix", "")), str(args.get("separator", "")))
    return Indexed(keys, index)


KV_TABLES = (KV_TABLE, TOMBSTONES)

#: name → (tables whose index the answer carries, producer); a producer that
#: returns :class:`Indexed` reports its own index instead.
READS: dict[str, tuple[tuple[str, ...], Callable[[StateStore, dict[str, Any]], Any]]] = {
    "Catalog.ListNodes": ((NODES,), _nodes),
    "Catalog.NodeServices": ((NODES, SERVICES), _node),
    "Catalog.ListServices": ((SERVICES,), _services),
    "Catalog.ServiceNodes": ((NODES, SERVICES), _service),
    "Health.NodeChecks": ((CHECKS,), _node_checks),
    "KVS.Get": (KV_TABLES, _kv_get),
    "KVS.List": (KV_TABLES, _kv_list),
    "KVS.ListKeys": (KV_TABLES, _kv_list_keys),
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
        ``options.index`` the answer waits until the read's index passes it
        or the wait (plus up to 1/16 jitter) ends.
        """
        if name not in READS:
            raise UnknownRead(f"rpc: can't find method {name}")
        tables, produce = READS[name]
        store = self.store

        def evaluate() -> tuple[Any, int]:
            value = produce(store, args)
            if isinstance(value, Indexed):
                return value.value, value.index
            return value, store.max_index(*tables)

        def answer(value: Any, index: int) -> ReadResult:
            return ReadResult(
                value=value,
                index=max(1, index),
                known_leader=self.known_leader(),
                last_contact_ms=self.last_contact_ms(),
                consistency=options.mode,
            )

        value, index = evaluate()
        if options.index == 0 or index > options.index:
            return succeed(answer(value, index))
        deadline = self.seconds() + options.wait + self.rng.random() * options.wait / 16

        def until_changed(_: object = None) -> Deferred[ReadResult] | ReadResult:
            value, index = evaluate()
            remaining = deadline - self.seconds()
            if index > options.index or remaining <= 0:
                return answer(value, index)
            return self.wait_for_change(remaining).addCallback(until_changed)

        return self.wait_for_change(deadline - self.seconds()).addCallback(until_changed)
