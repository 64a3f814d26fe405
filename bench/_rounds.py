"""
Interleaved latency sampling for the one-client request benchmarks.

The samples of the two sides are taken in alternating blocks (agent then
baseline, then baseline then agent, ...), so a burst of load from someone
else on the shared machine lands on both sides rather than on whichever was
being measured at the time.  Each round (one block per side) also yields
its own p50 ratio; their spread is the noise estimate printed beside the
overall ratio.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from bench._stats import latency_table, percentile, ratio, spread

#: Takes a number of requests to make, returns one latency in seconds each.
Sampler = Callable[[int], list[float]]


@attrs.define
class Samples:
    agent: list[float] = attrs.Factory(list)
    baseline: list[float] = attrs.Factory(list)
    round_p50_ratios: list[float] = attrs.Factory(list)

    def p50_ratio(self) -> float:
        return ratio(percentile(self.agent, 50), percentile(self.baseline, 50))

    def headline(self, what: str) -> str:
        """The line to lead with: the p50 ratio, then the absolute p50s."""
        a50, b50 = percentile(self.agent, 50) * 1e6, percentile(self.baseline, 50) * 1e6
        return (
            f"{what} p50 agent/baseline = {self.p50_ratio():.2f}x  ({a50:.0f} µs vs {b50:.0f} µs)"
        )

    def details(self) -> str:
        """The table, then the per-round spread."""
        return "\n".join(
            [
                latency_table(self.agent, self.baseline),
                "",
                f"per-round p50 ratio over {len(self.round_p50_ratios)} rounds: "
                + spread(self.round_p50_ratios),
            ]
        )


def interleaved(agent: Sampler, baseline: Sampler, *, per_side: int, block: int) -> Samples:
    """``per_side`` samples of each, in blocks of ``block``, alternating which goes first."""
    samples = Samples()
    rounds = max(1, -(-per_side // block))
    for i in range(rounds):
        n = min(block, per_side - i * block)
        if i % 2 == 0:
            a, b = agent(n), baseline(n)
        else:
            b, a = baseline(n), agent(n)
        samples.agent += a
        samples.baseline += b
        samples.round_p50_ratios.append(ratio(percentile(a, 50), percentile(b, 50)))
    return samples
