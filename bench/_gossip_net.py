"""
A private network namespace for ``bench gossip``, and what crosses its loopback.

The benchmark moves itself into a network namespace of its own
(``unshare(CLONE_NEWNET)``, then ``lo`` brought up); the agents it spawns
inherit it.  Nothing else on the machine can send a byte over that ``lo``,
nor take a port the benchmark picked.

Gossip bytes are counted two ways over the same window, while the benchmark
polls no agent and holds no connection to one:

* :func:`capture`: a packet socket (``AF_PACKET``, what tcpdump uses, so no
  tcpdump is needed) on ``lo`` sees every frame; those to or from one of
  the pool's gossip ports are counted, split into UDP (memberlist's pings,
  acks and broadcasts, by message type) and TCP (push/pulls).  Needs
  ``CAP_NET_RAW`` (root here).
* :func:`lo_counters`: the interface's transmit counters (IP packets, so
  14 bytes a frame less) and the namespace's UDP/TCP counters from
  ``/proc/self/net``, a cross-check that nothing but the pool talked.

Captured sizes are whole frames as the kernel hands them over: payload,
UDP or TCP header, IPv4 header and the 14-byte Ethernet header loopback
frames carry.
Without a namespace (no ``CAP_SYS_ADMIN``) the benchmark runs on the host's
loopback; the capture still counts only the pool's ports, the interface
counters then include whatever else the machine sends over ``lo``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import time

import attrs

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
#: ``struct ifreq`` on Linux: 16 bytes of name, then a 24-byte union whose
#: first member, for these two requests, is the short ``ifr_flags``.
_IFREQ = "16sh22x"


def enter_private_netns() -> str | None:
    """
    Move this process into a new network namespace with ``lo`` up.

    Returns ``None`` on success, else why not (and nothing changed).  Must
    be called while the process has a single thread (before any is started),
    as ``unshare`` moves only the calling thread.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        return f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))
    return None


@attrs.frozen
class Counters:
    #: Frames and bytes sent over ``lo``.
    tx_bytes: int
    tx_packets: int
    #: From /proc/net/snmp: UDP datagrams sent, TCP segments sent, TCP
    #: connections opened, and UDP datagrams dropped on receive (errors,
    #: full receive buffers).
    udp_out: int = 0
    tcp_out_segs: int = 0
    tcp_opens: int = 0
    udp_drops: int = 0

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            *(getattr(self, f.name) - getattr(other, f.name) for f in attrs.fields(Counters))
        )


def _snmp() -> dict[str, int]:
    """``Proto.Field`` -> value from /proc/self/net/snmp (this namespace's)."""
    values: dict[str, int] = {}
    with open("/proc/self/net/snmp", encoding="ascii") as f:
        lines = f.read().splitlines()
    for head, row in zip(lines[::2], lines[1::2], strict=False):
        proto, _, names = head.partition(":")
        for name, value in zip(names.split(), row.partition(":")[2].split(), strict=False):
            values[f"{proto}.{name}"] = int(value)
    return values


def lo_counters() -> Counters:
    """
    Transmit counters of ``lo`` in this process's namespace, and its UDP and
    TCP counters (which cover every interface, but ``lo`` is the only one up).

    On loopback every packet is transmitted once and received once, so the
    transmit side alone counts each packet once.  Loopback counts IP
    packets: payload, UDP or TCP header and IPv4 header, but not the 14-byte
    Ethernet header that the captured frames carry.
    """
    with open("/proc/self/net/dev", encoding="ascii") as f:
        for line in f:
            name, sep, rest = line.partition(":")
            if sep and name.strip() == "lo":
                fields = rest.split()
                # receive: bytes packets errs drop fifo frame compressed multicast
                # transmit: bytes packets ...
                snmp = _snmp()
                return Counters(
                    tx_bytes=int(fields[8]),
                    tx_packets=int(fields[9]),
                    udp_out=snmp["Udp.OutDatagrams"],
                    tcp_out_segs=snmp["Tcp.OutSegs"],
                    tcp_opens=snmp["Tcp.ActiveOpens"],
                    udp_drops=snmp["Udp.InErrors"],  # includes RcvbufErrors
                )
    raise RuntimeError("no lo in /proc/self/net/dev")


ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
#: memberlist's message types, the first byte of an unencrypted UDP payload.
PING, ACK = 0, 2


@attrs.define
class Capture:
    """Frames to or from the pool's gossip ports, and their bytes."""

    udp_frames: int = 0
    udp_bytes: int = 0
    tcp_frames: int = 0
    tcp_bytes: int = 0
    ping_frames: int = 0
    ping_bytes: int = 0
    ack_frames: int = 0
    ack_bytes: int = 0
    #: Frames on ``lo`` that touched none of the pool's ports.
    other_frames: int = 0

    @property
    def bytes(self) -> int:
        return self.udp_bytes + self.tcp_bytes

    @property
    def frames(self) -> int:
        return self.udp_frames + self.tcp_frames


def capture(ports: set[int], seconds: float) -> Capture | None:
    """
    Count, for ``seconds``, the frames on ``lo`` to or from ``ports``
    (``None`` if no packet socket can be opened).  Each frame is seen twice
    on loopback, once leaving and once arriving; only arrivals are counted.
    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except (OSError, AttributeError):
        return None
    result = Capture()
    deadline = time.perf_counter() + seconds
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("lo", 0))
        while (left := deadline - time.perf_counter()) > 0:
            sock.settimeout(left)
            try:
                frame, addr = sock.recvfrom(65536)
            except TimeoutError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            _count(result, frame, ports)
    return result


def _count(result: Capture, frame: bytes, ports: set[int]) -> None:
    if len(frame) < 14 + 20 + 8 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        result.other_frames += 1
        return
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[14 + 9]
    sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
    if sport not in ports and dport not in ports:
        result.other_frames += 1
    elif proto == socket.IPPROTO_UDP:
        result.udp_frames += 1
        result.udp_bytes += len(frame)
        kind = frame[14 + ihl + 8] if len(frame) > 14 + ihl + 8 else None
        if kind == PING:
            result.ping_frames += 1
            result.ping_bytes += len(frame)
        elif kind == ACK:
            result.ack_frames += 1
            result.ack_bytes += len(frame)
    elif proto == socket.IPPROTO_TCP:
        result.tcp_frames += 1
        result.tcp_bytes += len(frame)
    else:
        result.other_frames += 1
