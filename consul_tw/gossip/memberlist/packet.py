# -*- test-case-name: tests.unit.gossip.test_memberlist_codec -*-
"""
UDP datagrams: the CRC header, compound messages and compression around the
single messages of :mod:`.codec`.

Receiving undoes the sender's layers in memberlist's order: verify and strip
the CRC (only at the top of a datagram, as memberlist's ``ingestPacket``
does), then dispatch on the type byte, where compound and compress recurse.
Encryption is outside this module (:mod:`.keyring`); what comes here is
already decrypted.

A datagram is untrusted input of up to 64 KiB.  Decoding raises only
:class:`WireError`, bounds the nesting depth and the total decompressed
size, and keeps the good parts of a compound whose other parts are bad,
counting the lost ones, as memberlist does (it logs truncated parts and
handles the rest).
"""

from __future__ import annotations

import struct
import zlib

import attrs

from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.codec import (
    compress_message,
    decode_message,
    unpack_compressed,
    unpack_value,
)
from consul_tw.gossip.memberlist.messages import Message, MessageType

__all__ = [
    "MAX_COMPOUND_PARTS",
    "MAX_PACKET_DECOMPRESSED",
    "UDP_BUDGET",
    "DecodedPacket",
    "compound",
    "decode_packet",
    "encode_packet",
]

#: memberlist's ``udpBufSize`` budget for what it builds (before encryption).
UDP_BUDGET = 1400
#: The count of a compound is one byte.
MAX_COMPOUND_PARTS = 255
#: Bound on everything one datagram may decompress to.  Senders compress
#: packets built for the 1400-byte budget, so real ones stay far below it;
#: the bound stops a 64 KiB datagram from expanding to ~80 MiB.
MAX_PACKET_DECOMPRESSED = 1024 * 1024
#: Real packets nest three deep at most (CRC, compress, compound); the
#: bound keeps hostile nesting from exhausting Python's stack.
MAX_DEPTH = 8

_CRC_HEADER = 5
_COMPOUND_OVERHEAD = 2  # type byte + count
_PART_OVERHEAD = 2  # one uint16 length per part


@attrs.frozen
class DecodedPacket:
    """What one datagram carried.

    ``dropped`` counts the compound parts that were lost: truncated ones
    (their length runs past the end) and ones that did not decode or are not
    allowed in a datagram; the caller may log it, as memberlist does.  The
    flags say how the outermost layers were framed (after decryption):
    ``crc`` for a verified CRC header, then ``compressed``, then
    ``compound``; they are what :func:`encode_packet` takes to write the
    same bytes again.
    """

    messages: tuple[Message, ...]
    dropped: int = 0
    crc: bool = False
    compressed: bool = False
    compound: bool = False


