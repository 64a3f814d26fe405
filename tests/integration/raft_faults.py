"""
Fault scenarios against a real 3-server Raft cluster, checked for linearizability.

Run as a module inside a private network namespace, so that partitions
(policy-routing blackhole rules, see :mod:`tests.integration.raft_cluster`)
touch nothing but this scenario's loopback::

    unshare -n python -m tests.integration.raft_faults crashes --json out.json --workdir DIR

The test process must share the namespace with the agents to reach them,
which is why each scenario is a separate driver process rather than code
inside pytest: :mod:`tests.integration.test_raft_faults` starts one driver
per scenario and asserts on the JSON it writes.

While faults are injected, concurrent clients (threads, one ``http.client``
connection per operation) write unique values, read in Consul's default and
``?consistent`` modes and compare-and-set on a few keys, against every
server.  Each operation is recorded in a
:class:`~consul_tw.testing.linearizability.History`; at the end every
server is asked for every key with ``?consistent`` and the whole history,
final reads included, goes through
:func:`~consul_tw.testing.linearizability.check`.  So "every acknowledged
write survives" and "no stale read, in either mode" are one verdict.

How outcomes are classified, and why:

- A request whose TCP connection could not even be opened was never seen
  by a server: ``fail`` (it has no effect).
- Once the request is sent, a timeout, a reset or a 5xx is ``unknown`` for
  a write or CAS: Consul answers 500 both when no leader was found (not
  applied) and when leadership was lost while committing (maybe applied).
  Writes answered ``true`` (and CAS answered ``false``) are ``ok``.
- Reads never change anything, so a read that did not answer 200/404 is
  simply ``fail``.
- A CAS is sent with ``?cas=<ModifyIndex>`` taken from a read just before
  it.  Every value written is unique, so "the index is unchanged" and "the
  value is unchanged" are the same condition, which is the register CAS
  (``expected`` value) the checker models.

The JSON result carries ``ok``, the failed expectations (``errors``), counts
of operations by outcome, timings (``new_leader_after_kill_s`` ...), the
checker's explanation, the path of the saved history (``history.jsonl``)
and, when something failed, the tail of every agent log.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import random
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from consul_tw.testing.linearizability import History, check, to_jsonl
from tests.integration.raft_cluster import (
    Partitions,
    RaftCluster,
    in_private_netns,
    setup_private_loopback,
    wait_for_new_leader,
)

#: No request may stall a client longer than this (a partitioned or stopped server would).
CLIENT_TIMEOUT = 5.0
#: Bound on the first election of a freshly started cluster (slow, loaded CI machines).
BOOTSTRAP_TIMEOUT = 60.0
#: A new leader must appear this soon after the old one dies (election timeout is 1-2 s).
NEW_LEADER_DEADLINE = 15.0
#: All servers agree again (restarted one caught up, peers complete).
CONVERGE_TIMEOUT = 45.0
#: The checker's search budget.
CHECK_TIMEOUT = 60.0
#: Leader lease at -raft-multiplier 1 is 0.5 s; reads the isolated leader answers later than
#: this after the cut (and before the heal) mean it served without a valid lease.
LEASE_GRACE = 1.5

SCENARIOS: dict[str, Callable[[Run], None]] = {}


class NotSent(Exception):
    """The connection could not be opened: no server saw the request."""


class Sent(Exception):
    """The request may have reached the server, but no answer came back."""


def call(
    host: str, port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    """
    One HTTP request on a fresh connection.  Opening the connection is
    separate from sending, so a refusal (dead server) is told apart from an
    answer that never came (the request may have been applied).
    """
    conn = http.client.HTTPConnection(host, port, timeout=CLIENT_TIMEOUT)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise NotSent(f"connect: {e!r}") from None
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as e:
            raise Sent(f"{type(e).__name__}: {e}") from None
    finally:
        conn.close()


@attrs.frozen
class OpMeta:
    """What the history does not keep: which server answered, in which mode, and how."""

    server: int
    mode: str
    detail: str = ""


@attrs.define
class Recorder:
    """A :class:`History` plus, per operation, the server, the read mode and the raw answer."""

    history: History = attrs.field(factory=History)
    meta: dict[int, OpMeta] = attrs.field(factory=dict)
    anomalies: list[str] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def begin(self, client: str, server: int, mode: str, key: str, kind: Any, **kw: Any) -> int:
        token = self.history.invoke(f"{client}@s{server + 1}/{mode}", key, kind, **kw)
        with self._lock:
            self.meta[token] = OpMeta(server, mode)
        return token

    def _detail(self, token: int, detail: str) -> None:
        with self._lock:
            self.meta[token] = attrs.evolve(self.meta[token], detail=detail)

    def ok(self, token: int, result: Any = None, detail: str = "200") -> None:
        self.history.complete(token, result)
        self._detail(token, detail)

    def fail(self, token: int, detail: str) -> None:
        self.history.fail(token)
        self._detail(token, detail)

    def unknown(self, token: int, detail: str) -> None:
        self.history.unknown(token)
        self._detail(token, detail)

    def anomaly(self, text: str) -> None:
        with self._lock:
            self.anomalies.append(text)


@attrs.define
class Run:
    """One scenario's cluster, recorder, findings and timings."""

    workdir: Path
    cluster: RaftCluster
    rec: Recorder = attrs.field(factory=Recorder)
    errors: list[str] = attrs.field(factory=list)
    timings: dict[str, float | str] = attrs.field(factory=dict)
    info: dict[str, Any] = attrs.field(factory=dict)
    events: list[str] = attrs.field(factory=list)
    started: float = attrs.field(factory=time.monotonic)
    rng: random.Random = attrs.field(factory=random.Random)
    #: Per client label (one thread each), for unique values.
    _counter: Counter[str] = attrs.field(factory=Counter)

    def note(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:7.2f}s] {text}"
        self.events.append(line)
        print(line, flush=True)

    def expect(self, condition: bool, text: str) -> None:
        if not condition:
            self.errors.append(text)
            self.note(f"FAILED: {text}")

    def host_port(self, i: int) -> tuple[str, int]:
        ports = self.cluster.agents[i].ports
        assert ports is not None
        return self.cluster.ip(i), ports.http

    # -- recorded KV operations -------------------------------------------------------

    def read(self, client: str, i: int, key: str, mode: str) -> tuple[str | None, int] | None:
        """A recorded GET: (value or None, ModifyIndex or 0) when it answered, else None."""
        query = {"default": "", "consistent": "?consistent", "stale": "?stale"}[mode]
        token = self.rec.begin(client, i, mode, key, "read")
        try:
            status, body = call(*self.host_port(i), "GET", f"/v1/kv/{key}{query}")
        except (NotSent, Sent) as e:
            self.rec.fail(token, str(e))
            return None
        if status == 404:
            self.rec.ok(token, None, "404")
            return None, 0
        if status != 200:
            self.rec.fail(token, f"{status} {body[:200]!r}")
            return None
        value, index = _entry(body, key)
        self.rec.ok(token, value)
        return value, index

    def write(self, client: str, i: int, key: str, value: str) -> str:
        """A recorded PUT; the outcome ("ok", "fail", "unknown")."""
        token = self.rec.begin(client, i, "write", key, "write", value=value)
        return self._put(token, i, f"/v1/kv/{key}", value, cas=False)

    def cas(self, client: str, i: int, key: str, expected: str | None, index: int) -> str:
        value = self.unique(client)
        token = self.rec.begin(client, i, "cas", key, "cas", value=value, expected=expected)
        return self._put(token, i, f"/v1/kv/{key}?cas={index}", value, cas=True)

    def _put(self, token: int, i: int, path: str, value: str, cas: bool) -> str:
        try:
            status, body = call(*self.host_port(i), "PUT", path, value.encode())
        except NotSent as e:
            self.rec.fail(token, str(e))
            return "fail"
        except Sent as e:
            self.rec.unknown(token, str(e))
            return "unknown"
        answer = body.strip()
        if status == 200 and answer in (b"true", b"false"):
            if cas:
                self.rec.ok(token, answer == b"true", answer.decode())
                return "ok"
            if answer == b"true":
                self.rec.ok(token, None, "true")
                return "ok"
            self.rec.anomaly(f"plain PUT {path} on s{i + 1} answered false")
        if status < 500 and status != 200:
            self.rec.anomaly(f"PUT {path} on s{i + 1}: {status} {body[:200]!r}")
        self.rec.unknown(token, f"{status} {body[:200]!r}")
        return "unknown"

    def unique(self, client: str) -> str:
        self._counter[client] += 1  # one thread per client label
        return f"{client}-{self._counter[client]:05d}"

    # -- phases --------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Let the clients run for a while."""
        time.sleep(seconds)  # real-time: the scenario runs against real processes

    def final_reads(self, keys: list[str], timeout: float = 30.0) -> dict[str, str | None]:
        """
        Every key, from every server, with ``?consistent`` (recorded, so the
        checker verifies that acknowledged writes survived), and each server's
        own copy with ``?stale``, until all of them agree.  They may need a few
        rounds: a write whose outcome was unknown can still land after the
        clients stopped (a request forwarded into a partition is delivered
        when TCP retransmits after the heal), and that is legal.
        """
        final: dict[str, str | None] = {}
        late: dict[str, list[Any]] = {}
        deadline = time.monotonic() + timeout
        for key in keys:
            rounds: list[Any] = []
            while True:
                answers = [
                    self.read("final", i, key, "consistent") for i in range(self.cluster.size)
                ]
                consistent = [None if a is None else a[0] for a in answers]
                stale = [_stale_read(self, i, key) for i in range(self.cluster.size)]
                rounds.append({"consistent": consistent, "stale": stale})
                if None not in answers and len({*consistent, *stale}) == 1:
                    final[key] = consistent[0]
                    break
                if time.monotonic() > deadline:
                    self.expect(False, f"servers never agreed on {key!r}: {rounds[-3:]}")
                    break
                time.sleep(0.2)  # real-time: wait for real replicas
            if len(rounds) > 1:
                late[key] = rounds
        self.info["final_values"] = final
        if late:
            self.info["final_reads_needed_rounds"] = late
        self.info["final_values_from_unknown_writes"] = self._unknown_origins(final)
        return final

    def _unknown_origins(self, final: dict[str, str | None]) -> list[str]:
        """Final values written by operations whose outcome was unknown (late landings)."""
        found = []
        for op in self.rec.history.operations():
            if op.kind in ("write", "cas") and final.get(op.key, object()) == op.value:
                if op.outcome != "ok":
                    age = time.monotonic() - op.invoked
                    found.append(
                        f"{op.describe()} ({self.rec.meta[op.id]}, invoked {age:.1f} s ago)"
                    )
        return found


