# -*- test-case-name: tests.unit.gossip.test_memberlist_codec -*-
"""
memberlist messages to and from bytes: one type byte, then a go-msgpack body.

This module does single messages and the pieces the framings share (node
states, the compression wrapper, addresses); :mod:`.packet` frames UDP
datagrams (CRC, compound, compression) and :mod:`.stream` reads and writes
TCP stream messages (push/pull, fallback ping, stream user messages).

Decoding follows memberlist 0.2.2's reader, because that is what decides
which peers interoperate: keys may come in any order, unknown keys are
skipped, missing keys read as zero values and bytes after the body are
ignored (Go's decoder stops at the end of the value).  On top of that we
refuse what Go would accept but then choke on or that a Consul node drops
anyway: addresses that are neither 4 nor 16 bytes, a ``Vsn`` that is not 6
bytes, integers out of their Go type's range, names that are not UTF-8.
Every refusal is a :class:`WireError`; nothing else escapes a decoder.

Encoding writes what Go writes byte for byte (sorted keys, omitempty only on
the ping ``Source*`` fields, raw strings for ``[]byte``), so captured serf
traffic re-encodes identically.  Records that cannot go on the wire (meta
over 512 bytes, a wrong-sized ``Vsn``) raise :class:`ValueError` there:
that is a bug in our own code, not bad input.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import msgpack

from consul_tw.gossip.gomsgpack import (
    WireError,
    boolean,
    pack_struct,
    raw,
    struct_fields,
    text,
    uint,
)
from consul_tw.gossip.memberlist import lzw
from consul_tw.gossip.memberlist.messages import (
    Ack,
    Alive,
    Dead,
    Err,
    IndirectPing,
    Message,
    MessageType,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    Suspect,
    User,
)

__all__ = [
    "MAX_META",
    "VSN_LEN",
    "WireError",
    "addr_from_text",
    "addr_to_text",
    "compress_message",
    "decode_body",
    "decode_message",
    "decode_node_state",
    "encode_message",
    "encode_node_state",
    "unpack_compressed",
    "unpack_value",
]

#: memberlist's ``MetaMaxSize``: peers refuse to build longer node meta.
MAX_META = 512
#: ``[pmin, pmax, pcur, dmin, dmax, dcur]``
VSN_LEN = 6

_MAPPED_V4_PREFIX = bytes(10) + b"\xff\xff"


# -- addresses ---------------------------------------------------------------


def addr_to_text(b: bytes) -> str:
    """An ``Addr`` as text; the 16-byte IPv4-mapped form reads as plain IPv4.

    Go nodes bound to ``0.0.0.0`` may advertise their IPv4 address in the
    16-byte form; they are the same address as the 4-byte one for dialling
    and for comparing with what Consul's catalog holds.
    """
    if len(b) == 4:
        return str(ipaddress.IPv4Address(b))
    if len(b) == 16:
        if b.startswith(_MAPPED_V4_PREFIX):
            return str(ipaddress.IPv4Address(b[12:]))
        return str(ipaddress.IPv6Address(b))
    raise ValueError(f"an IP address is 4 or 16 bytes, not {len(b)}")


def addr_from_text(s: str) -> bytes:
    """The bytes to advertise for ``s``: 4 for IPv4 (what serf sends), 16 for IPv6."""
    return ipaddress.ip_address(s).packed


def _addr(value: Any, field: str) -> bytes:
    b = raw(value, field)
    if len(b) not in (4, 16):
        raise WireError(f"{field} must be 4 or 16 bytes, got {len(b)}")
    return b


def _vsn(value: Any, field: str = "Vsn") -> bytes:
    b = raw(value, field)
    if len(b) != VSN_LEN:
        raise WireError(f"{field} must be {VSN_LEN} bytes, got {len(b)}")
    return b


def _optional_addr(value: Any, field: str) -> bytes | None:
    """An omitempty address: absent, nil and empty all mean "not given"."""
    if value is None or value == b"":
        return None
    return _addr(value, field)


# -- msgpack values ----------------------------------------------------------


def unpack_value(data: bytes | memoryview, offset: int = 0) -> tuple[Any, int]:
    """The first msgpack value in ``data[offset:]`` and the offset just after it.

    The limits are sized to the input, as ``msgpack.unpackb`` does, so a
    5-byte header cannot make msgpack preallocate a huge list.
    """
    reader = msgpack.Unpacker(
        raw=True, strict_map_key=False, max_buffer_size=max(len(data) - offset, 1)
    )
    reader.feed(data[offset:])
    try:
        value = reader.unpack()
    except msgpack.OutOfData:
        raise WireError("truncated msgpack value") from None
    except Exception as e:  # msgpack raises a zoo of types for junk
        raise WireError(f"malformed msgpack: {e}") from None
    return value, offset + reader.tell()


# -- single messages ---------------------------------------------------------


def _check_uint(value: int, bits: int, field: str) -> int:
    if isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise ValueError(f"{field} must fit a uint{bits}, got {value!r}")
    return value


def _check_node(addr: bytes, meta: bytes, vsn: bytes) -> None:
    if len(addr) not in (4, 16):
        raise ValueError(f"Addr must be 4 or 16 bytes, got {len(addr)}")
    if len(meta) > MAX_META:
        raise ValueError(f"Meta is {len(meta)} bytes, more than memberlist's {MAX_META}")
    if len(vsn) != VSN_LEN:
        raise ValueError(f"Vsn must be {VSN_LEN} bytes, got {len(vsn)}")


def _source_fields(msg: Ping | IndirectPing) -> dict[str, Any]:
    """The omitempty ``Source*`` fields: Go leaves out nil/empty/zero values."""
    fields: dict[str, Any] = {}
    if msg.source_addr:
        fields["SourceAddr"] = msg.source_addr
    if msg.source_node:
        fields["SourceNode"] = msg.source_node
    if msg.source_port:
        fields["SourcePort"] = _check_uint(msg.source_port, 16, "SourcePort")
    return fields


def _body_fields(msg: Message) -> tuple[MessageType, dict[str, Any]]:
    """The type byte and Go fields of every message that is one msgpack struct."""
    match msg:
        case Ping():
            return MessageType.PING, {
                "Node": msg.node,
                "SeqNo": _check_uint(msg.seq_no, 32, "SeqNo"),
                **_source_fields(msg),
            }
        case IndirectPing():
            return MessageType.INDIRECT_PING, {
                "Nack": msg.nack,
                "Node": msg.node,
                "Port": _check_uint(msg.port, 16, "Port"),
                "SeqNo": _check_uint(msg.seq_no, 32, "SeqNo"),
                "Target": msg.target,
                **_source_fields(msg),
            }
        case Ack():
            return MessageType.ACK, {
                "Payload": msg.payload,
                "SeqNo": _check_uint(msg.seq_no, 32, "SeqNo"),
            }
        case Nack():
            return MessageType.NACK, {"SeqNo": _check_uint(msg.seq_no, 32, "SeqNo")}
        case Suspect() | Dead():
            kind = MessageType.SUSPECT if isinstance(msg, Suspect) else MessageType.DEAD
            return kind, {
                "From": msg.from_node,
                "Incarnation": _check_uint(msg.incarnation, 32, "Incarnation"),
                "Node": msg.node,
            }
        case Alive():
            _check_node(msg.addr, msg.meta, msg.vsn)
            return MessageType.ALIVE, {
                "Addr": msg.addr,
                "Incarnation": _check_uint(msg.incarnation, 32, "Incarnation"),
                "Meta": msg.meta,
                "Node": msg.node,
                "Port": _check_uint(msg.port, 16, "Port"),
                "Vsn": msg.vsn,
            }
        case Err():
            return MessageType.ERR, {"Error": msg.error}
    raise ValueError(f"{type(msg).__name__} is not a single memberlist message")


def encode_message(msg: Message) -> bytes:
    """One message as a packet carries it: type byte + msgpack body.

    ``User`` is the type byte and Serf's bytes as they are (on UDP there is
    no length header).  ``PushPull`` only exists on streams: see
    :func:`consul_tw.gossip.memberlist.stream.encode_stream`.
    """
    if isinstance(msg, User):
        return bytes([MessageType.USER]) + msg.payload
    kind, fields = _body_fields(msg)
    return bytes([kind]) + pack_struct(fields)


def _ping(f: dict[str, Any]) -> Ping:
    return Ping(
        seq_no=uint(f.get("SeqNo"), "SeqNo", 32),
        node=text(f.get("Node"), "Node"),
        source_addr=_optional_addr(f.get("SourceAddr"), "SourceAddr"),
        source_port=uint(f.get("SourcePort"), "SourcePort", 16) or None,
        source_node=text(f.get("SourceNode"), "SourceNode") or None,
    )


def _indirect_ping(f: dict[str, Any]) -> IndirectPing:
    return IndirectPing(
        seq_no=uint(f.get("SeqNo"), "SeqNo", 32),
        target=_addr(f.get("Target"), "Target"),
        port=uint(f.get("Port"), "Port", 16),
        node=text(f.get("Node"), "Node"),
        nack=boolean(f.get("Nack"), "Nack"),
        source_addr=_optional_addr(f.get("SourceAddr"), "SourceAddr"),
        source_port=uint(f.get("SourcePort"), "SourcePort", 16) or None,
        source_node=text(f.get("SourceNode"), "SourceNode") or None,
    )


def _ack(f: dict[str, Any]) -> Ack:
    payload = f.get("Payload")
    # nil and empty differ on the wire (c0 / a0); keep which one it was.
    return Ack(
        seq_no=uint(f.get("SeqNo"), "SeqNo", 32),
        payload=None if payload is None else raw(payload, "Payload"),
    )


def _nack(f: dict[str, Any]) -> Nack:
    return Nack(seq_no=uint(f.get("SeqNo"), "SeqNo", 32))


def _suspect(f: dict[str, Any]) -> Suspect:
    return Suspect(
        incarnation=uint(f.get("Incarnation"), "Incarnation", 32),
        node=text(f.get("Node"), "Node"),
        from_node=text(f.get("From"), "From"),
    )


def _dead(f: dict[str, Any]) -> Dead:
    return Dead(
        incarnation=uint(f.get("Incarnation"), "Incarnation", 32),
        node=text(f.get("Node"), "Node"),
        from_node=text(f.get("From"), "From"),
    )


def _alive(f: dict[str, Any]) -> Alive:
    return Alive(
        incarnation=uint(f.get("Incarnation"), "Incarnation", 32),
        node=text(f.get("Node"), "Node"),
        addr=_addr(f.get("Addr"), "Addr"),
        port=uint(f.get("Port"), "Port", 16),
        meta=raw(f.get("Meta"), "Meta"),
        vsn=_vsn(f.get("Vsn")),
    )


def _err(f: dict[str, Any]) -> Err:
    return Err(error=text(f.get("Error"), "Error"))


_DECODERS: dict[int, Callable[[dict[str, Any]], Message]] = {
    MessageType.PING: _ping,
    MessageType.INDIRECT_PING: _indirect_ping,
    MessageType.ACK: _ack,
    MessageType.NACK: _nack,
    MessageType.SUSPECT: _suspect,
    MessageType.DEAD: _dead,
    MessageType.ALIVE: _alive,
    MessageType.ERR: _err,
}


def decode_body(kind: int, value: Any) -> Message:
    """The message of type ``kind`` whose msgpack body decoded to ``value``."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise WireError(f"message type {kind} is not a single message")
    return decoder(struct_fields(value))


