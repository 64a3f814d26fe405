"""
The write load of ``bench raft``: wrk for throughput and latency, a Python
retry loop for failover, and py-spy for a profile of the leader.

**wrk** (Debian's package) drives both clusters with the same Lua script:
HTTP/1.1 keep-alive connections, each sending its next write as soon as the
previous answer is in (a closed loop), every write to a key of its own.
For consul-tw that is ``PUT /v1/kv/<key>`` with the value as the body; for
etcd ``POST /v3/kv/put`` with ``{"key": base64, "value": base64}``, what
etcd's HTTP/JSON gateway takes.  wrk is C: a Python client with 32 threads
would need a good part of one of the two cores to keep 32 connections busy,
which would cap the faster side and take CPU from the servers; wrk needs
far less, the same for both sides.  Latency is wrk's own, per request, from
writing it to having read the whole answer.

**Failover** needs decisions wrk cannot make (which member to try next), so
it is a plain Python loop: one write at a time, a short timeout, and on any
failure the next live member.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import attrs

from bench._raft_clusters import Cluster, Member

#: Bytes of every value written, as the issue asks ("a ~100-byte body").
VALUE_SIZE = 100
#: wrk's line with the figures of a run, printed by the script's ``done``.
RESULT_PREFIX = "BENCHJSON "

WRK_SCRIPT = r"""
-- bench raft: one durable write per request, each to a key of its own.
local kind, prefix = "consul", "bench/"
local value = string.rep("v", VALUE_SIZE)
local counter = 0
local body_value = ""
local next_id = 0
id = 0

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
      .. (b and alphabet:sub(c3 + 1, c3 + 1) or "=")
      .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
end

function init(args)
  kind, prefix = args[1], args[2]
  body_value = b64(value)
end

