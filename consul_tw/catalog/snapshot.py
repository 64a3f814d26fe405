# -*- test-case-name: tests.unit.catalog.test_kv -*-
"""
The state store as bytes, for Raft's log compaction and InstallSnapshot.

A snapshot is one msgpack map with a format name and version, every row of
every table, the KV tombstones and the table indexes.  Rows are written in
a canonical order (sorted by key), so two stores with the same content give
the same bytes, which is how the tests compare replicas.

Decoding checks every field's type: a snapshot arrives from a peer or from
disk, and a damaged one must be refused whole (:class:`SnapshotError`)
before the store replaces anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import msgpack

from consul_tw.catalog.kv import DirEntry
from consul_tw.catalog.structs import HealthCheck, Node, NodeService, Weights

FORMAT = "consul-tw/state-store"
VERSION = 1
_MAX_UINT64 = 2**64 - 1

T = TypeVar("T")


class SnapshotError(ValueError):
    """Bytes that are not a state-store snapshot this release can restore."""


@attrs.frozen(kw_only=True)
class StateImage:
    """Everything a store holds, as plain rows; services and checks carry their node key."""

    nodes: tuple[Node, ...]
    services: tuple[tuple[str, NodeService], ...]
    checks: tuple[tuple[str, HealthCheck], ...]
    kvs: tuple[DirEntry, ...]
    tombstones: tuple[tuple[str, int], ...]
    indexes: Mapping[str, int]


# -- encoding ------------------------------------------------------------------


def _plain(row: Any) -> dict[str, Any]:
    return attrs.asdict(row)


def encode_state(image: StateImage) -> bytes:
    body = {
        "format": FORMAT,
        "version": VERSION,
        "indexes": {k: image.indexes[k] for k in sorted(image.indexes)},
        "nodes": [_plain(n) for n in sorted(image.nodes, key=lambda n: n.node.lower())],
        "services": [
            [key, _plain(svc)] for key, svc in sorted(image.services, key=lambda p: (p[0], p[1].id))
        ],
        "checks": [
            [key, _plain(chk)]
            for key, chk in sorted(image.checks, key=lambda p: (p[0], p[1].check_id))
        ],
        "kvs": [_plain(e) for e in sorted(image.kvs, key=lambda e: e.key)],
        "tombstones": [[key, index] for key, index in sorted(image.tombstones)],
    }
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


# -- decoding ------------------------------------------------------------------


def _fail(what: str) -> SnapshotError:
    return SnapshotError(f"malformed state snapshot: {what}")


def _typed(value: Any, kind: type[T], what: str) -> T:
    if type(value) is not kind:
        raise _fail(f"{what} is not a {kind.__name__}")
    return value


def _uint(value: Any, what: str) -> int:
    number = _typed(value, int, what)
    if not 0 <= number <= _MAX_UINT64:
        raise _fail(f"{what} is out of range")
    return number


def _str_map(value: Any, what: str) -> dict[str, str]:
    mapping = _typed(value, dict, what)
    for k, v in mapping.items():
        _typed(k, str, f"a key of {what}")
        _typed(v, str, f"a value of {what}")
    return mapping


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    return tuple(_typed(v, str, f"an item of {what}") for v in _typed(value, list, what))


def _record(value: Any, cls: type, what: str) -> dict[str, Any]:
    """The fields of one row, exactly those of ``cls`` (none missing, none extra)."""
    fields = _typed(value, dict, what)
    names = {f.name for f in attrs.fields(cls)}
    if set(fields) != names:
        raise _fail(f"{what} has the fields {sorted(map(str, fields))}, not {sorted(names)}")
    return fields


def _node(value: Any) -> Node:
    f = _record(value, Node, "a node")
    return Node(
        id=_typed(f["id"], str, "node id"),
        node=_typed(f["node"], str, "node name"),
        address=_typed(f["address"], str, "node address"),
        datacenter=_typed(f["datacenter"], str, "node datacenter"),
        tagged_addresses=_str_map(f["tagged_addresses"], "node tagged addresses"),
        meta=_str_map(f["meta"], "node meta"),
        create_index=_uint(f["create_index"], "node create index"),
        modify_index=_uint(f["modify_index"], "node modify index"),
    )


def _service(value: Any) -> NodeService:
    f = _record(value, NodeService, "a service")
    weights = _record(f["weights"], Weights, "service weights")
    return NodeService(
        id=_typed(f["id"], str, "service id"),
        service=_typed(f["service"], str, "service name"),
        tags=_str_list(f["tags"], "service tags"),
        address=_typed(f["address"], str, "service address"),
        meta=_str_map(f["meta"], "service meta"),
        port=_typed(f["port"], int, "service port"),
        weights=Weights(
            passing=_typed(weights["passing"], int, "passing weight"),
            warning=_typed(weights["warning"], int, "warning weight"),
        ),
        enable_tag_override=_typed(f["enable_tag_override"], bool, "enable_tag_override"),
        create_index=_uint(f["create_index"], "service create index"),
        modify_index=_uint(f["modify_index"], "service modify index"),
    )


def _check(value: Any) -> HealthCheck:
    f = _record(value, HealthCheck, "a check")
    text = {
        name: _typed(f[name], str, f"check {name}")
        for name in (
            "node",
            "check_id",
            "name",
            "status",
            "notes",
            "output",
            "service_id",
            "service_name",
            "type",
        )
    }
    return HealthCheck(
        **text,
        service_tags=_str_list(f["service_tags"], "check service tags"),
        create_index=_uint(f["create_index"], "check create index"),
        modify_index=_uint(f["modify_index"], "check modify index"),
    )


def _entry(value: Any) -> DirEntry:
    f = _record(value, DirEntry, "a KV entry")
    session = f["session"]
    if session is not None:
        _typed(session, str, "KV session")
    return DirEntry(
        key=_typed(f["key"], str, "KV key"),
        value=_typed(f["value"], bytes, "KV value"),
        flags=_uint(f["flags"], "KV flags"),
        lock_index=_uint(f["lock_index"], "KV lock index"),
        session=session,
        create_index=_uint(f["create_index"], "KV create index"),
        modify_index=_uint(f["modify_index"], "KV modify index"),
    )


def _keyed(value: Any, decode: Callable[[Any], T], what: str) -> tuple[str, T]:
    pair = _typed(value, list, what)
    if len(pair) != 2:
        raise _fail(f"{what} is not a [node, row] pair")
    return _typed(pair[0], str, f"the node key of {what}"), decode(pair[1])


def _tombstone(value: Any) -> tuple[str, int]:
    pair = _typed(value, list, "a tombstone")
    if len(pair) != 2:
        raise _fail("a tombstone is not a [key, index] pair")
    return _typed(pair[0], str, "tombstone key"), _uint(pair[1], "tombstone index")


def decode_state(data: bytes, tables: tuple[str, ...]) -> StateImage:
    """
    The image in ``data``; ``tables`` are the table names this release
    keeps indexes for (an index of any other table is refused).
    """
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types
        raise _fail(f"not msgpack ({e})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise _fail("not a consul-tw state-store snapshot")
    if body.get("version") != VERSION:
        raise SnapshotError(f"unsupported state snapshot version {body.get('version')!r}")
    expected = {"format", "version", "indexes", "nodes", "services", "checks", "kvs", "tombstones"}
    if set(body) != expected:
        raise _fail(f"sections {sorted(map(str, body))}")
    indexes = _typed(body["indexes"], dict, "indexes")
    for table, index in indexes.items():
        if table not in tables:
            raise _fail(f"index of an unknown table {table!r}")
        _uint(index, f"index of {table}")
    return StateImage(
        nodes=tuple(_node(n) for n in _typed(body["nodes"], list, "nodes")),
        services=tuple(
            _keyed(s, _service, "a service") for s in _typed(body["services"], list, "services")
        ),
        checks=tuple(_keyed(c, _check, "a check") for c in _typed(body["checks"], list, "checks")),
        kvs=tuple(_entry(e) for e in _typed(body["kvs"], list, "kvs")),
        tombstones=tuple(_tombstone(t) for t in _typed(body["tombstones"], list, "tombstones")),
        indexes=indexes,
    )