def decode_message(data: bytes) -> Message:
    """One message (type byte + body): ping, indirect ping, ack, nack, suspect,
    alive, dead, err, or a UDP user message (everything after the type byte).

    Framing types (compound, compress, CRC, encrypt) and push/pull are not
    single messages and raise :class:`WireError`; :func:`.packet.decode_packet`
    and :class:`.stream.StreamReader` handle them.
    """
    if not data:
        raise WireError("empty message")
    kind = data[0]
    if kind == MessageType.USER:
        return User(payload=bytes(data[1:]))
    if kind not in _DECODERS:
        raise WireError(f"message type {kind} is not a single message")
    value, _ = unpack_value(data, 1)
    return decode_body(kind, value)


# -- pieces shared by the framings -------------------------------------------


def encode_node_state(node: PushNodeState) -> bytes:
    """One ``pushNodeState`` struct, as push/pull lists them."""
    _check_node(node.addr, node.meta, node.vsn)
    return pack_struct(
        {
            "Addr": node.addr,
            "Incarnation": _check_uint(node.incarnation, 32, "Incarnation"),
            "Meta": node.meta,
            "Name": node.name,
            "Port": _check_uint(node.port, 16, "Port"),
            "State": int(node.state),
            "Vsn": node.vsn,
        }
    )