def _entry(body: bytes, key: str) -> tuple[str | None, int]:
    for entry in json.loads(body):
        if entry.get("Key") == key:
            raw = entry.get("Value")
            value = base64.b64decode(raw).decode() if raw is not None else ""
            return value, int(entry["ModifyIndex"])
    return None, 0


def _stale_read(run: Run, i: int, key: str) -> Any:
    """Server ``i``'s own copy of ``key`` (not recorded: ?stale reads are not linearizable)."""
    try:
        status, body = call(*run.host_port(i), "GET", f"/v1/kv/{key}?stale")
    except (NotSent, Sent) as e:
        return f"<error {e}>"
    if status == 404:
        return None
    if status != 200:
        return f"<{status}>"
    return _entry(body, key)[0]


@attrs.define
class Clients:
    """Client threads doing random writes, reads and CAS on ``keys`` against random servers."""

    run: Run
    count: int
    keys: list[str]
    targets: list[int]
    stop_event: threading.Event = attrs.field(factory=threading.Event)
    threads: list[threading.Thread] = attrs.field(factory=list)

    def start(self) -> None:
        for n in range(self.count):
            rng = random.Random(self.run.rng.random())
            thread = threading.Thread(target=self._loop, args=(f"c{n:02d}", rng), daemon=True)
            self.threads.append(thread)
            thread.start()
        self.run.note(f"{self.count} clients started on {len(self.keys)} keys")

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT * 3)
            self.run.expect(not thread.is_alive(), f"client {thread.name} did not stop")
        self.run.note(f"clients stopped; {len(self.run.rec.history)} operations recorded")

    def _loop(self, client: str, rng: random.Random) -> None:
        run = self.run
        try:
            while not self.stop_event.is_set():
                i = rng.choice(self.targets)
                key = rng.choice(self.keys)
                dice = rng.random()
                if dice < 0.3:
                    outcome = run.write(client, i, key, run.unique(client))
                elif dice < 0.5:
                    outcome = "ok" if run.read(client, i, key, "default") else "fail"
                elif dice < 0.7:
                    outcome = "ok" if run.read(client, i, key, "consistent") else "fail"
                else:
                    got = run.read(client, i, key, rng.choice(["default", "consistent"]))
                    outcome = "fail"
                    if got is not None:
                        outcome = run.cas(client, i, key, got[0], got[1])
                # A dead server refuses at once; do not spin on it.
                self.stop_event.wait(rng.uniform(0.0, 0.03) + (0.1 if outcome == "fail" else 0))
        except Exception:
            run.errors.append(f"client {client} crashed:\n{traceback.format_exc()}")


