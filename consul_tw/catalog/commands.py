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


Command = Register | Deregister

_VERSION = 1
_TAGS: dict[type, str] = {Register: "register", Deregister: "deregister"}


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
    except CommandDecodeError:
        raise
    except Exception as e:  # msgpack, unpacking and TypeError from bad fields
        raise CommandDecodeError(f"malformed command: {e}") from None
    raise CommandDecodeError(f"unknown command {tag!r}")
