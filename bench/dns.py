"""
``python -m bench dns``: p50 latency of a UDP A query for the node, one client.

The agent is started in ``--dev`` mode and waited for until its node is in
the catalog.  dnspython's ``dns.query.udp`` asks it ``bench.node.consul. A``
to check the answer is sane, and the same query sent on a plain socket
captures the answer's exact bytes.  The baseline, a bare twisted.names
server in its own ``twistd`` process, is then started with that answer
(see :mod:`bench._baseline_server`), and its reply must equal the agent's
byte for byte, apart from the two-byte query ID, before anything is timed.

The timed client is a plain connected UDP socket per server rather than
``dns.query.udp``: dnspython builds and parses a message per call and opens
a socket per call unless given one, client work that would sit in both
sides' figures and dilute the ratio towards 1.  Each query gets its own ID;
each reply's ID and bytes are checked, and a reply that is wrong or does
not come within the timeout is counted and reported, not timed.
"""

from __future__ import annotations

import argparse
import socket
import struct
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from bench._agent import (
    AGENT_RUNNING,
    AGENT_SYNCED,
    BASELINE_RUNNING,
    NODE,
    start_agent,
    start_baseline,
)
from bench._baseline_server import write_fixture
from bench._proc import pin_client_and_servers
from bench._rounds import Sampler, interleaved

DESCRIPTION = f"p50 latency of a UDP A query for {NODE}.node.consul, 1 client, vs twisted.names"
QNAME = f"{NODE}.node.consul."
_ID = struct.Struct("!H")


def ask(sock: socket.socket, query: bytes, ident: int) -> bytes:
    """One query with ID ``ident`` on a connected socket; the raw reply."""
    sock.send(_ID.pack(ident) + query[2:])
    return sock.recv(65535)


def udp_socket(port: int, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def sampler(sock: socket.socket, query: bytes, expected: bytes, bad: list[int]) -> Sampler:
    """Timed sequential queries; wrong or missing replies are counted in ``bad[0]``."""
    clock = time.perf_counter
    body = expected[2:]
    counter = [0]

    def take(n: int) -> list[float]:
        out = []
        for _ in range(n):
            counter[0] = (counter[0] + 1) & 0xFFFF
            ident = _ID.pack(counter[0])
            wire = ident + query[2:]
            t0 = clock()
            sock.send(wire)
            try:
                reply = sock.recv(65535)
                # A late reply to a query that timed out: skip it, once.
                if reply[:2] != ident:
                    reply = sock.recv(65535)
            except TimeoutError:
                bad[0] += 1
                continue
            elapsed = clock() - t0
            if reply[:2] != ident or reply[2:] != body:
                bad[0] += 1
                continue
            out.append(elapsed)
        return out

    return take


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench dns", description=DESCRIPTION)
    parser.add_argument("--queries", type=int, default=5000, help="timed queries per side")
    parser.add_argument("--block", type=int, default=50, help="queries per interleaved block")
    parser.add_argument("--warmup", type=int, default=200, help="untimed queries per side first")
    parser.add_argument(
        "--no-pin", action="store_true", help="let the scheduler place client and servers"
    )
    parser.add_argument("--log-level", help="pass -log-level to the agent (e.g. INFO)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a line")
    args = parser.parse_args(argv)
    if args.queries < 1 or args.block < 1:
        parser.error("--queries and --block must be positive")

    agent_args = ["--log-level", args.log_level] if args.log_level else []
    server_cpus, placement = pin_client_and_servers(not args.no_pin)
    agent, agent_ports = start_agent(agent_args, server_cpus)
    with agent, tempfile.TemporaryDirectory(prefix="bench-dns-") as tmp:
        agent.wait_for(AGENT_RUNNING, args.timeout)
        agent.wait_for(AGENT_SYNCED, args.timeout)
        message = dns.message.make_query(QNAME, dns.rdatatype.A)
        parsed = dns.query.udp(message, "127.0.0.1", port=agent_ports.dns, timeout=5)
        if parsed.rcode() != dns.rcode.NOERROR or not parsed.answer:
            raise SystemExit(f"agent gave no answer for {QNAME} A:\n{parsed}")
        query = message.to_wire()
        a_sock = udp_socket(agent_ports.dns, 2.0)
        answer = ask(a_sock, query, 1)

        fixture = Path(tmp) / "fixture.json"
        write_fixture(fixture, http_path="/", status=200, headers=[], body=b"", dns_answer=answer)
        baseline, base_ports = start_baseline(fixture, server_cpus)
        with baseline, a_sock, udp_socket(base_ports.dns, 2.0) as b_sock:
            baseline.wait_for(BASELINE_RUNNING, args.timeout)
            check = ask(b_sock, query, 1)
            if check != answer:
                raise SystemExit(
                    "baseline answer differs from the agent's:\n"
                    f"{dns.message.from_wire(check)}\nvs\n{parsed}"
                )

            a_bad, b_bad = [0], [0]
            take_a = sampler(a_sock, query, answer, a_bad)
            take_b = sampler(b_sock, query, answer, b_bad)
            take_a(args.warmup)
            take_b(args.warmup)
            samples = interleaved(take_a, take_b, per_side=args.queries, block=args.block)

    print(samples.headline(f"DNS {QNAME} A"))
    print(
        f"bench dns: UDP, 1 client, {args.queries} queries per side "
        f"in interleaved blocks of {args.block}, after {args.warmup} warm-up each; {placement}"
        + (f"; agent -log-level {args.log_level}" if args.log_level else "")
    )
    print(
        f"answer: {len(answer)} bytes ({len(parsed.answer)} answer, "
        f"{len(parsed.additional)} additional RRset), byte-identical from both bar the ID"
    )
    print()
    print(samples.details())
    if a_bad[0] or b_bad[0]:
        print(f"WARNING: wrong or missing replies: agent {a_bad[0]}, baseline {b_bad[0]}")
    return 0