def scenario(func: Callable[[Run], None]) -> Callable[[Run], None]:
    SCENARIOS[func.__name__.replace("_", "-")] = func
    return func


def _start(run: Run) -> int:
    t0 = time.monotonic()
    run.cluster.start()
    leader = run.cluster.wait_for_leader(BOOTSTRAP_TIMEOUT)
    run.timings["first_leader_s"] = round(time.monotonic() - t0, 2)
    run.note(f"cluster up: leader s{leader + 1} after {run.timings['first_leader_s']} s")
    return leader


def _keys(n: int) -> list[str]:
    return [f"fault/k{j:02d}" for j in range(n)]


@scenario
def bootstrap(run: Run) -> None:
    """-bootstrap-expect 3 elects exactly one leader that everyone names; peers list all three."""
    cluster = run.cluster
    leader = _start(run)
    views = {f"s{i + 1}": cluster.leader_seen_by(i) for i in range(cluster.size)}
    peers = {f"s{i + 1}": sorted(cluster.peers_seen_by(i) or []) for i in range(cluster.size)}
    run.info.update(leader=f"s{leader + 1}", leader_views=views, peers=peers)
    run.expect(len(set(views.values())) == 1, f"servers disagree on the leader: {views}")
    everyone = sorted(cluster.raft_addr(i) for i in range(cluster.size))
    run.expect(all(p == everyone for p in peers.values()), f"peers incomplete: {peers}")
    try:
        status, body = call(*run.host_port(leader), "GET", "/v1/operator/raft/configuration")
    except (NotSent, Sent) as e:
        status, body = 0, repr(e).encode()
    if status == 404:
        run.info["raft_configuration"] = "not available (404), skipped"
    else:
        run.expect(status == 200, f"/v1/operator/raft/configuration: {status} {body[:300]!r}")
        if status == 200:
            servers = json.loads(body).get("Servers", [])
            run.info["raft_configuration"] = servers
            leaders = [s for s in servers if s.get("Leader")]
            run.expect(len(servers) == cluster.size, f"raft configuration: {servers}")
            run.expect(len(leaders) == 1, f"raft configuration leaders: {leaders}")
            run.expect(all(s.get("Voter") for s in servers), f"non-voters: {servers}")
            addrs = sorted(s.get("Address") for s in servers)
            run.expect(addrs == everyone, f"raft configuration addresses {addrs} != {everyone}")
    # One write through each follower, then consistent reads everywhere.
    key = "fault/bootstrap"
    for i in range(cluster.size):
        outcome = run.write("boot", i, key, run.unique("boot"))
        run.expect(outcome == "ok", f"write through s{i + 1}: {outcome}")
    run.final_reads([key])


