# -*- test-case-name: tests.unit.gossip.test_serf_codec -*-
"""
Serf's messages as frozen records, one per wire struct.

Serf rides inside memberlist: its messages travel as memberlist *user*
messages (one Serf type byte, then a go-msgpack body) and as the user state
of a push/pull, and smaller Serf structures hide in other byte fields (tags
in node meta, filters in a query, key-management and conflict answers in
query payloads, coordinates in ack payloads).  :mod:`.codec` maps these
records to and from the exact bytes serf 0.9.4 writes.

Optional byte fields (``payload``) are ``bytes | None`` because Go
distinguishes a nil slice (msgpack nil) from an empty one (``a0``), and
keeping that distinction is what lets a captured message re-encode byte for
byte.  Addresses stay ``bytes`` (4 bytes for IPv4) exactly as they travel.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs


class SerfMessageType(enum.IntEnum):
    """Serf's type byte (first byte of a memberlist user message or payload)."""

    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    #: The next three only appear as the first byte of a query (response) payload.
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


class QueryFlag(enum.IntFlag):
    """``Flags`` of a query or query response."""

    #: Query: the sender wants an ack; response: this *is* the ack (no payload).
    ACK = 1
    #: Query: do not re-gossip (the sender addressed every node itself).
    NO_BROADCAST = 2


class FilterType(enum.IntEnum):
    """First byte of each query filter blob."""

    NODE = 0
    TAG = 1


def _tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    """Sequence fields accept any iterable and are stored as tuples (hashable, immutable)."""
    return tuple(items)


def _dict(items: Mapping[Any, Any]) -> dict[Any, Any]:
    """Map fields keep a copy, so the caller's dict cannot change a frozen record."""
    return dict(items)


#: The size of Serf's event ring, which its push/pull state sends whole.
EVENT_BUFFER_SIZE = 512


@attrs.frozen(kw_only=True)
class LeaveIntent:
    """A node announces it is leaving; ``prune`` asks to forget it at once."""

    ltime: int
    node: str
    prune: bool = False


@attrs.frozen(kw_only=True)
class JoinIntent:
    """Ties a node's (re)join to the member clock, so stale leaves lose."""

    ltime: int
    node: str


@attrs.frozen(kw_only=True)
class UserEventEntry:
    """One event inside a push/pull event-ring slot (``userEvent``)."""

    name: str
    payload: bytes | None = None


@attrs.frozen(kw_only=True)
class UserEventCollection:
    """One slot of Serf's event ring: every event seen at one event time."""

    ltime: int
    events: tuple[UserEventEntry, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class PushPullState:
    """
    Serf's state in a memberlist push/pull (the ``UserStateLen`` bytes).

    ``status_ltimes`` keeps the order it was built or received in, because Go
    writes maps unordered and a byte-identical re-encode must follow the
    sender.  ``events`` is serf's whole ring (512 slots, mostly ``None``);
    an empty tuple is equally acceptable to serf.
    """

    ltime: int
    status_ltimes: dict[str, int] = attrs.field(factory=dict, converter=_dict)
    left_members: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    event_ltime: int = 0
    events: tuple[UserEventCollection | None, ...] = attrs.field(default=(), converter=_tuple)
    query_ltime: int = 0


@attrs.frozen(kw_only=True)
class UserEvent:
    """A custom event; ``cc`` says a burst of same-named events may coalesce."""

    ltime: int
    name: str
    payload: bytes | None = None
    cc: bool = False


@attrs.frozen(kw_only=True)
class Query:
    """
    A query; answers go straight to ``addr:port`` (not back through gossip).

    ``timeout_ns`` is Go's ``time.Duration`` (integer nanoseconds), kept as
    sent so that the responder's deadline matches the asker's.
    """

    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    name: str
    filters: tuple[bytes, ...] = attrs.field(default=(), converter=_tuple)
    flags: int = 0
    relay_factor: int = 0
    timeout_ns: int = 0
    payload: bytes | None = None


@attrs.frozen(kw_only=True)
class QueryResponse:
    """An ack (``flags`` has ACK, no payload) or the one response to a query."""

    ltime: int
    id: int
    from_node: str
    flags: int = 0
    payload: bytes | None = None


@attrs.frozen(kw_only=True)
class Relay:
    """
    Forward ``inner`` (a Serf type byte + body) as a user message to ``dest``.

    Query responders use it to send extra copies through other members when
    the query asked for a ``RelayFactor``; ``inner`` stays opaque bytes since
    the relaying node only forwards it.
    """

    dest_addr: bytes
    dest_port: int
    dest_zone: str = ""
    dest_name: str
    inner: bytes


SerfMessage = LeaveIntent | JoinIntent | PushPullState | UserEvent | Query | QueryResponse | Relay


@attrs.frozen(kw_only=True)
class NodeFilter:
    """Only the named nodes should answer."""

    names: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen(kw_only=True)
class TagFilter:
    """Only nodes whose tag ``tag`` matches the regular expression ``expr`` answer."""

    tag: str
    expr: str


QueryFilter = NodeFilter | TagFilter


@attrs.frozen(kw_only=True)
class KeyResponse:
    """
    A node's answer to a ``_serf_*-key`` query.

    ``keys`` and ``primary_key`` are base64 text and only filled for
    ``_serf_list-keys``; the other queries send nil and ``""``.
    """

    result: bool
    message: str = ""
    keys: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    primary_key: str = ""


@attrs.frozen(kw_only=True)
class ConflictMember:
    """A node's view of a disputed member, in a ``_serf_conflict`` response."""

    name: str
    addr: bytes
    port: int
    tags: dict[str, str] = attrs.field(factory=dict, converter=_dict)
    status: int = 0
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0


@attrs.frozen(kw_only=True)
class Coordinate:
    """A Vivaldi network coordinate (units: seconds), as Serf puts it in acks."""

    vec: tuple[float, ...] = attrs.field(converter=_tuple)
    error: float
    adjustment: float
    height: float
