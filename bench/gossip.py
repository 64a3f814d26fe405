"""
``python -m bench gossip``: join convergence, failure detection and gossip
bytes of N real consul-tw agents against N real ``serf agent`` processes.

For each pool size N (5, 10, 20) and each run, one pool of consul-tw client
agents and one pool of serf agents are measured the same way, one pool
after the other (the side that goes first swaps every run; only one pool
is alive at a time, as 20 Python agents plus 20 serf agents at once would
overload two cores).  Member 1 starts; then members 2..N-1, joining member
1 at start-up, and member N, joining no one; the benchmark waits until 1..N-1
all list each other alive.  Then, for one pool:

* **join**: member N is asked to join member 1 (consul-tw:
  ``PUT /v1/agent/join/<addr>``; serf: the ``join`` RPC, what ``serf join``
  sends), and the time from sending that request until *every* member
  lists all N members alive is taken.
* **steady state**: at least 5 s of watching, then (first run of each N
  only) a window with no polling at all, over which the pool's loopback
  traffic and the members' CPU time are counted (see
  :mod:`bench._gossip_net`).  The window opens no sooner than 31 s after
  member N started: memberlist's first periodic push/pull comes one to two
  intervals after start, so from then on any 30 s window holds exactly one
  push/pull per member on both sides.
* **failure detection**: member N/2+1 (neither the seed nor the joiner) is
  SIGKILLed, and the time until the first, and until every, surviving
  member lists it ``failed`` is taken; the benchmark then keeps watching
  for a settle period.
* **false failures**: every view polled during the whole run is checked
  for any member other than the killed one not ``alive``, and every
  member's log for ``serf: EventMemberFailed`` about any other member
  (``memberlist: Suspect X has failed`` lines about others are counted
  too, as false suspicions).

Views are polled every 100 ms (50 ms while a join spreads), each member in
turn, over one connection per member kept open for the whole run.  Both
sides run memberlist's LAN timings (probe 1 s, probe timeout 0.5 s,
suspicion multiplier 4, gossip every 200 ms to 3 nodes, push/pull every
30 s): consul-tw clients outside ``--dev`` and serf's default ``lan``
profile.  All on loopback, in a private network namespace when one can be
made.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import attrs

from bench._gossip_net import Capture, Counters, capture, enter_private_netns, lo_counters
from bench._gossip_pool import FAILED_EVENT, MARKED_LINE, SUSPECT_LINE, Member, Pool, View
from bench._stats import fmt_ratio, ratio, table

DESCRIPTION = "gossip join/failure-detection times and bytes/s of N agents vs N serf agents"

KINDS = ("consul-tw", "serf")
POLL_INTERVAL = 0.1
#: While a join spreads (a few hundred ms), views are polled more often.
JOIN_POLL_INTERVAL = 0.05


class MemberExited(RuntimeError):
    pass


class Timeout(RuntimeError):
    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)


@attrs.define
class Run:
    kind: str
    n: int
    rep: int
    join_call_s: float | None = None
    join_s: float | None = None
    detect_first_s: float | None = None
    detect_all_s: float | None = None
    #: (observer, member, status) seen in a polled view, member not the victim.
    false_views: set[tuple[str, str, str]] = attrs.Factory(set)
    #: (observer, member) from ``EventMemberFailed`` log lines, member not the victim.
    false_events: list[tuple[str, str]] = attrs.Factory(list)
    false_suspicions: list[tuple[str, str]] = attrs.Factory(list)
    #: For each member whose own suspicion of the victim timed out: how many
    #: other members had confirmed it by then (lifeguard shortens the
    #: timeout from 6x to 1x its minimum as confirmations arrive).
    confirmations: list[int] = attrs.Factory(list)
    window_s: float | None = None
    traffic: Counters | None = None
    capture: Capture | None = None
    cpu_s: list[float] = attrs.Factory(list)
    #: Counters over the whole run (polling included), for UDP drops.
    whole: Counters | None = None
    error: str | None = None

    @property
    def false_failures(self) -> int:
        """Distinct (observer, member) pairs wrongly shown or logged as failed."""
        pairs = {(o, m) for o, m, status in self.false_views if status == "failed"}
        return len(pairs | set(self.false_events))

    def bytes_per_agent_s(self) -> float | None:
        """Gossip bytes per agent per second: captured if possible, else all of lo."""
        if self.capture is not None:
            return self.captured_per_agent_s("bytes")
        if self.traffic is None or not self.window_s:
            return None
        return self.traffic.tx_bytes / self.window_s / self.n

    def captured_per_agent_s(self, field: str) -> float | None:
        if self.capture is None or not self.window_s:
            return None
        return float(getattr(self.capture, field)) / self.window_s / self.n

    def mean_frame(self, kind: str) -> float | None:
        """Mean size of a captured ``ping`` or ``ack`` frame."""
        if self.capture is None:
            return None
        frames = getattr(self.capture, f"{kind}_frames")
        return getattr(self.capture, f"{kind}_bytes") / frames if frames else None

    def per_agent_s(self, field: str, per: float = 1.0) -> float | None:
        """A lo/snmp counter per agent per second (per ``per`` seconds)."""
        if self.traffic is None or not self.window_s:
            return None
        return float(getattr(self.traffic, field)) * per / self.window_s / self.n

    def cpu_pct_per_agent(self) -> float | None:
        if not self.cpu_s or not self.window_s:
            return None
        return 100.0 * statistics.fmean(self.cpu_s) / self.window_s


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Watch:
    """Polls members' views, checking every one of them for false failures."""

    def __init__(self, run: Run, members: list[Member]) -> None:
        self.run = run
        self.members = members
        self.victim: str | None = None

    def _check(self, observer: Member, view: View) -> None:
        for name, status in view.items():
            if name != self.victim and status != "alive":
                self.run.false_views.add((observer.name, name, status))

    def poll(
        self,
        duration: float,
        until: Callable[[View], bool] | None = None,
        t0: float | None = None,
        observers: list[Member] | None = None,
        interval: float = POLL_INTERVAL,
    ) -> dict[str, float]:
        """
        Poll every live member each ``interval`` for up to ``duration``
        seconds.  With ``until``, return as soon as each of ``observers``
        (default: all live members) has once shown a view satisfying it,
        with the seconds from ``t0`` at which each first did; raise
        :class:`Timeout` if some had not by the deadline.
        """
        start = time.perf_counter()
        t0 = start if t0 is None else t0
        deadline = start + duration
        watched = [m for m in (observers or self.members) if not m.killed]
        first: dict[str, float] = {}
        last: dict[str, View | None] = {}
        while True:
            round_start = time.perf_counter()
            for member in self.members:
                if member.killed:
                    continue
                view = member.view()
                seen = time.perf_counter()
                last[member.name] = view
                if view is None:
                    if not member.proc.running():
                        raise MemberExited(
                            f"{member.kind} {member.name} exited:\n" + member.proc.log()[-3000:]
                        )
                    continue
                self._check(member, view)
                if until is not None and member.name not in first and until(view):
                    first[member.name] = seen - t0
            if until is not None and all(m.name in first for m in watched):
                return first
            now = time.perf_counter()
            if now >= deadline:
                if until is None:
                    return first
                missing = [m.name for m in watched if m.name not in first]
                raise Timeout(
                    f"{len(missing)} member(s) not there after {duration:.0f} s: "
                    + "; ".join(f"{name} sees {_odd(last.get(name))}" for name in missing),
                    missing,
                )
            time.sleep(max(0.0, min(round_start + interval, deadline) - now))


