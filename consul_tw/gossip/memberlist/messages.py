# -*- test-case-name: tests.unit.gossip.test_memberlist_codec -*-
"""
memberlist's messages as frozen records, one per wire struct.

Field names are Python's; :mod:`consul_tw.gossip.memberlist.codec` maps
them to the Go field names memberlist puts on the wire (``SeqNo``,
``Incarnation``, ...).  Addresses are kept as ``bytes`` (4 bytes for IPv4,
16 for IPv6) exactly as they travel, and ``vsn`` is the 6-byte version
vector ``[pmin, pmax, pcur, dmin, dmax, dcur]``; the protocol layer turns
them into text and numbers where it needs to.
"""

from __future__ import annotations

import enum

import attrs


class MessageType(enum.IntEnum):
    """The first byte of every memberlist message."""

    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK = 11
    HAS_CRC = 12
    ERR = 13


class NodeState(enum.IntEnum):
    """A node's state in push/pull (``pushNodeState.State``)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


#: What a Consul agent advertises: memberlist protocol 1..5 speaking 2,
#: Serf delegate protocol 2..5 speaking 4.
CONSUL_VSN = bytes([1, 5, 2, 2, 5, 4])


@attrs.frozen(kw_only=True)
class Ping:
    seq_no: int
    node: str
    source_addr: bytes | None = None
    source_port: int | None = None
    source_node: str | None = None


@attrs.frozen(kw_only=True)
class IndirectPing:
    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool = False
    source_addr: bytes | None = None
    source_port: int | None = None
    source_node: str | None = None


@attrs.frozen(kw_only=True)
class Ack:
    seq_no: int
    payload: bytes | None = None


@attrs.frozen(kw_only=True)
class Nack:
    seq_no: int


@attrs.frozen(kw_only=True)
class Suspect:
    incarnation: int
    node: str
    from_node: str


@attrs.frozen(kw_only=True)
class Alive:
    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes = b""
    vsn: bytes = CONSUL_VSN


@attrs.frozen(kw_only=True)
class Dead:
    incarnation: int
    node: str
    from_node: str


@attrs.frozen(kw_only=True)
class Err:
    error: str


@attrs.frozen(kw_only=True)
class User:
    """A Serf message carried by memberlist; ``payload`` is Serf's type byte + body."""

    payload: bytes


@attrs.frozen(kw_only=True)
class PushNodeState:
    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: NodeState
    vsn: bytes = CONSUL_VSN


@attrs.frozen(kw_only=True)
class PushPull:
    """A push/pull stream message: header, every node's state, Serf's user state."""

    join: bool
    nodes: tuple[PushNodeState, ...] = attrs.field(default=(), converter=tuple)
    user_state: bytes = b""


Message = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | Err | User | PushPull