class _Budget:
    """Decompressed bytes one datagram may still produce, shared by its nested layers."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def decompress(self, body: bytes) -> bytes:
        value, _ = unpack_value(body, 1)
        inner = unpack_compressed(value, max_output=self.left)
        self.left -= len(inner)
        return inner


def _split_compound(data: bytes) -> tuple[list[bytes], int]:
    """A compound's parts and the count of truncated ones (``decodeCompoundMessage``).

    A part that runs past the end loses itself and every part after it;
    bytes after the last part are ignored, as memberlist ignores them.
    """
    if len(data) < 2:
        raise WireError("compound without a count")
    count = data[1]
    start = 2 + 2 * count
    if len(data) < start:
        raise WireError("compound with truncated lengths")
    lengths = struct.unpack(f"!{count}H", data[2:start])
    parts: list[bytes] = []
    for index, length in enumerate(lengths):
        if len(data) < start + length:
            return parts, count - index
        parts.append(data[start : start + length])
        start += length
    return parts, 0


def _decode(data: bytes, depth: int, budget: _Budget) -> tuple[list[Message], int]:
    """The messages in ``data`` (after any CRC) and the count of dropped parts."""
    if depth > MAX_DEPTH:
        raise WireError("packet nested too deep")
    if not data:
        raise WireError("empty message")
    kind = data[0]
    if kind == MessageType.COMPOUND:
        parts, dropped = _split_compound(data)
        messages: list[Message] = []
        for part in parts:
            try:
                found, lost = _decode(part, depth + 1, budget)
            except WireError:
                dropped += 1
            else:
                messages += found
                dropped += lost
        return messages, dropped
    if kind == MessageType.COMPRESS:
        return _decode(budget.decompress(data), depth + 1, budget)
    if kind in (MessageType.PUSH_PULL, MessageType.ENCRYPT, MessageType.ERR):
        raise WireError(f"message type {kind} is not allowed in a datagram")
    if kind == MessageType.HAS_CRC:
        raise WireError("a CRC header is only allowed at the start of a datagram")
    return [decode_message(data)], 0


def decode_packet(data: bytes, *, max_decompressed: int = MAX_PACKET_DECOMPRESSED) -> DecodedPacket:
    """Every message in one (already decrypted) datagram.

    Raises :class:`WireError` when the datagram as a whole is bad: a CRC
    mismatch (memberlist drops the packet), a malformed single message, a
    broken compression wrapper or compound header, too deep a nesting, or
    more than ``max_decompressed`` bytes after decompression.  Bad *parts*
    of a compound do not raise: they are counted in ``dropped``.
    """
    data = bytes(data)
    crc = len(data) >= _CRC_HEADER and data[0] == MessageType.HAS_CRC
    if crc:
        (expected,) = struct.unpack("!I", data[1:_CRC_HEADER])
        data = data[_CRC_HEADER:]
        if zlib.crc32(data) != expected:
            raise WireError("CRC mismatch")
    if not data:
        raise WireError("empty datagram")
    budget = _Budget(max_decompressed)
    compressed = data[0] == MessageType.COMPRESS
    if compressed:
        data = budget.decompress(data)
    is_compound = data[0] == MessageType.COMPOUND
    messages, dropped = _decode(data, 1 if compressed else 0, budget)
    return DecodedPacket(
        tuple(messages), dropped, crc=crc, compressed=compressed, compound=is_compound
    )


def _compound_message(parts: list[bytes]) -> bytes:
    """``makeCompoundMessage``: type, count, big-endian uint16 lengths, then the parts."""
    if len(parts) > MAX_COMPOUND_PARTS:
        raise ValueError(f"a compound holds at most {MAX_COMPOUND_PARTS} parts")
    if any(len(part) > 0xFFFF for part in parts):
        raise ValueError("a compound part is at most 65535 bytes")
    header = bytes([MessageType.COMPOUND, len(parts)])
    lengths = struct.pack(f"!{len(parts)}H", *(len(part) for part in parts))
    return header + lengths + b"".join(parts)


def encode_packet(parts: list[bytes], *, crc: bool = False, compress: bool = False) -> bytes:
    """A datagram of encoded messages, framed as memberlist's ``rawSendMsgPacket`` does.

    Several parts become a compound (one part stays as it is); with
    ``compress`` the result is compressed and the compressed form kept only
    when strictly smaller, which is why serf's small pings go out plain; the
    CRC header comes last, over whatever went before.  Send a CRC only to
    nodes whose Vsn advertises protocol max >= 5.
    """
    if not parts:
        raise ValueError("a packet needs at least one message")
    msg = parts[0] if len(parts) == 1 else _compound_message(parts)
    if compress:
        packed = compress_message(msg)
        if len(packed) < len(msg):
            msg = packed
    if crc:
        msg = bytes([MessageType.HAS_CRC]) + struct.pack("!I", zlib.crc32(msg)) + msg
    return msg


def compound(parts: list[bytes], limit: int = UDP_BUDGET) -> list[bytes]:
    """``parts`` packed in order into as few messages of at most ``limit`` bytes as fit.

    Each result is one message for :func:`encode_packet`: a compound, or a
    part on its own when it is alone in its packet.  A part too big for
    ``limit`` by itself still goes out alone (the caller decides whether to
    send it), so nothing is lost silently.  Subtract what will be added
    later from ``limit``: 5 bytes for a CRC, 29 for encryption.
    """
    packets: list[list[bytes]] = []
    group: list[bytes] = []
    size = _COMPOUND_OVERHEAD
    for part in parts:
        cost = _PART_OVERHEAD + len(part)
        if group and (size + cost > limit or len(group) == MAX_COMPOUND_PARTS):
            packets.append(group)
            group, size = [], _COMPOUND_OVERHEAD
        group.append(part)
        size += cost
    if group:
        packets.append(group)
    return [group[0] if len(group) == 1 else _compound_message(group) for group in packets]