function request()
  counter = counter + 1
  local key = prefix .. id .. "-" .. counter
  if kind == "consul" then
    return wrk.format("PUT", "/v1/kv/" .. key, nil, value)
  end
  local body = '{"key":"' .. b64(key) .. '","value":"' .. body_value .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT_PREFIX{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
""".replace("VALUE_SIZE", str(VALUE_SIZE)).replace("RESULT_PREFIX", RESULT_PREFIX)


@attrs.frozen
class WrkResult:
    """One timed wrk run against one member."""

    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float

    @property
    def writes_per_s(self) -> float:
        """Acknowledged writes a second: answers that were errors do not count."""
        return (self.requests - self.errors) / self.duration_s


def write_script(directory: Path) -> Path:
    path = directory / "raft-writes.lua"
    path.write_text(WRK_SCRIPT, encoding="utf-8")
    return path


def run_wrk(
    script: Path, cluster: Cluster, target: Member, clients: int, seconds: float, prefix: str
) -> WrkResult:
    """
    ``clients`` connections (wrk ``-c``, on at most 2 threads) writing to
    ``target`` for ``seconds``; non-2xx answers, socket errors and timeouts
    count as errors, not writes.
    """
    threads = min(clients, 2)
    argv = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds:g}s"]
    argv += ["--timeout", "10s", "-s", str(script), f"http://{target.host}:{target.http_port}"]
    argv += ["--", cluster.wrk_kind, prefix]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result ({done.returncode}): {done.stdout}{done.stderr}")
    r = json.loads(line[len(RESULT_PREFIX) :])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return WrkResult(
        requests=r["requests"],
        duration_s=r["duration_us"] / 1e6,
        errors=r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"],
        p50_ms=r["p50_us"] / 1e3,
        p90_ms=r["p90_us"] / 1e3,
        p99_ms=r["p99_us"] / 1e3,
        max_ms=r["max_us"] / 1e3,
        client_cpu_s=cpu,
    )


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (done.stdout + done.stderr).split(" Copyright")[0].strip()


# -- failover ------------------------------------------------------------------


@attrs.define
class Failover:
    """One kill -9 of the leader and what the writing client saw."""

    killed: str
    #: Seconds from the kill to the next acknowledged write.
    recovery_s: float | None = None
    new_leader: str | None = None
    failed_attempts: int = 0
    #: Latency of the last acknowledged write before the kill (a sanity figure).
    before_ms: float | None = None
    #: Why attempts after the kill failed: reason -> count.
    reasons: collections.Counter[str] = attrs.Factory(collections.Counter)
    error: str | None = None


class Writer:
    """
    One write at a time over a kept-alive connection per member; a failure
    (timeout, refused, reset, error answer) closes that connection and moves
    on to the next live member.
    """

    def __init__(self, cluster: Cluster, timeout: float) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self.conns: dict[str, http.client.HTTPConnection] = {}
        self.n = 0

    def _conn(self, member: Member) -> http.client.HTTPConnection:
        conn = self.conns.get(member.name)
        if conn is None:
            conn = http.client.HTTPConnection(member.host, member.http_port, timeout=self.timeout)
            self.conns[member.name] = conn
        return conn

    def attempt(self, member: Member) -> str | None:
        """One write to ``member``: None if acknowledged, else why not (short)."""
        self.n += 1
        method, path, body = self.cluster.write(f"failover/{self.n}", b"f" * VALUE_SIZE)
        conn = self._conn(member)
        try:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            answer = resp.read()
            why = None
            if not self.cluster.write_ok(resp.status, answer):
                why = f"HTTP {resp.status} {answer[:60].decode(errors='replace').strip()}"
        except (OSError, http.client.HTTPException) as e:
            why = type(e).__name__
        if why is not None:
            conn.close()
            self.conns.pop(member.name, None)
        return why

    def next_member(self, current: Member) -> Member:
        members = self.cluster.members
        start = members.index(current)
        for step in range(1, len(members) + 1):
            candidate = members[(start + step) % len(members)]
            if candidate.alive:
                return candidate
        raise RuntimeError("no live member left")

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


def failover_once(
    cluster: Cluster, steady_s: float, timeout: float, min_gap: float, give_up_s: float
) -> Failover:
    """
    Write steadily to the leader for ``steady_s``, kill -9 it between two
    writes, and keep writing (retrying on the next live member after any
    failure, at most one attempt per ``min_gap``) until one is acknowledged.
    """
    leader = cluster.wait_leader(30.0)
    writer = Writer(cluster, timeout)
    result = Failover(killed=leader.name)
    target = leader
    try:
        kill_at = time.perf_counter() + steady_s
        while time.perf_counter() < kill_at:
            t0 = time.perf_counter()
            if writer.attempt(target) is None:
                result.before_ms = (time.perf_counter() - t0) * 1e3
            else:
                target = writer.next_member(target)
        t_kill = time.perf_counter()
        leader.kill()
        target = writer.next_member(leader)
        while True:
            t0 = time.perf_counter()
            why = writer.attempt(target)
            if why is None:
                result.recovery_s = time.perf_counter() - t_kill
                break
            result.failed_attempts += 1
            result.reasons[f"{target.name}: {why}"] += 1
            if time.perf_counter() - t_kill > give_up_s:
                result.error = f"no acknowledged write {give_up_s:.0f} s after the kill"
                break
            target = writer.next_member(target)
            time.sleep(max(0.0, t0 + min_gap - time.perf_counter()))
    finally:
        writer.close()
    found = cluster.leader()
    result.new_leader = found.name if found is not None else None
    return result


def fsync_ms(directory: Path, count: int = 50) -> float:
    """
    Median time of one ``fdatasync`` after appending 200 bytes to a file in
    ``directory``: the disk's own floor under a durable write, measured
    beside each side's round (the disk is shared too).
    """
    path = directory / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"p" * 200)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e3


# -- profiling -----------------------------------------------------------------


def ensure_py_spy() -> str:
    """The py-spy command, installed with pip (its ordinary client) if missing."""
    beside = Path(sys.executable).parent / "py-spy"
    if not beside.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=600
        )
    return str(beside)


def start_profile(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """
    Sample ``pid`` for ``seconds`` (100 Hz, without pausing it) into
    collapsed stacks, the format from which self time is a simple count.
    """
    argv = [py_spy, "record", "--nonblocking", "-r", "100", "-d", f"{seconds:g}"]
    argv += ["--format", "raw", "-o", str(out), "-p", str(pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    """``func (path/to/mod.py:12)`` -> ``func (mod.py)``: self time is per function."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match.group("file")
    parts = path.split("/")
    for anchor in ("consul_tw", "twisted", "sqlite3", "json", "http"):
        if anchor in parts:
            path = "/".join(parts[parts.index(anchor) :])
            break
    else:
        path = parts[-1]
    return f"{match.group('func')} ({path})"


def profile_top(collapsed: Path, n: int = 10) -> tuple[int, list[tuple[str, int]], list[str]]:
    """
    From py-spy's collapsed stacks: the sample count, the ``n`` functions
    with the most self time (the leaf frame of a sample), and the same
    ``n`` by inclusive time (on the stack at all), as printable lines.
    """
    self_counts: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    top_incl = [
        f"{100 * c / total:5.1f}%  {name}" for name, c in incl.most_common() if "consul_tw" in name
    ][:n]
    return total, self_counts.most_common(n), top_incl
