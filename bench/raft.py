"""
``python -m bench raft``: durable writes through a 3-server consul-tw cluster
beside a 3-member etcd cluster (Debian's etcd-server), in the same run.

Each round starts a fresh cluster of each kind, one after the other (only
one is alive at a time; the side that goes first swaps every round), and
puts it through the same steps:

* **load**: for each target (the leader; a follower, which forwards to the
  leader) and each client count (1, 32), a warm-up of ``--warmup`` s then a
  timed wrk run of ``--duration`` s, each write a new key with a 100-byte
  value (see :mod:`bench._raft_load`).  Figures: acknowledged writes a
  second, p50 and p99 latency, and the CPU the servers and wrk used.  The
  store's index is read before and after, and must have grown by at least
  the writes acknowledged.
* **failover**: a 1-client write loop to the leader, kill -9 of the leader,
  and the time until the next acknowledged write (any live member, a short
  timeout per attempt); the killed member is restarted on its data and the
  cluster waited for before the next kill.

Figures are medians over rounds (load) and over every kill (failover), and
each is printed as the ratio consul-tw/etcd, since the machine is shared and
only figures from the same run compare.  Both sides get the same Raft
timeouts (see :mod:`bench._raft_clusters`), data on the same disk, and the
same client.  Debian packages (etcd-server, wrk) are installed if missing.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from bench._gossip_net import enter_private_netns
from bench._raft_clusters import (
    ETCD_ELECTION_MS,
    ETCD_HEARTBEAT_MS,
    PACKAGES,
    RAFT_MULTIPLIER,
    Cluster,
    ClusterError,
    ConsulCluster,
    EtcdCluster,
    ensure_commands,
    package_version,
)
from bench._raft_load import (
    Failover,
    WrkResult,
    ensure_py_spy,
    failover_once,
    fsync_ms,
    profile_top,
    run_wrk,
    start_profile,
    write_script,
    wrk_version,
)
from bench._stats import fmt_ratio, table

DESCRIPTION = "replicated durable KV writes/s, latency and failover of 3 servers vs 3 etcd members"

KINDS = ("consul-tw", "etcd")
CLUSTERS: dict[str, type[Cluster]] = {"consul-tw": ConsulCluster, "etcd": EtcdCluster}
TARGETS = ("leader", "follower")
#: The issue's targets.
MIN_WRITES_RATIO = 0.5
MAX_P50_MS = 3.0
MAX_FAILOVER_RATIO = 1.0

#: Clusters alive right now, for the atexit safety net.
_live: list[Cluster] = []


@attrs.define
class Load:
    """One timed wrk run."""

    kind: str
    round: int
    target: str
    clients: int
    result: WrkResult | None = None
    #: Store index when the timed part began (consul-tw: about the Raft log length).
    index_start: int | None = None
    #: Store index growth over the run (must be >= acknowledged writes).
    index_delta: int | None = None
    leader_cpu_s: float = 0.0
    servers_cpu_s: float = 0.0
    note: str = ""
    error: str | None = None

    def cpu_pct(self, seconds: float) -> float | None:
        if self.result is None:
            return None
        return 100.0 * seconds / self.result.duration_s


@attrs.define
class Side:
    """One cluster's round: its start-up, its loads, its failovers."""

    kind: str
    round: int
    start_s: float | None = None
    #: Median fdatasync of the data disk just before this side's round.
    fsync_ms: float | None = None
    loads: list[Load] = attrs.Factory(list)
    failovers: list[Failover] = attrs.Factory(list)
    error: str | None = None
    log_excerpt: str = ""
    #: "member [LEVEL] gist" -> count, from every member's log.
    warnings: collections.Counter[str] = attrs.Factory(collections.Counter)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _med(values: Sequence[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else fmt_ratio(a / b)


# -- running ---------------------------------------------------------------------


def run_load(
    cluster: Cluster, rnd: int, target: str, clients: int, args: argparse.Namespace, script: Path
) -> Load:
    """Warm-up, then one timed run; CPU and store index read around the timed part only."""
    load = Load(cluster.kind, rnd, target, clients)
    leader = cluster.wait_leader(30.0)
    member = leader if target == "leader" else cluster.follower(leader)
    prefix = f"bench/r{rnd}-{target}-{clients}/"
    run_wrk(script, cluster, member, clients, args.warmup, prefix + "w")
    index0 = load.index_start = cluster.committed_index(leader)
    cpu0 = {m.name: m.cpu_seconds() for m in cluster.members}
    load.result = run_wrk(script, cluster, member, clients, args.duration, prefix)
    cpu = {m.name: m.cpu_seconds() - cpu0[m.name] for m in cluster.members}
    load.leader_cpu_s = cpu[leader.name]
    load.servers_cpu_s = sum(cpu.values())
    after = cluster.leader()
    if after is not leader:
        load.note = f"leader changed {leader.name} -> {after.name if after else 'none'}"
    load.index_delta = cluster.committed_index(after or leader) - index0
    acked = load.result.requests - load.result.errors
    if load.index_delta < acked:
        load.error = f"index grew {load.index_delta} but {acked} writes were acknowledged"
    return load


def run_failovers(cluster: Cluster, side: Side, args: argparse.Namespace) -> None:
    """``--failovers`` kills of the leader, each victim restarted on its data afterwards."""
    for _ in range(args.failovers):
        result = failover_once(
            cluster, args.steady, args.attempt_timeout, args.retry_gap, args.give_up
        )
        side.failovers.append(result)
        _log(
            f"        kill -9 {result.killed}: next write after {_fmt(result.recovery_s, 3)} s"
            f" ({result.failed_attempts} failed attempts), new leader {result.new_leader}"
            + (f"  ERROR {result.error}" if result.error else "")
        )
        victim = cluster.by_name(result.killed)
        victim.spawn()
        cluster.wait_leader(args.start_timeout)
        time.sleep(args.settle)


def profile_leader(cluster: Cluster, args: argparse.Namespace, script: Path) -> None:
    """An extra, uncounted 32-client run to the leader with py-spy sampling the leader."""
    leader = cluster.wait_leader(30.0)
    assert leader.proc is not None
    out = Path(args.profile)
    proc = start_profile(args.py_spy, leader.proc.pid, args.duration, out)
    clients = max(args.clients)
    result = run_wrk(script, cluster, leader, clients, args.duration, "bench/profile/")
    proc.wait(timeout=args.duration + 60)
    _log(f"        profiled run: {result.writes_per_s:.0f} writes/s, collapsed stacks in {out}")
    if out.exists():
        total, top_self, top_incl = profile_top(out)
        lines = [f"leader profile ({total} samples at 100 Hz), top 10 by self time:"]
        lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in top_self]
        lines += ["top consul_tw functions by inclusive time:", *(f"  {ln}" for ln in top_incl)]
        args.profile_report = "\n".join(lines)


def run_side(kind: str, rnd: int, args: argparse.Namespace, root: Path, script: Path) -> Side:
    side = Side(kind, rnd)
    side.fsync_ms = fsync_ms(root)
    cluster = CLUSTERS[kind](root / f"round{rnd}")
    _live.append(cluster)
    try:
        t0 = time.perf_counter()
        cluster.start()
        cluster.wait_leader(args.start_timeout)
        side.start_s = time.perf_counter() - t0
        _log(f"        {kind}: leader agreed by all 3 after {side.start_s:.1f} s")
        time.sleep(args.settle)
        cluster.mark_logs()
        for target in TARGETS:
            for clients in args.clients:
                load = run_load(cluster, rnd, target, clients, args, script)
                side.loads.append(load)
                _log(f"        {_load_line(load)}")
        if args.profile and kind == "consul-tw" and rnd == args.rounds:
            profile_leader(cluster, args, script)
        run_failovers(cluster, side, args)
    except (ClusterError, RuntimeError, OSError) as e:
        side.error = str(e).splitlines()[0][:400]
        side.log_excerpt = "\n".join(
            f"--- {m.name}\n" + "\n".join(m.log().splitlines()[-20:]) for m in cluster.members
        )
        _log(f"        {kind} round {rnd}: ERROR {e}\n{side.log_excerpt}")
    finally:
        try:
            cluster.kill_all()
            side.warnings = cluster.warnings()
        finally:
            _live.remove(cluster)
            shutil.rmtree(cluster.root, ignore_errors=True)
    return side


def _load_line(load: Load) -> str:
    r = load.result
    if r is None:
        return f"{load.target} x{load.clients}: no result"
    return (
        f"{load.target:<8} {load.clients:>2} clients: {r.writes_per_s:7.0f} writes/s"
        f"  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
        f"  leader CPU {load.cpu_pct(load.leader_cpu_s):.0f}%  index {load.index_start}"
        + (f"  [{load.note}]" if load.note else "")
        + (f"  ERROR {load.error}" if load.error else "")
    )


def _kill_live() -> None:
    """atexit: whatever is still running dies with the benchmark."""
    for cluster in list(_live):
        try:
            cluster.kill_all()
        except BaseException:  # noqa: B036 - best effort on the way out
            pass


# -- reporting -------------------------------------------------------------------


def _loads(sides: list[Side], kind: str, target: str, clients: int) -> list[Load]:
    return [
        ld
        for s in sides
        if s.kind == kind
        for ld in s.loads
        if ld.target == target and ld.clients == clients and ld.result is not None
    ]


def _median_of(loads: list[Load], get: Callable[[Load], float | None]) -> float | None:
    return _med([get(ld) for ld in loads])


def _figures(sides: list[Side], target: str, clients: int) -> dict[str, dict[str, float | None]]:
    """kind -> {writes, p50, p99, leader_cpu, servers_cpu, client_cpu}: medians over rounds."""
    out: dict[str, dict[str, float | None]] = {}
    for kind in KINDS:
        loads = _loads(sides, kind, target, clients)
        out[kind] = {
            "writes": _median_of(loads, lambda ld: ld.result.writes_per_s if ld.result else None),
            "p50": _median_of(loads, lambda ld: ld.result.p50_ms if ld.result else None),
            "p99": _median_of(loads, lambda ld: ld.result.p99_ms if ld.result else None),
            "leader_cpu": _median_of(loads, lambda ld: ld.cpu_pct(ld.leader_cpu_s)),
            "servers_cpu": _median_of(loads, lambda ld: ld.cpu_pct(ld.servers_cpu_s)),
            "client_cpu": _median_of(
                loads, lambda ld: ld.cpu_pct(ld.result.client_cpu_s) if ld.result else None
            ),
        }
    return out


def _round_ratios(sides: list[Side], target: str, clients: int) -> list[float]:
    """Per round, consul-tw's writes/s over etcd's: the noise gauge."""
    ratios = []
    for rnd in sorted({s.round for s in sides}):
        this = [s for s in sides if s.round == rnd]
        a = _loads(this, "consul-tw", target, clients)
        b = _loads(this, "etcd", target, clients)
        if a and b and a[0].result and b[0].result and b[0].result.writes_per_s:
            ratios.append(a[0].result.writes_per_s / b[0].result.writes_per_s)
    return ratios


def _recoveries(sides: list[Side], kind: str) -> list[float]:
    return [
        f.recovery_s
        for s in sides
        if s.kind == kind
        for f in s.failovers
        if f.recovery_s is not None
    ]


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def headline(sides: list[Side], clients: list[int]) -> list[str]:
    """The three targets of the issue, each with its figures and met/missed."""
    hi, lo = max(clients), min(clients)
    thr = _figures(sides, "leader", hi)
    lat = _figures(sides, "leader", lo)
    w_a, w_b = thr["consul-tw"]["writes"], thr["etcd"]["writes"]
    w_ok = None if w_a is None or not w_b else w_a / w_b >= MIN_WRITES_RATIO
    p50 = lat["consul-tw"]["p50"]
    fo_a, fo_b = _med(_recoveries(sides, "consul-tw")), _med(_recoveries(sides, "etcd"))
    fo_ok = None if fo_a is None or not fo_b else fo_a / fo_b <= MAX_FAILOVER_RATIO
    return [
        f"writes/s, {hi} clients -> leader: consul-tw/etcd = {_ratio(w_a, w_b)}"
        f"  ({_fmt(w_a, 0)} vs {_fmt(w_b, 0)})   target >= {MIN_WRITES_RATIO}x: {_verdict(w_ok)}",
        f"p50, {lo} client -> leader: consul-tw {_fmt(p50)} ms, etcd"
        f" {_fmt(lat['etcd']['p50'])} ms ({_ratio(p50, lat['etcd']['p50'])})"
        f"   target < {MAX_P50_MS:g} ms: {_verdict(None if p50 is None else p50 < MAX_P50_MS)}",
        f"kill -9 leader -> next write: consul-tw/etcd = {_ratio(fo_a, fo_b)}"
        f"  ({_fmt(fo_a)} s vs {_fmt(fo_b)} s)   target <= {MAX_FAILOVER_RATIO}x:"
        f" {_verdict(fo_ok)}",
    ]


def load_table(sides: list[Side], clients: list[int]) -> str:
    rows = []
    for target in TARGETS:
        for n in clients:
            f = _figures(sides, target, n)
            a, b = f["consul-tw"], f["etcd"]
            rows.append(
                [
                    f"{n} client{'s' if n > 1 else ''} -> {target}",
                    _fmt(a["writes"], 0),
                    _fmt(b["writes"], 0),
                    _ratio(a["writes"], b["writes"]),
                    _fmt(a["p50"]),
                    _fmt(b["p50"]),
                    _ratio(a["p50"], b["p50"]),
                    _fmt(a["p99"]),
                    _fmt(b["p99"]),
                    _ratio(a["p99"], b["p99"]),
                    f"{_fmt(a['leader_cpu'], 0)} / {_fmt(b['leader_cpu'], 0)}",
                    f"{_fmt(a['client_cpu'], 0)} / {_fmt(b['client_cpu'], 0)}",
                ]
            )
    header = [
        "",
        "writes/s tw",
        "etcd",
        "tw/etcd",
        "p50 ms tw",
        "etcd",
        "tw/etcd",
        "p99 ms tw",
        "etcd",
        "tw/etcd",
        "leader CPU %",
        "wrk CPU %",
    ]
    return table(header, rows)


def failover_table(sides: list[Side]) -> str:
    rows = []
    for kind in KINDS:
        rec = _recoveries(sides, kind)
        fails = [f for s in sides if s.kind == kind for f in s.failovers]
        rows.append(
            [
                kind,
                str(len(rec)),
                _fmt(_med(rec), 3),
                _fmt(min(rec), 3) if rec else "-",
                _fmt(max(rec), 3) if rec else "-",
                str(sum(1 for f in fails if f.error)),
                _fmt(_med([f.before_ms for f in fails])),
            ]
        )
    a, b = _med(_recoveries(sides, "consul-tw")), _med(_recoveries(sides, "etcd"))
    rows.append(["consul-tw/etcd", "", _ratio(a, b), "", "", "", ""])
    header = ["kill -9 leader", "kills", "median s", "min s", "max s", "gave up", "write ms before"]
    return table(header, rows)


def per_round(sides: list[Side]) -> list[str]:
    lines = ["per round:"]
    for s in sorted(sides, key=lambda s: (s.round, s.kind)):
        lines.append(
            f"  round {s.round} {s.kind}: leader agreed after {_fmt(s.start_s, 1)} s,"
            f" disk fdatasync {_fmt(s.fsync_ms)} ms" + (f"  ERROR {s.error}" if s.error else "")
        )
        lines += [f"    {_load_line(ld)}" for ld in s.loads]
        for gist, n in sorted(s.warnings.items()):
            lines.append(f"    log: {gist} x{n}")
        for f in s.failovers:
            why = ", ".join(f"{r} x{n}" for r, n in f.reasons.most_common(4))
            lines.append(
                f"    kill -9 {f.killed}: {_fmt(f.recovery_s, 3)} s to the next write,"
                f" new leader {f.new_leader}; {f.failed_attempts} failed attempts"
                + (f" ({why})" if why else "")
                + (f"  ERROR {f.error}" if f.error else "")
            )
    return lines


def report(sides: list[Side], args: argparse.Namespace, method: str) -> str:
    hi = max(args.clients)
    lines = [*headline(sides, args.clients), ""]
    lines += [f"bench raft: {method}", ""]
    lines += [
        "load (medians over rounds; tw = consul-tw; CPU = % of one core, consul-tw / etcd)",
        load_table(sides, args.clients),
        "",
    ]
    for target in TARGETS:
        ratios = _round_ratios(sides, target, hi)
        if ratios:
            lines.append(
                f"per-round writes/s ratio, {hi} clients -> {target}: "
                + ", ".join(fmt_ratio(r) for r in ratios)
            )
    lines += ["", failover_table(sides), "", *per_round(sides)]
    if getattr(args, "profile_report", None):
        lines += ["", args.profile_report]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------


def _raise_on_term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _fs_type(path: Path) -> str:
    """The filesystem ``path`` is on (tmpfs would make fsync free, on one side or both)."""
    best, fstype = "", "?"
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            mount = fields[1]
            if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
                best, fstype = mount, fields[2]
    return f"{fstype} at {best or '/'}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench raft", description=DESCRIPTION)
    parser.add_argument("--rounds", type=int, default=3, help="fresh clusters per side (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="s per timed run (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="s of warm-up per run (2)")
    parser.add_argument("--clients", default="1,32", help="connections per run (default 1,32)")
    parser.add_argument(
        "--failovers", type=int, default=2, help="leader kills per side per round (default 2)"
    )
    parser.add_argument("--steady", type=float, default=2.0, help="s of writes before a kill (2)")
    parser.add_argument(
        "--attempt-timeout", type=float, default=0.5, help="s per write attempt in failover (0.5)"
    )
    parser.add_argument(
        "--retry-gap",
        type=float,
        default=0.01,
        help="at most one failover attempt per this many s (0.01), so a member that fails"
        " fast is not hammered in a busy loop that takes CPU from the election",
    )
    parser.add_argument("--give-up", type=float, default=30.0, help="s to wait for a write (30)")
    parser.add_argument("--settle", type=float, default=2.0, help="s after a cluster forms (2)")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument(
        "--dir", default=None, help="where data directories go (default: the temp dir; not tmpfs)"
    )
    parser.add_argument(
        "--profile",
        default=None,
        metavar="PATH",
        help="last round: an extra uncounted consul-tw run with py-spy on the leader,"
        " collapsed stacks to PATH, top functions printed",
    )
    parser.add_argument("--no-netns", action="store_true", help="stay in the host's namespace")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    return args


def _versions() -> str:
    return (
        f"etcd-server {package_version(PACKAGES['etcd'])}, {wrk_version()},"
        f" Python {sys.version.split()[0]}"
    )


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    installed = ensure_commands()
    if installed:
        _log(f"installed {', '.join(installed)}")
    if args.profile:
        args.py_spy = ensure_py_spy()
    where = "host network namespace (--no-netns)"
    if not args.no_netns:
        why = enter_private_netns()
        where = "private network namespace" if why is None else f"host network namespace ({why})"
    signal.signal(signal.SIGINT, _raise_on_term)
    signal.signal(signal.SIGTERM, _raise_on_term)
    signal.signal(signal.SIGHUP, _raise_on_term)
    atexit.register(_kill_live)

    scratch = tempfile.TemporaryDirectory(prefix="bench-raft-", dir=args.dir)
    atexit.register(scratch.cleanup)
    root = Path(scratch.name)
    script = write_script(root)
    sides: list[Side] = []
    started = time.perf_counter()
    try:
        for rnd in range(1, args.rounds + 1):
            kinds = KINDS if rnd % 2 == 1 else KINDS[::-1]
            for kind in kinds:
                _log(f"[{time.perf_counter() - started:5.0f} s] round {rnd}: {kind} ...")
                sides.append(run_side(kind, rnd, args, root, script))
    except KeyboardInterrupt as e:
        _log(f"interrupted ({e or 'signal'}); every member started has been killed")
        return 130
    finally:
        _kill_live()
        scratch.cleanup()
    elapsed = time.perf_counter() - started
    method = (
        f"{args.rounds} rounds, a fresh cluster per side per round, side first swapped each"
        f" round; wrk {args.warmup:g} s warm-up + {args.duration:g} s timed per run;"
        f" {args.failovers} kill(s) per side per round; consul-tw -raft-multiplier"
        f" {RAFT_MULTIPLIER}, etcd --heartbeat-interval {ETCD_HEARTBEAT_MS}"
        f" --election-timeout {ETCD_ELECTION_MS}; data on {_fs_type(root)}; {where};"
        f" {_versions()}; {os.cpu_count()} CPUs; {elapsed:.0f} s in all"
    )
    print(report(sides, args, method))
    return 1 if any(s.error for s in sides) else 0