def _odd(view: View | None) -> str:
    """The part of a view worth showing when a wait timed out."""
    if view is None:
        return "nothing (not answering)"
    odd = {name: status for name, status in view.items() if status != "alive"}
    return f"{len(view)} members, not alive: {odd}"


def _all_alive(names: Sequence[str]) -> Callable[[View], bool]:
    return lambda view: all(view.get(name) == "alive" for name in names)


def _wait_answering(members: list[Member], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    for member in members:
        while member.view() is None:
            if not member.proc.running():
                raise MemberExited(
                    f"{member.kind} {member.name} exited at start-up:\n" + member.proc.log()[-3000:]
                )
            if time.perf_counter() > deadline:
                raise Timeout(f"{member.kind} {member.name} not answering after {timeout} s")
            time.sleep(0.05)


def _scan_logs(run: Run, members: list[Member], victim: str | None) -> None:
    for member in members:
        text = member.proc.log()
        for match in FAILED_EVENT.finditer(text):
            if match.group(1) != victim:
                run.false_events.append((member.name, match.group(1)))
        for match in MARKED_LINE.finditer(text):
            if match.group(1) == victim:
                run.confirmations.append(int(match.group(2)))
        for match in SUSPECT_LINE.finditer(text):
            if match.group(1) != victim:
                run.false_suspicions.append((member.name, match.group(1)))


def run_pool(kind: str, n: int, rep: int, args: argparse.Namespace, window: float) -> Run:
    run = Run(kind, n, rep)
    pool = Pool(kind)
    names = [f"node-{i:02d}" for i in range(1, n + 1)]
    victim: str | None = None
    at_start = lo_counters()
    try:
        seed = pool.start(names[0], join=None)
        _wait_answering([seed], args.start_timeout)
        for name in names[1 : n - 1]:
            pool.start(name, join=seed.gossip_addr)
        # The joiner starts with the others, alone until it is asked to join.
        last = pool.start(names[-1], join=None)
        last_started = time.perf_counter()
        _wait_answering(pool.members, args.start_timeout)
        watch = Watch(run, pool.members)
        watch.poll(
            args.start_timeout, until=_all_alive(names[: n - 1]), observers=pool.members[:-1]
        )

        # Join: the last member, already up, is asked to join the seed.
        t0 = time.perf_counter()
        last.join(seed.gossip_addr)
        run.join_call_s = time.perf_counter() - t0
        times = watch.poll(
            args.join_timeout, until=_all_alive(names), t0=t0, interval=JOIN_POLL_INTERVAL
        )
        run.join_s = max(times.values())

        # Steady state, then (first run only) a window with no polling at all,
        # once every member is old enough to be doing one push/pull per
        # interval (memberlist's first comes one to two intervals after start).
        quiet = args.settle
        if window > 0:
            quiet = max(quiet, args.steady_age - (time.perf_counter() - last_started))
        watch.poll(quiet)
        if window > 0:
            for member in pool.members:
                member.close()  # not even an idle connection during the window
            time.sleep(0.5)  # let the closes finish
            cpu0 = [m.proc.cpu_seconds() for m in pool.members]
            c0, w0 = lo_counters(), time.perf_counter()
            run.capture = capture({m.gossip_port for m in pool.members}, window)
            if run.capture is None:
                time.sleep(window)
            c1, w1 = lo_counters(), time.perf_counter()
            cpu1 = [m.proc.cpu_seconds() for m in pool.members]
            run.window_s = w1 - w0
            run.traffic = c1 - c0
            run.cpu_s = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
            watch.poll(0.0)  # one round: still everyone alive?

        # Failure detection: SIGKILL a member that is neither seed nor joiner.
        target = pool.members[n // 2]
        victim = watch.victim = target.name
        t0 = time.perf_counter()
        target.kill()
        times = watch.poll(
            args.detect_timeout,
            until=lambda view: view.get(target.name) == "failed",
            t0=t0,
        )
        run.detect_first_s = min(times.values())
        run.detect_all_s = max(times.values())
        watch.poll(args.settle_after)
    except (Timeout, MemberExited) as e:
        run.error = str(e).splitlines()[0][:400]
        _log(f"        {kind} N={n} run {rep}: {e}")
        missing = e.missing if isinstance(e, Timeout) else []
        for member in pool.members:
            if member.name in missing[:2]:
                tail = member.proc.log().splitlines()[-15:]
                _log(
                    f"        {kind} {member.name}'s last log lines:\n          "
                    + "\n          ".join(tail)
                )
    finally:
        try:
            run.whole = lo_counters() - at_start
            _scan_logs(run, pool.members, victim)
        finally:
            pool.kill_all()
    return run


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _fmt0(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _fmt2(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _med(values: Sequence[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return fmt_ratio(ratio(a, b))


def report_size(n: int, runs: list[Run]) -> str:
    by = {k: [r for r in runs if r.kind == k and r.n == n] for k in KINDS}
    reps = len(by["serf"])

    def row(
        label: str,
        get: Callable[[Run], float | None],
        fmt: Callable[[float | None], str],
        with_ratio: bool = True,
    ) -> list[str]:
        a = _med([get(r) for r in by["consul-tw"]])
        b = _med([get(r) for r in by["serf"]])
        return [label, fmt(a), fmt(b), _ratio(a, b) if with_ratio else "-"]

    def count(get: Callable[[Run], int]) -> list[str]:
        return [str(sum(get(r) for r in by[k])) for k in KINDS]

    agg = "median of " + str(reps) if reps > 1 else "1 run"
    rows = [
        row("join -> all see N alive (s)", lambda r: r.join_s, _fmt_s),
        row(
            "  join request itself (ms)",
            lambda r: None if r.join_call_s is None else r.join_call_s * 1e3,
            lambda v: "-" if v is None else f"{v:.1f}",
        ),
        row("kill -9 -> first marks failed (s)", lambda r: r.detect_first_s, _fmt_s),
        row("kill -9 -> all mark failed (s)", lambda r: r.detect_all_s, _fmt_s),
        row(
            "  peer confirmations at timeout",
            lambda r: max(r.confirmations) if r.confirmations else None,
            lambda v: "-" if v is None else f"{v:g}",
            with_ratio=False,
        ),
        ["false failures (all runs)", *count(lambda r: r.false_failures), "-"],
        ["false suspicions (all runs)", *count(lambda r: len(r.false_suspicions)), "-"],
        row(
            "gossip B/s per agent (run 1 window)",
            lambda r: r.bytes_per_agent_s(),
            lambda v: "-" if v is None else f"{v:.0f}",
        ),
        row("  UDP (probes, broadcasts) B/s", lambda r: r.captured_per_agent_s("udp_bytes"), _fmt0),
        row("  TCP (push/pull) B/s", lambda r: r.captured_per_agent_s("tcp_bytes"), _fmt0),
        row("  ping frame (mean B)", lambda r: r.mean_frame("ping"), _fmt0),
        row("  ack frame (mean B)", lambda r: r.mean_frame("ack"), _fmt0),
        row("  frames/s per agent", lambda r: r.captured_per_agent_s("frames"), _fmt2),
        row("  TCP connections/min per agent", lambda r: r.per_agent_s("tcp_opens", 60), _fmt2),
        row("  lo tx B/s per agent (IP, all)", lambda r: r.per_agent_s("tx_bytes"), _fmt0),
        [
            "UDP receive drops (all runs)",
            *count(lambda r: r.whole.udp_drops if r.whole else 0),
            "-",
        ],
        row("CPU per agent (% of a core)", lambda r: r.cpu_pct_per_agent(), _fmt2),
    ]
    return f"N = {n} ({agg} per side)\n" + table(["", "consul-tw", "serf", "consul-tw/serf"], rows)


def report(runs: list[Run], sizes: list[int], method: str) -> str:
    lines = []
    for n in sizes:
        by = {k: [r for r in runs if r.kind == k and r.n == n] for k in KINDS}
        det = [_med([r.detect_all_s for r in by[k]]) for k in KINDS]
        join = [_med([r.join_s for r in by[k]]) for k in KINDS]
        byt = [_med([r.bytes_per_agent_s() for r in by[k]]) for k in KINDS]
        ff = sum(r.false_failures for r in by["consul-tw"])
        lines.append(
            f"N={n:<2}  detection consul-tw/serf = {_ratio(*det)}"
            f"   join = {_ratio(*join)}   bytes/s = {_ratio(*byt)}"
            f"   consul-tw false failures = {ff}"
        )
    lines += ["", f"bench gossip: {method}", ""]
    for n in sizes:
        lines += [report_size(n, runs), ""]
    lines.append(
        "per run (s): kind N run: join | detect first / all (confirmations at timeout)"
        " | false failures | gossip B/s/agent"
    )
    for r in runs:
        b = r.bytes_per_agent_s()
        conf = ",".join(str(c) for c in r.confirmations) or "-"
        lines.append(
            f"  {r.kind:<9} {r.n:>2} {r.rep}: {_fmt_s(r.join_s)} | {_fmt_s(r.detect_first_s)}"
            f" / {_fmt_s(r.detect_all_s)} ({conf}) | {r.false_failures}"
            + ("" if b is None else f" | {b:.0f}")
            + (f"   ERROR: {r.error}" if r.error else "")
        )
    notable = [r for r in runs if r.false_views or r.false_events or r.false_suspicions]
    for r in notable:
        lines.append(
            f"  {r.kind} N={r.n} run {r.rep}: views {sorted(r.false_views)[:5]}"
            f" events {r.false_events[:5]} suspicions {r.false_suspicions[:5]}"
        )
    return "\n".join(lines)


def _run_all(args: argparse.Namespace, sizes: list[int], runs: list[Run], started: float) -> None:
    """Every pool of every size, the side going first swapped each run."""
    order_flip = 0
    for i, n in enumerate(sizes):
        reps = args.repeats if i == 0 else args.repeats_large
        for rep in range(1, reps + 1):
            kinds = KINDS if order_flip % 2 == 0 else KINDS[::-1]
            order_flip += 1
            for kind in kinds:
                window = args.window if rep == 1 else 0.0
                _log(f"[{time.perf_counter() - started:5.0f} s] {kind} N={n} run {rep} ...")
                run = run_pool(kind, n, rep, args, window)
                runs.append(run)
                _log(
                    f"        join {_fmt_s(run.join_s)} s, detect {_fmt_s(run.detect_first_s)}"
                    f"/{_fmt_s(run.detect_all_s)} s, false failures {run.false_failures}"
                    + (f", ERROR {run.error}" if run.error else "")
                )


def _raise_on_term(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gossip", description=DESCRIPTION)
    parser.add_argument("--sizes", default="5,10,20", help="pool sizes (default 5,10,20)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per side for the smallest size (default 3)"
    )
    parser.add_argument(
        "--repeats-large", type=int, default=2, help="runs per side for the other sizes (default 2)"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=30.0,
        help="seconds of byte counting, first run of each size (default 30: one push/pull period)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds watched after the join converged (default 5)",
    )
    parser.add_argument(
        "--steady-age",
        type=float,
        default=31.0,
        help="the byte window opens at least this many seconds after the last member"
        " started (default 31: serf's first push/pull is 30-60 s after start, then every"
        " 30 s, so any 30 s window from then on holds one per member)",
    )
    parser.add_argument(
        "--settle-after",
        type=float,
        default=8.0,
        help="seconds watched after everyone marked the victim failed (default 8)",
    )
    parser.add_argument("--start-timeout", type=float, default=90.0)
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=60.0,
        help="seconds (default 60: a missed broadcast is repaired by the"
        " next push/pull, every 30 s)",
    )
    parser.add_argument("--detect-timeout", type=float, default=90.0)
    parser.add_argument(
        "--no-netns",
        action="store_true",
        help="stay in the host's network namespace (bytes then include any other loopback traffic)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(n < 4 for n in sizes):
        parser.error("pool sizes must be at least 4 (seed, joiner, victim, one more)")

    if args.no_netns:
        where = "host network namespace (--no-netns; lo tx counts all loopback traffic)"
    else:
        why = enter_private_netns()
        where = (
            "private network namespace"
            if why is None
            else f"host network namespace ({why}; lo tx counts all loopback traffic)"
        )
    # Ctrl-C, kill and hang-up all unwind through run_pool's cleanup (SIGINT
    # too when started from a shell that ignores it for background jobs).
    signal.signal(signal.SIGINT, _raise_on_term)
    signal.signal(signal.SIGTERM, _raise_on_term)
    signal.signal(signal.SIGHUP, _raise_on_term)

    runs: list[Run] = []
    started = time.perf_counter()
    try:
        _run_all(args, sizes, runs, started)
    except KeyboardInterrupt as e:
        _log(f"interrupted ({e or 'signal'}); every member started has been killed")
        return 130
    elapsed = time.perf_counter() - started
    windows = [r for r in runs if r.window_s]
    counted = (
        "gossip bytes = frames to/from the pool's gossip ports captured on lo"
        if all(r.capture is not None for r in windows)
        else "no packet socket: gossip bytes = lo tx counters"
    )
    method = (
        f"pools one after the other, side first swapped each run; {where}; {counted};"
        f" poll every {POLL_INTERVAL * 1000:.0f} ms ({JOIN_POLL_INTERVAL * 1000:.0f} ms"
        f" while a join spreads); window {args.window:.0f} s;"
        f" {os.cpu_count()} CPUs; {elapsed:.0f} s in all"
    )
    print(report(runs, sizes, method))
    return 1 if any(r.error for r in runs) else 0
