# -*- test-case-name: tests.unit.catalog.test_fsm -*-
"""
Raft commands that change the catalog, and their versioned wire codec.

Every catalog change is one of these, appended to the Raft log and applied by
:class:`consul_tw.catalog.fsm.CatalogFSM` at the entry's index.  The codec is
msgpack with a leading command tag and version, so that log entries written by
this release can still be decoded once the durable log (the multi-server issue)
keeps them across upgrades.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import msgpack

from consul_tw.catalog.structs import CRITICAL


@attrs.frozen(kw_only=True)
class NodeSpec:
    """The node part of a registration, before the store assigns indexes."""

    id: str
    node: str
    address: str
    datacenter: str
    tagged_addresses: Mapping[str, str] = attrs.field(factory=dict)
    meta: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ServiceSpec:
    id: str
    service: str
    tags: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    address: str = ""
    meta: Mapping[str, str] = attrs.field(factory=dict)
    port: int = 0
    weights_passing: int = 1
    weights_warning: int = 1
    enable_tag_override: bool = False


@attrs.frozen(kw_only=True)
class CheckSpec:
    check_id: str
    name: str
    status: str = CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    type: str = ""


@attrs.frozen(kw_only=True)
class Register:
    """Upsert a node, and optionally one service and some checks on it."""

    node: NodeSpec
    service: ServiceSpec | None = None
    checks: tuple[CheckSpec, ...] = attrs.field(default=(), converter=tuple)
    #: Leave an existing node row as it is (the leader's reconciliation must
    #: not wipe the tagged addresses and meta the agent itself synced).
    skip_node_update: bool = False


@attrs.frozen(kw_only=True)
class Deregister:
    """Remove a whole node, or only one of its services or checks."""

    node: str
    service_id: str | None = None
    check_id: str | None = None


#: Consul's ``api.KVOp`` names of the KV writes (``lock``/``unlock`` need sessions).
KV_SET = "set"
KV_CAS = "cas"
KV_DELETE = "delete"
KV_DELETE_CAS = "delete-cas"
KV_DELETE_TREE = "delete-tree"
KV_LOCK = "lock"
KV_UNLOCK = "unlock"
KV_OPS = (KV_SET, KV_CAS, KV_DELETE, KV_DELETE_CAS, KV_DELETE_TREE, KV_LOCK, KV_UNLOCK)

#: The largest value of Consul's uint64 fields (flags, indexes).
MAX_UINT64 = 2**64 - 1


@attrs.frozen(kw_only=True)
class KVS:
    """
    One KV write (Consul's ``KVSRequest``): ``op`` is a name from
    :data:`KV_OPS`; ``cas`` is the ModifyIndex a ``cas``/``delete-cas``
    expects (0 with ``cas``: only if the key is absent); ``key`` is the
    prefix for ``delete-tree``.
    """

    op: str
    key: str
    value: bytes = b""
    flags: int = 0
    cas: int = 0
    session: str = ""


@attrs.frozen(kw_only=True)
class TombstoneReap:
    """Forget KV tombstones up to ``reap_index`` (the leader sends it once they expire)."""

    reap_index: int


Command = Register | Deregister | KVS | TombstoneReap

_VERSION = 1
_TAGS: dict[type, str] = {
    Register: "register",
    Deregister: "deregister",
    KVS: "kvs",
    TombstoneReap: "tombstone-reap",
}


class CommandDecodeError(ValueError):
    """A log entry's bytes are not a command this release understands."""


def _to_plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return {f.name: _to_plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def encode_command(command: Command) -> bytes:
    """Bytes for the Raft log: ``[tag, version, fields]``."""
    return msgpack.packb([_TAGS[type(command)], _VERSION, _to_plain(command)], use_bin_type=True)


def decode_command(data: bytes) -> Command:
    """Inverse of :func:`encode_command`; any malformed input is a CommandDecodeError."""
    try:
        tag, version, fields = msgpack.unpackb(data, raw=False)
        if version != _VERSION:
            raise CommandDecodeError(f"unsupported command version {version!r}")
        if tag == "register":
            return Register(
                node=NodeSpec(**fields["node"]),
                service=ServiceSpec(**fields["service"]) if fields["service"] else None,
                checks=tuple(CheckSpec(**c) for c in fields["checks"]),
                skip_node_update=bool(fields["skip_node_update"]),
            )
        if tag == "deregister":
            return Deregister(**fields)
        if tag == "kvs":
            return _decode_kvs(fields)
        if tag == "tombstone-reap":
            _expect_fields(fields, {"reap_index"})
            return TombstoneReap(reap_index=_uint64(fields["reap_index"], "reap_index"))
    except CommandDecodeError:
        raise
    except Exception as e:  # msgpack, unpacking and TypeError from bad fields
        raise CommandDecodeError(f"malformed command: {e}") from None
    raise CommandDecodeError(f"unknown command {tag!r}")


def _expect_fields(fields: Any, names: set[str]) -> None:
    if not isinstance(fields, dict) or set(fields) != names:
        raise CommandDecodeError(f"malformed command: expected the fields {sorted(names)}")


def _uint64(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_UINT64:
        raise CommandDecodeError(f"malformed command: {name} is not a uint64")
    return value


def _decode_kvs(fields: Any) -> KVS:
    """A KVS command, every field checked: the log must never smuggle junk into the store."""
    _expect_fields(fields, {f.name for f in attrs.fields(KVS)})
    op, key, value, session = fields["op"], fields["key"], fields["value"], fields["session"]
    if op not in KV_OPS:
        raise CommandDecodeError(f"malformed command: unknown KV operation {op!r}")
    if not isinstance(key, str) or not isinstance(session, str):
        raise CommandDecodeError("malformed command: key and session must be strings")
    if not isinstance(value, bytes):
        raise CommandDecodeError("malformed command: value must be bytes")
    return KVS(
        op=op,
        key=key,
        value=value,
        flags=_uint64(fields["flags"], "flags"),
        cas=_uint64(fields["cas"], "cas"),
        session=session,
    )
