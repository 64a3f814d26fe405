"""
A minimal libpcap reader for the captured gossip traffic in tests/data.

It yields the UDP datagrams of a capture in order, and reassembles each TCP
connection's bytes per direction (enough for loopback captures: no
retransmissions or reordering to speak of).  No third-party dependency.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import attrs

DATA = Path(__file__).parent / "data" / "serf-0.9.4"
PLAIN_POOL = DATA / "plain-pool.pcap"
ENCRYPTED_POOL = DATA / "encrypted-pool.pcap"
ENCRYPTED_POOL_KEY = "MFGEKa64Dz/VEzW1NgiE4Kw69YFOn98xAr9JcWGuXXs="

Endpoint = tuple[str, int]


@attrs.frozen
class Datagram:
    src: Endpoint
    dst: Endpoint
    payload: bytes


@attrs.frozen
class Stream:
    """One direction of one TCP connection."""

    src: Endpoint
    dst: Endpoint
    data: bytes


def _frames(path: Path) -> Iterator[tuple[int, bytes]]:
    raw = path.read_bytes()
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", raw[20:24])[0]
    offset = 24
    while offset + 16 <= len(raw):
        _, _, caplen, _ = struct.unpack(endian + "IIII", raw[offset : offset + 16])
        offset += 16
        yield linktype, raw[offset : offset + caplen]
        offset += caplen


def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    if linktype == 1:  # Ethernet
        return frame[14:] if frame[12:14] == b"\x08\x00" else None
    if linktype == 113:  # Linux cooked (SLL)
        return frame[16:] if frame[14:16] == b"\x08\x00" else None
    if linktype == 276:  # Linux cooked v2 (SLL2)
        return frame[20:] if frame[0:2] == b"\x08\x00" else None
    if linktype in (0, 108):  # BSD loopback / null
        return frame[4:]
    if linktype in (12, 101, 228):  # raw IP
        return frame
    return None


def _ip(addr: bytes) -> str:
    return ".".join(str(b) for b in addr)


def read(path: Path) -> tuple[list[Datagram], list[Stream]]:
    datagrams: list[Datagram] = []
    flows: dict[tuple[Endpoint, Endpoint], list[tuple[int, bytes]]] = {}
    order: list[tuple[Endpoint, Endpoint]] = []
    for linktype, frame in _frames(path):
        packet = _ip_packet(linktype, frame)
        if packet is None or packet[0] >> 4 != 4:
            continue
        header = (packet[0] & 0x0F) * 4
        total = struct.unpack("!H", packet[2:4])[0]
        proto = packet[9]
        src_ip, dst_ip = _ip(packet[12:16]), _ip(packet[16:20])
        body = packet[header:total]
        if proto == 17:
            sport, dport = struct.unpack("!HH", body[:4])
            datagrams.append(Datagram((src_ip, sport), (dst_ip, dport), body[8:]))
        elif proto == 6:
            sport, dport, seq = struct.unpack("!HHI", body[:8])
            offset = (body[12] >> 4) * 4
            payload = body[offset:]
            key = ((src_ip, sport), (dst_ip, dport))
            if key not in flows:
                flows[key] = []
                order.append(key)
            if payload:
                flows[key].append((seq, payload))
    streams = []
    for key in order:
        segments = sorted(flows[key], key=lambda s: s[0])
        data, seen = b"", set()
        for seq, payload in segments:
            if seq in seen:
                continue
            seen.add(seq)
            data += payload
        if data:
            streams.append(Stream(key[0], key[1], data))
    return datagrams, streams