@scenario
def crashes(run: Run) -> None:
    """kill -9 of the leader and of a follower, restarts, and a SIGSTOPped leader, under load."""
    cluster = run.cluster
    keys = _keys(10)
    leader = _start(run)
    clients = Clients(run, 10, keys, list(range(cluster.size)))
    clients.start()
    try:
        run.pause(3)
        # 1. kill -9 the leader; the other two elect a new one.
        old = leader
        survivors = [i for i in range(cluster.size) if i != old]
        cluster.kill9(old)
        t_kill = time.monotonic()
        run.note(f"kill -9 leader s{old + 1}")
        try:
            leader, dt = wait_for_new_leader(cluster, old, survivors, NEW_LEADER_DEADLINE, t_kill)
            run.timings["new_leader_after_kill_s"] = round(dt, 2)
            run.note(f"new leader s{leader + 1} after {dt:.2f} s")
        except AssertionError as e:
            run.expect(False, f"after kill -9 of leader s{old + 1}: {e}")
        run.pause(3)
        t0 = time.monotonic()
        cluster.restart(old)
        leader = cluster.wait_for_leader(CONVERGE_TIMEOUT)
        run.timings["rejoin_after_leader_restart_s"] = round(time.monotonic() - t0, 2)
        run.note(f"s{old + 1} restarted; all agree on s{leader + 1}")
        run.pause(2)
        # 2. kill -9 a follower; the leader keeps its majority.
        follower = next(i for i in range(cluster.size) if i != leader)
        cluster.kill9(follower)
        run.note(f"kill -9 follower s{follower + 1}")
        run.pause(3)
        still = cluster.agreed_leader(full_peers=False)
        run.info["leader_after_follower_kill"] = None if still is None else f"s{still + 1}"
        t0 = time.monotonic()
        cluster.restart(follower)
        leader = cluster.wait_for_leader(CONVERGE_TIMEOUT)
        run.timings["rejoin_after_follower_restart_s"] = round(time.monotonic() - t0, 2)
        run.note(f"s{follower + 1} restarted; all agree on s{leader + 1}")
        run.pause(2)
        # 3. SIGSTOP the leader for 3 s: it wakes up believing it still leads.
        old = leader
        others = [i for i in range(cluster.size) if i != old]
        cluster.sigstop(old)
        t_stop = time.monotonic()
        run.note(f"SIGSTOP leader s{old + 1}")
        try:
            new, dt = wait_for_new_leader(cluster, old, others, 3.0, t_stop)
            run.timings["new_leader_during_sigstop_s"] = round(dt, 2)
            run.note(f"new leader s{new + 1} after {dt:.2f} s while s{old + 1} is stopped")
        except AssertionError:
            run.timings["new_leader_during_sigstop_s"] = "none within 3 s"
        time.sleep(max(0.0, t_stop + 3.0 - time.monotonic()))  # real-time: hold the stop
        cluster.sigcont(old)
        t_cont = time.monotonic()
        run.note(f"SIGCONT s{old + 1}")
        t0 = time.monotonic()
        leader = cluster.wait_for_leader(CONVERGE_TIMEOUT)
        run.timings["converged_after_sigcont_s"] = round(time.monotonic() - t0, 2)
        run.note(f"all agree on s{leader + 1}")
        run.pause(3)
    finally:
        clients.stop()
    # What the frozen leader did with requests that queued up while it was stopped: it wakes
    # up still believing it leads, so any read it then served from its own state must have
    # been checked against its lease (the checker has the final word on staleness).
    frozen = Counter(
        f"{op.kind}[{run.rec.meta[op.id].mode}]:{op.outcome}"
        for op in run.rec.history.operations()
        if run.rec.meta[op.id].server == old and t_stop <= op.invoked < t_cont
    )
    run.info["ops_sent_to_stopped_leader"] = dict(frozen)
    cluster.wait_for_leader(CONVERGE_TIMEOUT)
    run.final_reads(keys)


