# -*- test-case-name: tests.unit.gossip.test_serf_codec -*-
"""
Serf's wire encoding: messages, tags, query filters, internal query
payloads and ping coordinates, byte for byte as serf 0.9.4 writes them.

Every structure is ``<one type byte> + <go-msgpack body>`` (tags use the
magic byte ``0xff``, coordinates a version byte ``0x01``); bodies are Go
structs, written as maps with the Go field names in sorted order
(:mod:`consul_tw.gossip.gomsgpack`).  Each record is described once, as a
table of (attribute, Go field, reader, writer), and one generic pair of
functions walks the tables, so the field names and the nil-versus-empty
choices live in one place per struct.

Encoders mirror Go where it shows on the wire: a nil slice is msgpack nil
(``Filters``, ``Keys``), a ``make``'d one an empty array
(``LeftMembers``), and maps keep the order they were given in.  Decoders
accept any key order, skip unknown keys, read missing ones as zero values
and ignore trailing bytes, as Go's decoder does; anything else malformed
raises :class:`WireError`, and nothing else is raised for any input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import msgpack

from consul_tw.gossip.gomsgpack import (
    WireError,
    boolean,
    pack,
    raw,
    struct_fields,
    text,
    uint,
    unpacker,
)
from consul_tw.gossip.serf.messages import (
    ConflictMember,
    Coordinate,
    FilterType,
    JoinIntent,
    KeyResponse,
    LeaveIntent,
    NodeFilter,
    PushPullState,
    Query,
    QueryFilter,
    QueryResponse,
    Relay,
    SerfMessage,
    SerfMessageType,
    TagFilter,
    UserEvent,
    UserEventCollection,
    UserEventEntry,
)

#: memberlist's limit on node meta, which is where the tags go.
META_MAX_SIZE = 512
TAG_MAGIC = 0xFF
PING_VERSION = 1

T = TypeVar("T")


class TagsTooLarge(ValueError):
    """Our own tags do not fit in memberlist's 512-byte node meta."""


# -- msgpack values --------------------------------------------------------


