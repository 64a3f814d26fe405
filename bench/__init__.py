"""
Benchmarks for consul-tw, run as ``python -m bench <name>``.

The machine they run on is shared and noisy, so no benchmark trusts one
absolute time: each one measures the agent *and* a bare Twisted baseline
doing the same job in the same run, interleaved so that noise falls on
both, and leads with the ratio agent/baseline.  Absolute numbers are printed
too, as context.

Every process listens on loopback only, on ports picked by binding port 0;
every loop is bounded and stops by itself; children are killed on the way
out.  The benchmarks need nothing beyond the project's own dependencies and
are not part of the test suite.  See ``docs/benchmarks.md`` for the method
and for figures.
"""