@scenario
def restart_all(run: Run) -> None:
    """200 acknowledged keys survive kill -9 of every server and a restart from the data dirs."""
    cluster = run.cluster
    _start(run)
    target = 200
    acked: dict[str, str] = {}
    attempted: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()
    counter = iter(range(10**6))

    def writer(client: str, rng: random.Random) -> None:
        while not stop.is_set():
            with lock:
                key = f"fault/r{next(counter):04d}"
            value = run.unique(client)
            attempted[key] = value
            outcome = run.write(client, rng.randrange(cluster.size), key, value)
            if outcome == "ok":
                with lock:
                    acked[key] = value
                    if len(acked) >= target:
                        enough.set()
            elif outcome == "fail":
                stop.wait(0.05)  # a dead server refuses at once; do not spin on it

    t0 = time.monotonic()
    threads = [
        threading.Thread(target=writer, args=(f"w{n}", random.Random(n)), daemon=True)
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    enough.wait(120)
    run.expect(enough.is_set(), f"only {len(acked)} writes acknowledged in 120 s")
    # Kill while writes are still in flight: those become unknown, the acknowledged must stay.
    for i in range(cluster.size):
        cluster.kill9(i)
    stop.set()
    run.timings["write_phase_s"] = round(time.monotonic() - t0, 2)
    run.note(f"{len(acked)} writes acknowledged, {len(attempted)} attempted; kill -9 all")
    for thread in threads:
        thread.join(CLIENT_TIMEOUT * 3)
    t0 = time.monotonic()
    for i in range(cluster.size):
        cluster.restart(i)
    leader = cluster.wait_for_leader(BOOTSTRAP_TIMEOUT)
    run.timings["leader_after_restart_all_s"] = round(time.monotonic() - t0, 2)
    run.note(f"restarted; leader s{leader + 1} after {run.timings['leader_after_restart_all_s']} s")
    keys = sorted(attempted)
    for i in range(cluster.size):
        found = _recurse_read(run, i, keys)
        if found is None:
            run.expect(False, f"s{i + 1}: ?recurse&consistent read failed")
            continue
        lost = {k: v for k, v in acked.items() if found.get(k) != v}
        run.expect(
            not lost,
            f"s{i + 1}: {len(lost)} acknowledged writes missing or changed after restart, "
            f"e.g. {dict(list(lost.items())[:5])} (found {[found.get(k) for k in list(lost)[:5]]})",
        )
    run.info["acknowledged_keys"] = len(acked)
    run.info["attempted_keys"] = len(attempted)
    run.info["unacknowledged_present"] = sum(
        1 for k in attempted if k not in acked and _stale_read(run, leader, k) is not None
    )


def _recurse_read(run: Run, i: int, keys: list[str]) -> dict[str, str] | None:
    """One ``?recurse&consistent`` read of the prefix, recorded as a read of each key."""
    tokens = {k: run.rec.begin("recurse", i, "consistent", k, "read") for k in keys}
    try:
        status, body = call(*run.host_port(i), "GET", "/v1/kv/fault/?recurse&consistent")
    except (NotSent, Sent) as e:
        for token in tokens.values():
            run.rec.fail(token, str(e))
        return None
    if status not in (200, 404):
        for token in tokens.values():
            run.rec.fail(token, f"{status} {body[:200]!r}")
        return None
    found: dict[str, str] = {}
    if status == 200:
        for entry in json.loads(body):
            raw = entry.get("Value")
            found[entry["Key"]] = base64.b64decode(raw).decode() if raw is not None else ""
    for key, token in tokens.items():
        run.rec.ok(token, found.get(key), str(status))
    return found


@scenario
def partition(run: Run) -> None:
    """The leader is cut off from both followers for 10 s; no stale read on either side."""
    cluster = run.cluster
    keys = _keys(8)
    old = _start(run)
    followers = [i for i in range(cluster.size) if i != old]
    # More clients than elsewhere: those that pick the isolated leader stall for CLIENT_TIMEOUT.
    clients = Clients(run, 16, keys, list(range(cluster.size)))
    clients.start()
    partitions = Partitions()
    views: list[tuple[float, str | None]] = []
    watching = threading.Event()

    def watch_old_leader() -> None:
        """When does the isolated leader stop calling itself leader?"""
        while not watching.is_set():
            views.append((time.monotonic(), cluster.leader_seen_by(old)))
            watching.wait(0.05)

    try:
        run.pause(3)
        t_cut = time.monotonic()
        partitions.isolate(cluster.ip(old), [cluster.ip(f) for f in followers])
        run.note(f"cut leader s{old + 1} off from {[f's{f + 1}' for f in followers]}")
        watcher = threading.Thread(target=watch_old_leader, daemon=True)
        watcher.start()
        try:
            new, dt = wait_for_new_leader(cluster, old, followers, NEW_LEADER_DEADLINE, t_cut)
            run.timings["new_leader_after_cut_s"] = round(dt, 2)
            run.note(f"majority elected s{new + 1} after {dt:.2f} s")
        except AssertionError as e:
            run.expect(False, f"majority side after the cut: {e}")
        time.sleep(max(0.0, t_cut + 10.0 - time.monotonic()))  # real-time: hold the partition
        watching.set()
        watcher.join(5)
        partitions.heal()
        t_heal = time.monotonic()
        run.note("healed")
        leader = cluster.wait_for_leader(CONVERGE_TIMEOUT)
        run.timings["converged_after_heal_s"] = round(time.monotonic() - t_heal, 2)
        run.note(f"all agree on s{leader + 1} after the heal")
        run.pause(3)
    finally:
        partitions.heal()
        watching.set()
        clients.stop()
    self_addr = cluster.raft_addr(old)
    stepped = next((t for t, seen in views if seen is not None and seen != self_addr), None)
    run.timings["old_leader_stopped_claiming_s"] = (
        round(stepped - t_cut, 2) if stepped is not None else "never during the partition"
    )
    # Reads the isolated leader answered during the partition.
    ops = run.rec.history.operations()
    answered = [
        op
        for op in ops
        if op.kind == "read"
        and op.outcome == "ok"
        and run.rec.meta[op.id].server == old
        and op.invoked >= t_cut
        and op.completed is not None
        and op.completed < t_heal
    ]
    run.info["old_leader_reads_answered_after_cut"] = len(answered)
    if answered:
        run.timings["old_leader_last_read_invoked_after_cut_s"] = round(
            max(op.invoked for op in answered) - t_cut, 3
        )
    run.info["old_leader_reads_invoked_in_partition_answered_after_heal"] = sum(
        1
        for op in ops
        if op.kind == "read"
        and op.outcome == "ok"
        and run.rec.meta[op.id].server == old
        and t_cut <= op.invoked < t_heal <= (op.completed or 0)
    )
    late = [op for op in answered if op.invoked > t_cut + LEASE_GRACE]
    run.expect(
        not late,
        f"isolated leader s{old + 1} answered {len(late)} reads invoked more than {LEASE_GRACE} s "
        f"after the cut (lease 0.5 s), e.g.: "
        + "; ".join(f"{op.describe()} (+{op.invoked - t_cut:.2f} s)" for op in late[:5]),
    )
    attempted = [
        op for op in ops if run.rec.meta[op.id].server == old and t_cut <= op.invoked < t_heal
    ]
    run.info["old_leader_ops_during_partition"] = dict(
        Counter(f"{op.kind}:{op.outcome}" for op in attempted)
    )
    cluster.wait_for_leader(CONVERGE_TIMEOUT)
    run.final_reads(keys)


def _counts(run: Run) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for op in run.rec.history.operations():
        mode = run.rec.meta[op.id].mode
        counts[f"{op.kind}:{op.outcome}"] += 1
        if op.kind == "read":
            counts[f"read[{mode}]:{op.outcome}"] += 1
        if op.kind == "cas" and op.outcome == "ok":
            counts[f"cas:{'true' if op.result else 'false'}"] += 1
    counts["total"] = len(run.rec.history)
    counts["acknowledged_writes"] = counts["write:ok"] + counts["cas:true"]
    return dict(sorted(counts.items()))


def _why_not_ok(run: Run) -> dict[str, int]:
    """How operations failed or became unknown, by kind and (shortened) answer."""
    reasons: Counter[str] = Counter()
    for op in run.rec.history.operations():
        if op.outcome != "ok":
            detail = run.rec.meta[op.id].detail or "no answer (pending at the end)"
            reasons[f"{op.kind}:{op.outcome}: {detail[:90]}"] += 1
    return dict(reasons.most_common(20))


def _check(run: Run) -> dict[str, Any]:
    ops = run.rec.history.operations()
    to_jsonl(ops, run.workdir / "history.jsonl")
    with open(run.workdir / "history-meta.jsonl", "w", encoding="utf-8") as f:
        for op in ops:
            f.write(json.dumps({"id": op.id, **attrs.asdict(run.rec.meta[op.id])}) + "\n")
    t0 = time.monotonic()
    result = check(ops, timeout=CHECK_TIMEOUT)
    elapsed = round(time.monotonic() - t0, 2)
    run.note(f"checker: {result.status} in {elapsed} s ({len(ops)} operations)")
    run.expect(result.ok, f"linearizability check: {result.status}\n{result.explanation}")
    culprits = [
        {"op": op.describe(), **attrs.asdict(run.rec.meta[op.id])}
        for op in (*result.stuck, *result.linearized[-5:])
    ]
    return {
        "status": result.status,
        "explanation": result.explanation,
        "states": result.states,
        "seconds": elapsed,
        "key": result.key,
        "culprits": culprits,
    }


def run_scenario(name: str, workdir: Path, seed: int, servers: int = 3) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = RaftCluster(workdir / "cluster", size=servers)
    run = Run(workdir, cluster, rng=random.Random(seed))
    result: dict[str, Any] = {
        "scenario": name,
        "seed": seed,
        "servers": servers,
        "workdir": str(workdir),
    }
    try:
        with cluster:
            try:
                SCENARIOS[name](run)
            except Exception:
                run.errors.append(f"scenario raised:\n{traceback.format_exc()}")
        result["checker"] = _check(run)
    except Exception:
        run.errors.append(f"driver raised:\n{traceback.format_exc()}")
    result["counts"] = _counts(run)
    run.expect(not run.rec.anomalies, f"unexpected answers: {run.rec.anomalies[:10]}")
    result["not_ok"] = _why_not_ok(run)
    result["anomalies"] = run.rec.anomalies[:50]
    result["timings"] = {**run.timings, "total_s": round(time.monotonic() - run.started, 2)}
    result["info"] = run.info
    result["errors"] = run.errors
    result["ok"] = not run.errors
    result["events"] = run.events
    result["history"] = str(workdir / "history.jsonl")  # + history-meta.jsonl: server, mode
    result["logs"] = [str(p) for p in cluster.log_paths()]
    if run.errors:
        result["log_tails"] = cluster.log_tails()
    return result


def _terminate(signum: int, frame: object) -> None:
    """Turn SIGTERM into an exception so the cluster's ``with`` block reaps the agents."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.raft_faults")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--json", required=True, type=Path, help="where to write the result")
    parser.add_argument("--workdir", required=True, type=Path, help="cluster data and logs")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--servers", type=int, default=3, help="cluster size (3 or 5)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    if in_private_netns():
        setup_private_loopback()
    elif args.scenario == "partition":
        parser.error("partition needs a private network namespace: run under `unshare -n`")
    result = run_scenario(args.scenario, args.workdir, seed, args.servers)
    args.json.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    summary = {k: result[k] for k in ("ok", "timings", "counts")}
    print(json.dumps(summary, indent=2), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
