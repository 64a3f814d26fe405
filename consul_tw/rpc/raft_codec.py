# -*- test-case-name: tests.unit.rpc.test_raft_codec -*-
"""
Raft messages ↔ msgpack-able maps, pure (no I/O, nothing from Twisted).

The layout is the one :mod:`consul_tw.rpc.raft_channel` documents: a map
whose ``"type"`` is the record's class name and whose other keys are its
attrs fields by name; ``LogEntry`` and ``Server`` are nested maps, tuples
are arrays, ``bytes`` are msgpack ``bin``, ``EntryType`` is its string value.

The schema is read from the records' own type hints when this module is
imported, so a field added to :mod:`consul_tw.raft.messages` is carried
without touching this file -- and a field of a type the codec does not know
fails the import instead of being silently mangled.

:func:`decode_message` reads what a peer sent, so it trusts nothing: every
field is checked for its exact type (``True`` is not an integer here,
integers are unsigned 64-bit), required fields must be present, unknown
keys are refused, and lists are bounded.  Anything else raises
:class:`~consul_tw.rpc.framing.FrameError` naming the field, which makes
the server close the connection; no other exception escapes.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable
from typing import Any

import attrs

from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    LogEntry,
    Message,
    RequestVote,
    RequestVoteResponse,
    Server,
    TimeoutNow,
)
from consul_tw.rpc.framing import MAX_ID, FrameError

#: Most entries one AppendEntries may carry.  The leader should batch far
#: fewer (hashicorp/raft sends 64); this bounds what a peer can make us build.
MAX_ENTRIES = 4096
#: Most servers one configuration (a CONFIGURATION entry, an InstallSnapshot) may list.
MAX_SERVERS = 1024
#: Longest id or address accepted, in characters (node ids are 36, addresses host:port).
MAX_TEXT = 1024
#: Largest term, index, offset or seq: Raft's are uint64, as in hashicorp/raft.
MAX_UINT = MAX_ID

#: Every record carried, by the name that goes in ``"type"``.
MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        RequestVote,
        RequestVoteResponse,
        AppendEntries,
        AppendEntriesResponse,
        InstallSnapshot,
        InstallSnapshotResponse,
        TimeoutNow,
    )
}

_Encode = Callable[[Any, str], Any]
_Decode = Callable[[Any, str], Any]


@attrs.frozen
class _Field:
    """One attrs field: its name, whether it may be left out, and how it is carried."""

    name: str
    required: bool
    encode: _Encode
    decode: _Decode


# -- scalar checks ---------------------------------------------------------------


def _uint(value: Any, where: str) -> int:
    # type() and not isinstance(): bool is an int subclass and must not pass.
    if type(value) is not int:
        raise FrameError(f"{where}: expected an unsigned integer, got {_kind(value)}")
    if not 0 <= value <= MAX_UINT:
        raise FrameError(f"{where}: integer out of range (0..2^64-1)")
    return value


def _bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise FrameError(f"{where}: expected a boolean, got {_kind(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if type(value) is not str:
        raise FrameError(f"{where}: expected a string, got {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise FrameError(f"{where}: string longer than {MAX_TEXT} characters")
    return value


def _bytes(value: Any, where: str) -> bytes:
    if type(value) is not bytes:
        raise FrameError(f"{where}: expected binary data, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """A value's type as a peer would understand it (msgpack's names, not Python's)."""
    names = {
        type(None): "nil",
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        bytes: "binary",
        list: "array",
        tuple: "array",
        dict: "map",
    }
    return names.get(type(value), type(value).__name__)


def _enum(cls: type[enum.Enum]) -> tuple[_Encode, _Decode]:
    by_value = {member.value: member for member in cls}

    def encode(member: Any, where: str) -> Any:
        if not isinstance(member, cls):
            raise FrameError(f"{where}: expected a {cls.__name__}, got {type(member).__name__}")
        return member.value

    def decode(value: Any, where: str) -> enum.Enum:
        if type(value) is not str or value not in by_value:
            raise FrameError(f"{where}: expected one of {', '.join(sorted(by_value))}")
        return by_value[value]

    return encode, decode


