"""
``python -m bench http``: p50 latency of ``GET /v1/catalog/nodes``, one client.

The agent is started in ``--dev`` mode and waited for until its node is in
the catalog (``agent: Synced node info``).  One request captures the
response (status, headers, body); the baseline, a bare twisted.web site in
its own ``twistd`` process, is then started serving exactly those bytes at
the same path.  The benchmark checks the two answers match (apart from
``Date``) before timing anything.

The client is this process, one ``http.client.HTTPConnection`` per server,
kept alive, one request at a time: a latency is the time from writing the
request to having read the whole body.  After a warm-up on both, requests
go in interleaved blocks (see :mod:`bench._rounds`).  Every answer's status
and body are checked; a mismatch is counted and reported, not timed away.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import attrs

from bench._agent import AGENT_RUNNING, AGENT_SYNCED, BASELINE_RUNNING, start_agent, start_baseline
from bench._baseline_server import write_fixture
from bench._proc import pin_client_and_servers
from bench._rounds import Sampler, interleaved

DESCRIPTION = "p50 latency of GET /v1/catalog/nodes, 1 client, vs a bare twisted.web"
PATH = "/v1/catalog/nodes"


@attrs.frozen
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def comparable_headers(self) -> list[tuple[str, str]]:
        return [(k.lower(), v) for k, v in self.headers if k.lower() != "date"]

    def wire_size(self) -> int:
        """Bytes on the wire: status line, headers, blank line, body."""
        head = len(f"HTTP/1.1 {self.status} OK\r\n") + 2
        return head + sum(len(k) + len(v) + 4 for k, v in self.headers) + len(self.body)


def fetch(conn: http.client.HTTPConnection) -> Response:
    conn.request("GET", PATH)
    resp = conn.getresponse()
    return Response(resp.status, resp.getheaders(), resp.read())


def sampler(conn: http.client.HTTPConnection, expected: bytes, mismatches: list[int]) -> Sampler:
    """Timed sequential requests on ``conn``; bad answers are counted in ``mismatches[0]``."""
    clock = time.perf_counter

    def take(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = clock()
            conn.request("GET", PATH)
            resp = conn.getresponse()
            body = resp.read()
            out.append(clock() - t0)
            if resp.status != 200 or body != expected:
                mismatches[0] += 1
        return out

    return take


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench http", description=DESCRIPTION)
    parser.add_argument("--requests", type=int, default=5000, help="timed requests per side")
    parser.add_argument("--block", type=int, default=50, help="requests per interleaved block")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per side first")
    parser.add_argument(
        "--no-pin", action="store_true", help="let the scheduler place client and servers"
    )
    parser.add_argument("--log-level", help="pass -log-level to the agent (e.g. INFO)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a line")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.block < 1:
        parser.error("--requests and --block must be positive")

    agent_args = ["--log-level", args.log_level] if args.log_level else []
    server_cpus, placement = pin_client_and_servers(not args.no_pin)
    agent, agent_ports = start_agent(agent_args, server_cpus)
    with agent, tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, ExitStack() as stack:
        agent.wait_for(AGENT_RUNNING, args.timeout)
        agent.wait_for(AGENT_SYNCED, args.timeout)
        a_conn = http.client.HTTPConnection("127.0.0.1", agent_ports.http, timeout=10)
        stack.callback(a_conn.close)
        captured = fetch(a_conn)
        if captured.status != 200:
            raise SystemExit(f"agent answered {captured.status} to GET {PATH}")

        fixture = Path(tmp) / "fixture.json"
        write_fixture(
            fixture,
            http_path=PATH,
            status=captured.status,
            headers=captured.headers,
            body=captured.body,
        )
        baseline, base_ports = start_baseline(fixture, server_cpus)
        with baseline:
            baseline.wait_for(BASELINE_RUNNING, args.timeout)
            b_conn = http.client.HTTPConnection("127.0.0.1", base_ports.http, timeout=10)
            stack.callback(b_conn.close)
            check = fetch(b_conn)
            same = (
                check.status == captured.status
                and check.body == captured.body
                and check.comparable_headers() == captured.comparable_headers()
            )
            if not same:
                raise SystemExit(
                    f"baseline answer differs from the agent's:\n{check}\nvs\n{captured}"
                )

            a_bad, b_bad = [0], [0]
            take_a = sampler(a_conn, captured.body, a_bad)
            take_b = sampler(b_conn, captured.body, b_bad)
            take_a(args.warmup)
            take_b(args.warmup)
            samples = interleaved(take_a, take_b, per_side=args.requests, block=args.block)

    print(samples.headline(f"GET {PATH}"))
    print(
        f"bench http: 1 client, keep-alive, {args.requests} requests per side "
        f"in interleaved blocks of {args.block}, after {args.warmup} warm-up each; {placement}"
        + (f"; agent -log-level {args.log_level}" if args.log_level else "")
    )
    print(
        f"response: {captured.status}, {len(captured.body)} body bytes, "
        f"~{captured.wire_size()} bytes on the wire, same bytes from both (bar Date)"
    )
    print()
    print(samples.details())
    if a_bad[0] or b_bad[0]:
        print(f"WARNING: unexpected answers: agent {a_bad[0]}, baseline {b_bad[0]}")
    return 0