def _go(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A Go struct as a map with its keys in sorted (go-msgpack) order."""
    return {k: fields[k] for k in sorted(fields)}


def _read_one(data: bytes, start: int) -> tuple[Any, int]:
    """One msgpack value at ``data[start:]`` and the offset just past it."""
    reader = unpacker(data[start:])
    try:
        value = reader.unpack()
    except msgpack.OutOfData:
        raise WireError("truncated msgpack") from None
    except Exception as e:  # msgpack raises a zoo of types for junk
        raise WireError(f"malformed msgpack: {e or type(e).__name__}") from None
    return value, start + reader.tell()


def _after(data: bytes, kind: int, what: str) -> Any:
    """The value after a type byte that must be ``kind``."""
    if not data or data[0] != kind:
        raise WireError(f"not a {what}")
    return _read_one(data, 1)[0]


def _opt_raw(value: Any, field: str) -> bytes | None:
    """A ``[]byte`` that keeps nil apart from empty (for exact re-encoding)."""
    return None if value is None else raw(value, field)


def _int64(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < 1 << 63:
        raise WireError(f"{field} must be an int64")
    return value


def _float(value: Any, field: str) -> float:
    """A float64 (Go's decoder also takes integers here, and nil as zero)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(f"{field} must be a number")
    return float(value)


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WireError(f"{field} must be an array")
    return value


def _map(value: Any, field: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WireError(f"{field} must be a map")
    return value


def _uint_n(bits: int) -> Callable[[Any, str], int]:
    return lambda value, field: uint(value, field, bits)


def _list_of(item: Callable[[Any, str], T]) -> Callable[[Any, str], tuple[T, ...]]:
    return lambda value, field: tuple(item(v, field) for v in _list(value, field))


def _texts(value: Any, field: str) -> tuple[str, ...]:
    return _list_of(text)(value, field)


def _string_map(value: Any, field: str) -> dict[str, str]:
    """A Go ``map[string]string`` (tags), in the order it was sent."""
    return {text(k, field): text(v, field) for k, v in _map(value, field).items()}


def _uint_map(value: Any, field: str) -> dict[str, int]:
    return {text(k, field): uint(v, field) for k, v in _map(value, field).items()}


def _same(value: Any) -> Any:
    return value


def _nil_if_empty(value: tuple[Any, ...]) -> list[Any] | None:
    """A Go slice built by ``append`` onto nil: nil when nothing was added."""
    return list(value) or None


# -- struct tables ---------------------------------------------------------


@attrs.frozen
class _Field:
    attr: str
    go: str
    read: Callable[[Any, str], Any]
    write: Callable[[Any], Any] = _same


def _struct(record: Any, fields: tuple[_Field, ...]) -> dict[str, Any]:
    return _go({f.go: f.write(getattr(record, f.attr)) for f in fields})


def _record(cls: type[T], fields: tuple[_Field, ...], value: Any) -> T:
    got = struct_fields(value)
    return cls(**{f.attr: f.read(got.get(f.go), f.go) for f in fields})


_LTIME = _Field("ltime", "LTime", uint)
_PAYLOAD = _Field("payload", "Payload", _opt_raw)

_EVENT_ENTRY = (_Field("name", "Name", text), _PAYLOAD)


def _write_slot(slot: UserEventCollection | None) -> dict[str, Any] | None:
    if slot is None:
        return None
    events = [_struct(e, _EVENT_ENTRY) for e in slot.events]
    return _go({"Events": events or None, "LTime": slot.ltime})


def _read_slot(value: Any, field: str) -> UserEventCollection | None:
    if value is None:
        return None
    entries = _list_of(lambda v, _: _record(UserEventEntry, _EVENT_ENTRY, v))
    return _record(UserEventCollection, (_LTIME, _Field("events", "Events", entries)), value)


_MESSAGES: dict[type[Any], tuple[SerfMessageType, tuple[_Field, ...]]] = {
    LeaveIntent: (
        SerfMessageType.LEAVE,
        (_LTIME, _Field("node", "Node", text), _Field("prune", "Prune", boolean)),
    ),
    JoinIntent: (SerfMessageType.JOIN, (_LTIME, _Field("node", "Node", text))),
    PushPullState: (
        SerfMessageType.PUSH_PULL,
        (
            _LTIME,
            _Field("status_ltimes", "StatusLTimes", _uint_map, dict),
            _Field("left_members", "LeftMembers", _texts, list),
            _Field("event_ltime", "EventLTime", uint),
            _Field("events", "Events", _list_of(_read_slot), lambda s: [_write_slot(e) for e in s]),
            _Field("query_ltime", "QueryLTime", uint),
        ),
    ),
    UserEvent: (
        SerfMessageType.USER_EVENT,
        (_LTIME, _Field("name", "Name", text), _PAYLOAD, _Field("cc", "CC", boolean)),
    ),
    Query: (
        SerfMessageType.QUERY,
        (
            _LTIME,
            _Field("id", "ID", _uint_n(32)),
            _Field("addr", "Addr", raw),
            _Field("port", "Port", _uint_n(16)),
            _Field("source_node", "SourceNode", text),
            _Field("filters", "Filters", _list_of(raw), _nil_if_empty),
            _Field("flags", "Flags", _uint_n(32)),
            _Field("relay_factor", "RelayFactor", _uint_n(8)),
            _Field("timeout_ns", "Timeout", _int64),
            _Field("name", "Name", text),
            _PAYLOAD,
        ),
    ),
    QueryResponse: (
        SerfMessageType.QUERY_RESPONSE,
        (
            _LTIME,
            _Field("id", "ID", _uint_n(32)),
            _Field("from_node", "From", text),
            _Field("flags", "Flags", _uint_n(32)),
            _PAYLOAD,
        ),
    ),
}
_DECODERS = {kind: (cls, fields) for cls, (kind, fields) in _MESSAGES.items()}

_RELAY_DEST = (
    _Field("dest_addr", "IP", raw),
    _Field("dest_port", "Port", _uint_n(16)),
    _Field("dest_zone", "Zone", text),
)


# -- Serf messages ---------------------------------------------------------


def encode_serf(msg: SerfMessage) -> bytes:
    """The bytes of a memberlist user message's payload (Serf type byte + body)."""
    if isinstance(msg, Relay):
        header = _go({"DestAddr": _struct(msg, _RELAY_DEST), "DestName": msg.dest_name})
        return bytes([SerfMessageType.RELAY]) + pack(header) + msg.inner
    try:
        kind, fields = _MESSAGES[type(msg)]
    except KeyError:
        raise TypeError(f"not a Serf message: {msg!r}") from None
    return bytes([kind]) + pack(_struct(msg, fields))


def decode_serf(data: bytes) -> SerfMessage:
    """
    A Serf message from a memberlist user message's payload.

    A relay's inner message is left as bytes (the relaying node only
    forwards it).  Types 6-8 only ever prefix query payloads, so as messages
    they are junk like any unknown type (serf logs and drops them).
    """
    if not data:
        raise WireError("empty Serf message")
    if data[0] == SerfMessageType.RELAY:
        value, end = _read_one(data, 1)
        header = struct_fields(value)
        dest = _record(dict, _RELAY_DEST, _map(header.get("DestAddr"), "DestAddr"))
        return Relay(dest_name=text(header.get("DestName"), "DestName"), inner=data[end:], **dest)
    try:
        cls, fields = _DECODERS[SerfMessageType(data[0])]
    except (ValueError, KeyError):
        raise WireError(f"unknown Serf message type {data[0]}") from None
    return _record(cls, fields, _read_one(data, 1)[0])


# -- tags in node meta -----------------------------------------------------


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """Node meta for ``tags``: ``0xff`` + a map, keys sorted for stable output."""
    meta = bytes([TAG_MAGIC]) + pack(_go(tags))
    if len(meta) > META_MAX_SIZE:
        raise TagsTooLarge(f"Encoded length of tags exceeds limit of {META_MAX_SIZE} bytes")
    return meta


def decode_tags(meta: bytes) -> dict[str, str]:
    """
    The tags in a member's node meta.

    Meta not starting with ``0xff`` comes from Serf protocol < 3, which had a
    single "role" string instead of tags (Go takes it byte for byte, so bytes
    that are not UTF-8 are replaced rather than refused).
    """
    if not meta or meta[0] != TAG_MAGIC:
        return {"role": bytes(meta).decode("utf-8", "replace")}
    return _string_map(_read_one(meta, 1)[0], "tags")


# -- query filters ---------------------------------------------------------

_TAG_FILTER = (_Field("tag", "Tag", text), _Field("expr", "Expr", text))


def encode_filter(flt: QueryFilter) -> bytes:
    """One entry of a query's ``Filters``."""
    if isinstance(flt, NodeFilter):
        return bytes([FilterType.NODE]) + pack(list(flt.names))
    return bytes([FilterType.TAG]) + pack(_struct(flt, _TAG_FILTER))


def decode_filter(data: bytes) -> QueryFilter:
    """A query filter; an unknown type is junk (serf then does not answer)."""
    if not data:
        raise WireError("empty query filter")
    value = _read_one(data, 1)[0]
    if data[0] == FilterType.NODE:
        return NodeFilter(names=_texts(value, "node filter"))
    if data[0] == FilterType.TAG:
        return _record(TagFilter, _TAG_FILTER, value)
    raise WireError(f"unknown query filter type {data[0]}")


# -- internal query payloads -----------------------------------------------

_KEY_RESPONSE = (
    _Field("result", "Result", boolean),
    _Field("message", "Message", text),
    _Field("keys", "Keys", _texts, _nil_if_empty),
    _Field("primary_key", "PrimaryKey", text),
)

_CONFLICT_MEMBER = (
    _Field("name", "Name", text),
    _Field("addr", "Addr", raw),
    _Field("port", "Port", _uint_n(16)),
    _Field("tags", "Tags", _string_map, dict),
    _Field("status", "Status", _int64),
    *(
        _Field(f"{layer}_{which}", f"{layer.capitalize()}{which.capitalize()}", _uint_n(8))
        for layer in ("protocol", "delegate")
        for which in ("min", "max", "cur")
    ),
)


def encode_key_request(key: bytes) -> bytes:
    """Payload of ``_serf_install-key``, ``_serf_use-key``, ``_serf_remove-key``."""
    return bytes([SerfMessageType.KEY_REQUEST]) + pack({"Key": key})


def decode_key_request(payload: bytes) -> bytes:
    """The raw key of a key request (no length check: that is the keyring's job)."""
    fields = struct_fields(_after(payload, SerfMessageType.KEY_REQUEST, "key request"))
    return raw(fields.get("Key"), "Key")


def encode_key_response(resp: KeyResponse) -> bytes:
    """A key query's response payload; no keys go as nil, like Go's nil slice."""
    return bytes([SerfMessageType.KEY_RESPONSE]) + pack(_struct(resp, _KEY_RESPONSE))


def decode_key_response(payload: bytes) -> KeyResponse:
    value = _after(payload, SerfMessageType.KEY_RESPONSE, "key response")
    return _record(KeyResponse, _KEY_RESPONSE, value)


def encode_conflict_response(member: ConflictMember | None) -> bytes:
    """A ``_serf_conflict`` response: our view of the member, nil if unknown."""
    body = None if member is None else _struct(member, _CONFLICT_MEMBER)
    return bytes([SerfMessageType.CONFLICT_RESPONSE]) + pack(body)


def decode_conflict_response(payload: bytes) -> ConflictMember | None:
    value = _after(payload, SerfMessageType.CONFLICT_RESPONSE, "conflict response")
    return None if value is None else _record(ConflictMember, _CONFLICT_MEMBER, value)


# -- coordinates in ack payloads -------------------------------------------

_COORDINATE = (
    _Field("adjustment", "Adjustment", _float, float),
    _Field("error", "Error", _float, float),
    _Field("height", "Height", _float, float),
    _Field("vec", "Vec", _list_of(_float), lambda vec: [float(v) for v in vec]),
)


def encode_coordinate(
    vec: tuple[float, ...] | list[float], error: float, adjustment: float, height: float
) -> bytes:
    """An ack payload carrying our coordinate (every number as float64)."""
    coord = Coordinate(vec=vec, error=error, adjustment=adjustment, height=height)
    return bytes([PING_VERSION]) + pack(_struct(coord, _COORDINATE))


def decode_coordinate(payload: bytes | None) -> Coordinate | None:
    """
    The coordinate in an ack payload, or ``None`` when there is none to use.

    serf ignores an empty payload and logs an unknown version; both are
    normal (memberlist-only peers, TCP acks), so they are not errors here.
    """
    if not payload or payload[0] != PING_VERSION:
        return None
    return _record(Coordinate, _COORDINATE, _read_one(payload, 1)[0])