def decode_node_state(value: Any) -> PushNodeState:
    """A decoded ``pushNodeState`` map as a record.

    An unknown ``State`` is refused: memberlist 0.2.2 has four, and a merge
    of a state we cannot name would be a guess.
    """
    f = struct_fields(value)
    state = uint(f.get("State"), "State", 8)
    if state > max(NodeState):
        raise WireError(f"unknown node state {state}")
    return PushNodeState(
        name=text(f.get("Name"), "Name"),
        addr=_addr(f.get("Addr"), "Addr"),
        port=uint(f.get("Port"), "Port", 16),
        meta=raw(f.get("Meta"), "Meta"),
        incarnation=uint(f.get("Incarnation"), "Incarnation", 32),
        state=NodeState(state),
        vsn=_vsn(f.get("Vsn")),
    )


def compress_message(msg: bytes) -> bytes:
    """``msg`` wrapped as memberlist compresses it: ``0x09`` + ``{Algo: 0, Buf: lzw}``."""
    return bytes([MessageType.COMPRESS]) + pack_struct({"Algo": 0, "Buf": lzw.compress(msg)})


def unpack_compressed(value: Any, max_output: int) -> bytes:
    """What a decoded ``compress`` struct holds, at most ``max_output`` bytes.

    memberlist indexes the first byte of the result without checking, so
    an empty result is refused here.
    """
    f = struct_fields(value)
    algo = uint(f.get("Algo"), "Algo", 63)
    if algo != 0:
        raise WireError(f"unknown compression algorithm {algo}")
    inner = lzw.decompress(raw(f.get("Buf"), "Buf"), max_output=max_output)
    if not inner:
        raise WireError("compressed message is empty")
    return inner
