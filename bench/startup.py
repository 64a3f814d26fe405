"""
``python -m bench startup``: time to ready, and resident memory once ready.

Each run spawns one process and measures the time from spawn to its ready
line (``==> Consul agent running!`` for the agent, which it prints once
every listener is bound and the reactor runs; ``bench baseline running``
for the baseline, printed at the same point), then reads ``VmRSS`` from
``/proc/<pid>/status``.  For the agent it also waits for ``agent: Synced
node info`` (it has elected itself and registered its node) and reads the
memory again; the baseline has no counterpart to that, so those figures
are absolute only.

Runs alternate agent/baseline (and swap which goes first each round) so
that a slow patch of the shared machine hits both, after one uncounted
warm-up run each to settle disk caches and ``.pyc`` files.  Figures are
medians over the runs; the per-round ratios show how much rounds disagree.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import attrs

from bench._agent import (
    AGENT_RUNNING,
    AGENT_SYNCED,
    BASELINE_RUNNING,
    start_agent,
    start_baseline,
)
from bench._stats import fmt_ratio, ratio, spread, table

DESCRIPTION = "start-up time to 'Consul agent running!' and VmRSS, vs a bare twistd web+names"


@attrs.frozen
class Run:
    ready_s: float
    ready_rss_kib: int
    synced_s: float | None = None
    synced_rss_kib: int | None = None


def run_agent(timeout: float) -> Run:
    child, _ = start_agent()
    with child:
        ready = child.wait_for(AGENT_RUNNING, timeout)
        ready_rss = child.rss_kib()
        synced = child.wait_for(AGENT_SYNCED, timeout)
        return Run(ready, ready_rss, synced, child.rss_kib())


def run_baseline(timeout: float) -> Run:
    child, _ = start_baseline()
    with child:
        ready = child.wait_for(BASELINE_RUNNING, timeout)
        return Run(ready, child.rss_kib())


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def report(agent: Sequence[Run], baseline: Sequence[Run], warmups: int) -> str:
    med = statistics.median
    a_ready, b_ready = med(r.ready_s for r in agent), med(r.ready_s for r in baseline)
    a_rss, b_rss = med(r.ready_rss_kib for r in agent), med(r.ready_rss_kib for r in baseline)
    a_synced = med(r.synced_s for r in agent if r.synced_s is not None)
    a_synced_rss = med(r.synced_rss_kib for r in agent if r.synced_rss_kib is not None)
    time_ratios = [ratio(a.ready_s, b.ready_s) for a, b in zip(agent, baseline, strict=True)]
    rss_ratios = [
        ratio(a.ready_rss_kib, b.ready_rss_kib) for a, b in zip(agent, baseline, strict=True)
    ]
    lines = [
        f"start-up  agent/baseline = {fmt_ratio(ratio(a_ready, b_ready))}"
        f"  (median {a_ready * 1e3:.0f} ms vs {b_ready * 1e3:.0f} ms to ready line)",
        f"memory    agent/baseline = {fmt_ratio(ratio(a_rss, b_rss))}"
        f"  (median VmRSS {_mib(a_rss)} MiB vs {_mib(b_rss)} MiB at ready line)",
        f"bench startup: {len(agent)} runs per side, alternating, "
        f"after {warmups} uncounted warm-up run(s) each",
        "",
        table(
            ["median over runs", "agent", "baseline", "agent/baseline", "agent-baseline"],
            [
                [
                    "spawn -> ready line (ms)",
                    f"{a_ready * 1e3:.0f}",
                    f"{b_ready * 1e3:.0f}",
                    fmt_ratio(ratio(a_ready, b_ready)),
                    f"{(a_ready - b_ready) * 1e3:+.0f}",
                ],
                [
                    "VmRSS at ready line (MiB)",
                    _mib(a_rss),
                    _mib(b_rss),
                    fmt_ratio(ratio(a_rss, b_rss)),
                    f"{(a_rss - b_rss) / 1024:+.1f}",
                ],
                ["spawn -> Synced node info (ms)", f"{a_synced * 1e3:.0f}", "-", "-", "-"],
                ["VmRSS at Synced node info (MiB)", _mib(a_synced_rss), "-", "-", "-"],
            ],
        ),
        "",
        f"per-round start-up ratio: {spread(time_ratios)}",
        f"per-round memory ratio:   {spread(rss_ratios)}",
        "agent ready (ms):    " + " ".join(f"{r.ready_s * 1e3:.0f}" for r in agent),
        "baseline ready (ms): " + " ".join(f"{r.ready_s * 1e3:.0f}" for r in baseline),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=DESCRIPTION)
    parser.add_argument("--runs", type=int, default=7, help="counted runs per side (default 7)")
    parser.add_argument("--warmups", type=int, default=1, help="uncounted runs per side first")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a line")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    for _ in range(args.warmups):
        run_agent(args.timeout)
        run_baseline(args.timeout)
    agent: list[Run] = []
    baseline: list[Run] = []
    for i in range(args.runs):
        if i % 2 == 0:
            agent.append(run_agent(args.timeout))
            baseline.append(run_baseline(args.timeout))
        else:
            baseline.append(run_baseline(args.timeout))
            agent.append(run_agent(args.timeout))
    print(report(agent, baseline, args.warmups))
    return 0
