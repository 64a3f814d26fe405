"""
Percentiles, ratios and the small tables the benchmarks print.

Kept dependency-free (no numpy): percentiles use linear interpolation
between closest ranks, as ``numpy.percentile``'s default does.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}x"


def latency_row(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean in microseconds from samples in seconds."""
    us = [v * 1e6 for v in values_s]
    return {
        "p50": percentile(us, 50),
        "p90": percentile(us, 90),
        "p99": percentile(us, 99),
        "mean": statistics.fmean(us),
    }


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = [str(cells[0]).ljust(widths[0])]
        out += [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def latency_table(agent_s: Sequence[float], baseline_s: Sequence[float]) -> str:
    """Per-side latency percentiles in µs and the agent/baseline ratio of each."""
    a, b = latency_row(agent_s), latency_row(baseline_s)
    keys = ["p50", "p90", "p99", "mean"]
    return table(
        ["", *(f"{k} µs" for k in keys)],
        [
            ["agent", *(f"{a[k]:.1f}" for k in keys)],
            ["baseline", *(f"{b[k]:.1f}" for k in keys)],
            ["agent/baseline", *(fmt_ratio(ratio(a[k], b[k])) for k in keys)],
            ["agent-baseline", *(f"{a[k] - b[k]:+.1f}" for k in keys)],
        ],
    )


def spread(values: Sequence[float]) -> str:
    """``median (min-max)`` of a few ratios, to show how much rounds disagree."""
    return (
        f"median {fmt_ratio(statistics.median(values))}, "
        f"range {fmt_ratio(min(values))}-{fmt_ratio(max(values))}"
    )