def _array(item: type[Any], limit: int) -> tuple[_Encode, _Decode]:
    """A tuple of nested records, carried as an array of maps."""

    def encode(records: Any, where: str) -> list[Any]:
        if not isinstance(records, tuple | list):
            raise FrameError(f"{where}: expected a tuple, got {type(records).__name__}")
        if len(records) > limit:
            raise FrameError(f"{where}: more than {limit} items ({len(records)})")
        return [_encode_record(item, record, f"{where}[{i}]") for i, record in enumerate(records)]

    def decode(value: Any, where: str) -> tuple[Any, ...]:
        if type(value) is not list:
            raise FrameError(f"{where}: expected an array, got {_kind(value)}")
        if len(value) > limit:
            raise FrameError(f"{where}: more than {limit} items")
        return tuple(
            _decode_record(item, element, f"{where}[{i}]") for i, element in enumerate(value)
        )

    return encode, decode


# -- the schema, from the records' type hints ------------------------------------

_SCALARS: dict[Any, _Decode] = {int: _uint, bool: _bool, str: _text, bytes: _bytes}
_ARRAY_LIMITS: dict[type[Any], int] = {LogEntry: MAX_ENTRIES, Server: MAX_SERVERS}


def _carrier(hint: Any, where: str) -> tuple[_Encode, _Decode]:
    if hint in _SCALARS:
        # The sender checks what it writes as the receiver will: one bad
        # field must cost one dropped message, not the peer closing the stream.
        return _SCALARS[hint], _SCALARS[hint]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] in _ARRAY_LIMITS:
            return _array(args[0], _ARRAY_LIMITS[args[0]])
    raise TypeError(f"raft codec: no wire form for {where}: {hint!r}")


def _schema(cls: type[Any]) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    fields = []
    for field in attrs.fields(cls):
        encode, decode = _carrier(hints[field.name], f"{cls.__name__}.{field.name}")
        fields.append(_Field(field.name, field.default is attrs.NOTHING, encode, decode))
    return tuple(fields)


_SCHEMAS: dict[type[Any], tuple[_Field, ...]] = {
    cls: _schema(cls) for cls in (*MESSAGE_TYPES.values(), LogEntry, Server)
}
_NAMES: dict[type[Any], frozenset[str]] = {
    cls: frozenset(field.name for field in schema) for cls, schema in _SCHEMAS.items()
}
# "type" names the message on the wire, so no message may have a field of that name.
if any(f.name == "type" for cls in MESSAGE_TYPES.values() for f in _SCHEMAS[cls]):
    raise TypeError("raft codec: a message has a field named 'type'")


# -- records ---------------------------------------------------------------------


def _encode_record(cls: type[Any], record: Any, where: str) -> dict[str, Any]:
    if type(record) is not cls:
        raise FrameError(f"{where}: expected a {cls.__name__}, got {type(record).__name__}")
    return {
        field.name: field.encode(getattr(record, field.name), f"{where}.{field.name}")
        for field in _SCHEMAS[cls]
    }


def _decode_record(cls: type[Any], value: Any, where: str, *, skip: str | None = None) -> Any:
    if type(value) is not dict:
        raise FrameError(f"{where}: expected a map, got {_kind(value)}")
    schema = _SCHEMAS[cls]
    known = _NAMES[cls]
    for key in value:
        if key != skip and key not in known:
            shown = key if type(key) is str else repr(key)
            raise FrameError(f"{where}: unexpected field {shown[:40]}")
    kwargs = {}
    for field in schema:
        if field.name in value:
            kwargs[field.name] = field.decode(value[field.name], f"{where}.{field.name}")
        elif field.required:
            raise FrameError(f"{where}: missing field {field.name}")
    return cls(**kwargs)


def encode_message(message: Message) -> dict[str, Any]:
    """
    The wire map of ``message``.  Fields are checked as :func:`decode_message`
    will check them, so a message the peer would refuse (a negative term,
    too many entries, a non-message) raises FrameError here: the sender
    drops that one message instead of the peer closing the whole stream.
    """
    name = type(message).__name__
    cls = MESSAGE_TYPES.get(name)
    if cls is not type(message):
        raise FrameError(f"not a Raft message: {name}")
    return {"type": name, **_encode_record(cls, message, name)}


def decode_message(value: Any) -> Message:
    """The Raft message a decoded frame holds; FrameError for anything else."""
    if type(value) is not dict:
        raise FrameError(f"raft message: expected a map, got {_kind(value)}")
    name = value.get("type")
    if type(name) is not str:
        raise FrameError("raft message: type must be a string")
    cls = MESSAGE_TYPES.get(name)
    if cls is None:
        raise FrameError(f"raft message: unknown type {name[:40]}")
    message: Message = _decode_record(cls, value, name, skip="type")
    return message


__all__ = [
    "MAX_ENTRIES",
    "MAX_SERVERS",
    "MAX_TEXT",
    "MESSAGE_TYPES",
    "decode_message",
    "encode_message",
]
