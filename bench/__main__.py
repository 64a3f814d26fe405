"""
``python -m bench <name> [options]``: run one benchmark.

Benchmarks are modules of this package with ``DESCRIPTION`` and
``main(argv) -> int``; they are imported only when asked for, so one that
breaks does not stop the others.  Without a name, the list is printed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: Benchmark name -> module (``bench.http`` is imported by its full name,
#: so it never shadows the standard library's ``http``).
BENCHMARKS = {
    "startup": "bench.startup",
    "http": "bench.http",
    "dns": "bench.dns",
    "gossip": "bench.gossip",
    "raft": "bench.raft",
}


def usage() -> str:
    lines = ["usage: python -m bench <name> [options]   (--help after a name for its options)", ""]
    for name, module in BENCHMARKS.items():
        lines.append(f"  {name:<8} {importlib.import_module(module).DESCRIPTION}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], list(argv[1:])
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(importlib.import_module(BENCHMARKS[name]).main(rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
