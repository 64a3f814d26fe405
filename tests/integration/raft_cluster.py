"""
A cluster of real ``twistd consul-agent -server`` processes for the Raft fault tests.

Each server gets its own loopback address (127.0.0.11, .12, ...): Raft and
RPC connections leave from the ``-bind`` address, so a policy-routing rule
"from A to B blackhole" cuts exactly one direction between two servers,
which is how :class:`Partitions` makes network partitions without
iptables.  All 127/8 addresses route to ``lo``, so none has to be added.

The servers run as :class:`~tests.integration.harness.AgentProcess`
children (same spawning, environment, ``PDEATHSIG`` and log capture as the
other end-to-end tests) with ``-bootstrap-expect N`` and
``-raft-multiplier 1``, so elections take about a second.  A restarted
server keeps its data dir, flags and ports, which is what a crash-restart
is; its previous log is kept beside the new one (``stdout.run1.log``...) so
a failure report shows what it did before it died.

:meth:`RaftCluster.stop_all` SIGKILLs everything the cluster started, stopped
(``SIGSTOP``) servers included; use the cluster as a context manager so that
happens whatever the scenario did.  Partition rules change the routing of the
network namespace they run in, so :class:`Partitions` refuses to run in the
host's namespace (see :func:`in_private_netns`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import attrs

from tests.integration.harness import AgentProcess, Ports, free_ports, poll_until

#: The first server's address; server i (0-based) binds 127.0.0.(11 + i).
FIRST_HOST = 11

#: Reads of the cluster's own status must not hang on a stopped server.
STATUS_TIMEOUT = 2.0

#: ``urllib`` honours ``http_proxy``; loopback traffic must never go through one.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def server_ip(index: int) -> str:
    """The loopback address of server ``index`` (0-based)."""
    return f"127.0.0.{FIRST_HOST + index}"


def in_private_netns() -> bool:
    """
    True when this process's network namespace is not its parent's, as under
    ``unshare -n python ...`` (``unshare`` execs, so our parent is whoever
    called it, in the original namespace).

    Policy-routing rules are namespace-wide: run in a shared namespace they
    would cut the loopback traffic of everything else in it, so
    :class:`Partitions` and :func:`setup_private_loopback` only run where
    this holds.  (PID 1's namespace would be the classic reference, but it
    is not always readable, even by root, in a sandbox.)
    """
    try:
        mine = os.readlink("/proc/self/ns/net")
        parents = os.readlink(f"/proc/{os.getppid()}/ns/net")
    except OSError:
        return False
    return mine != parents


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def setup_private_loopback() -> None:
    """
    Bring ``lo`` up and move the ``local`` table's rule from priority 0 to
    100, so that blackhole rules at priority 10 are consulted before it (the
    kernel would otherwise deliver every 127/8 packet before any rule of ours).
    """
    if not in_private_netns():
        raise RuntimeError("refusing to change routing rules in the host network namespace")
    _ip("link", "set", "lo", "up")
    _ip("rule", "del", "pref", "0", "lookup", "local")
    _ip("rule", "add", "pref", "100", "lookup", "local")


@attrs.define
class Partitions:
    """Directional blackhole rules between server addresses; :meth:`heal` removes them all."""

    rules: list[tuple[str, str]] = attrs.field(factory=list)
    pref: int = 10

    def cut(self, a: str, b: str) -> None:
        """Drop everything between ``a`` and ``b``, both directions."""
        if not in_private_netns():
            raise RuntimeError("refusing to change routing rules in the host network namespace")
        for src, dst in ((a, b), (b, a)):
            _ip("rule", "add", "pref", str(self.pref), "from", src, "to", dst, "blackhole")
            self.rules.append((src, dst))

    def isolate(self, ip: str, others: list[str]) -> None:
        """Cut ``ip`` off from each of ``others``."""
        for other in others:
            self.cut(ip, other)

    def heal(self) -> None:
        while self.rules:
            src, dst = self.rules.pop()
            _ip("rule", "del", "pref", str(self.pref), "from", src, "to", dst, "blackhole")


def http_json(url: str, timeout: float = STATUS_TIMEOUT) -> Any:
    """GET ``url`` and decode its JSON body; raises OSError/ValueError on any trouble."""
    with OPENER.open(url, timeout=timeout) as response:
        return json.loads(response.read())


@attrs.define
class RaftCluster:
    """
    ``size`` real server agents under ``root``, one loopback address each.

    Server ``i`` lives in ``root/s<i+1>`` (data in ``data/``, output in
    ``stdout.log``/``stderr.log``).  States are tracked so that status polls
    skip servers that are dead or stopped instead of hanging on them.
    """

    root: Path
    size: int = 3
    #: ``-bootstrap-expect``: all of them unless set (servers beyond it join later).
    expect: int | None = None
    raft_multiplier: int = 1
    log_level: str = "INFO"
    agents: list[AgentProcess] = attrs.field(factory=list)
    #: "new", "running", "killed" or "stopped" (SIGSTOP), per server.
    states: list[str] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        assert self.size >= 1
        self.root.mkdir(parents=True, exist_ok=True)
        ports = [self._ports() for _ in range(self.size)]
        seed = f"{server_ip(0)}:{ports[0].serf_lan}"
        for i in range(self.size):
            workdir = self.root / f"s{i + 1}"
            extra = (
                "-server",
                f"-bootstrap-expect={self.expect or self.size}",
                f"-data-dir={workdir / 'data'}",
                f"-bind={server_ip(i)}",
                f"-client={server_ip(i)}",
                f"-raft-multiplier={self.raft_multiplier}",
                f"-retry-join={seed}",
                "-retry-interval=1s",
                f"-log-level={self.log_level}",
            )
            agent = AgentProcess(
                workdir=workdir,
                node=f"s{i + 1}",
                dev=False,
                single_dash=True,
                ports=ports[i],
                extra_args=extra,
            )
            self.agents.append(agent)
            self.states.append("new")

    @staticmethod
    def _ports() -> Ports:
        http, serf_lan, server = free_ports(3)
        return Ports(http=http, dns=-1, serf_lan=serf_lan, serf_wan=-1, server=server)

    def __enter__(self) -> RaftCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # -- addresses ---------------------------------------------------------------

    def ip(self, i: int) -> str:
        return server_ip(i)

    def http(self, i: int) -> str:
        """Base URL of server ``i``'s HTTP API, e.g. ``http://127.0.0.12:21345``."""
        ports = self.agents[i].ports
        assert ports is not None
        return f"http://{server_ip(i)}:{ports.http}"

    def raft_addr(self, i: int) -> str:
        """What ``/v1/status/leader`` and ``/v1/status/peers`` call server ``i``."""
        ports = self.agents[i].ports
        assert ports is not None
        return f"{server_ip(i)}:{ports.server}"

    def index_of(self, raft_addr: str) -> int | None:
        for i in range(self.size):
            if self.raft_addr(i) == raft_addr:
                return i
        return None

    def live(self) -> list[int]:
        """Servers that are running and not stopped: the ones that can answer."""
        return [i for i, state in enumerate(self.states) if state == "running"]

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> RaftCluster:
        for i in range(self.size):
            self.agents[i].start()
            self.states[i] = "running"
        return self

    def kill9(self, i: int) -> None:
        agent = self.agents[i]
        assert agent.process is not None
        agent.process.kill()
        agent.process.wait(10)
        self.states[i] = "killed"

    def restart(self, i: int) -> None:
        """Start server ``i`` again with the same data dir, flags and ports (it must be dead)."""
        agent = self.agents[i]
        assert not agent.running, f"s{i + 1} is still running"
        for name in ("stdout", "stderr"):
            current = agent.workdir / f"{name}.log"
            if current.exists():
                current.rename(agent.workdir / f"{name}.run{agent.attempts}.log")
        agent.start()
        self.states[i] = "running"

    def sigstop(self, i: int) -> None:
        self.agents[i].send_signal(signal.SIGSTOP)
        self.states[i] = "stopped"

    def sigcont(self, i: int) -> None:
        self.agents[i].send_signal(signal.SIGCONT)
        self.states[i] = "running"

    def stop_all(self) -> None:
        """SIGKILL and reap every server (stopped ones too); safe to call more than once."""
        for i, agent in enumerate(self.agents):
            process = agent.process
            if process is not None and process.poll() is None:
                try:
                    process.send_signal(signal.SIGCONT)
                    process.kill()
                    process.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            agent.stop()  # closes the log files
            if self.states[i] != "new":
                self.states[i] = "killed"

    # -- observation -----------------------------------------------------------------

    def leader_seen_by(self, i: int) -> str | None:
        """Server ``i``'s answer to ``/v1/status/leader`` ("" for none), None if it did not answer."""
        try:
            value = http_json(self.http(i) + "/v1/status/leader")
        except (OSError, ValueError):
            return None
        return value if isinstance(value, str) else None

    def peers_seen_by(self, i: int) -> set[str] | None:
        try:
            value = http_json(self.http(i) + "/v1/status/peers")
        except (OSError, ValueError):
            return None
        return set(value) if isinstance(value, list) else None

    def agreed_leader(self, among: list[int] | None = None, full_peers: bool = True) -> int | None:
        """
        The leader's index if every server in ``among`` (default: all live ones)
        names the same leader, which is one of them, and (``full_peers``) lists
        all ``size`` servers as peers; else None.
        """
        among = self.live() if among is None else among
        if not among:
            return None
        everyone = {self.raft_addr(i) for i in range(self.size)}
        leaders = set()
        for i in among:
            leader = self.leader_seen_by(i)
            if not leader:
                return None
            leaders.add(leader)
            if full_peers and self.peers_seen_by(i) != everyone:
                return None
        if len(leaders) != 1:
            return None
        index = self.index_of(leaders.pop())
        return index if index in among else None

    def wait_for_leader(
        self, timeout: float, among: list[int] | None = None, full_peers: bool = True
    ) -> int:
        """
        Poll until the servers in ``among`` (default: all live ones) agree on a
        leader among themselves and list all servers as peers; its index.
        """
        return (
            poll_until(
                lambda: _plus_one(self.agreed_leader(among, full_peers)),
                timeout,
                f"servers {among if among is not None else self.live()} to agree on a leader",
                interval=0.1,
            )
            - 1
        )

    def wait_http(self, i: int, timeout: float) -> None:
        """Until server ``i`` answers ``/v1/status/leader`` at all (leader or not)."""
        poll_until(
            lambda: self.leader_seen_by(i) is not None,
            timeout,
            f"s{i + 1} to answer HTTP",
            interval=0.1,
        )

    # -- logs -------------------------------------------------------------------------

    def log_paths(self) -> list[Path]:
        paths: list[Path] = []
        for agent in self.agents:
            paths += sorted(agent.workdir.glob("std*.log"))
        return paths

    def log_tails(self, lines: int = 60) -> str:
        """The last ``lines`` lines of every log (earlier runs too), for failure reports."""
        chunks = []
        for path in self.log_paths():
            try:
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as e:
                text = [f"(unreadable: {e})"]
            if not text:
                continue
            chunks.append(f"--- {path} (last {min(lines, len(text))} lines) ---")
            chunks += text[-lines:]
        return "\n".join(chunks)


def _plus_one(index: int | None) -> int | None:
    """poll_until needs a truthy value; leader 0 is a fine answer."""
    return None if index is None else index + 1


def wait_for_new_leader(
    cluster: RaftCluster, old: int, among: list[int], timeout: float, since: float
) -> tuple[int, float]:
    """
    Until the servers in ``among`` agree on a leader other than ``old``: its
    index and the seconds since ``since`` (a ``time.monotonic()`` value).
    Peers are not required to be complete: autopilot may be removing ``old``.
    """
    deadline = time.monotonic() + timeout
    while True:
        leader = cluster.agreed_leader(among, full_peers=False)
        if leader is not None and leader != old:
            return leader, time.monotonic() - since
        if time.monotonic() >= deadline:
            seen = {f"s{i + 1}": cluster.leader_seen_by(i) for i in among}
            raise AssertionError(f"no new leader among {among} after {timeout}s; seen: {seen}")
        time.sleep(0.05)  # real-time: bounded polling of real servers


__all__ = [
    "Partitions",
    "RaftCluster",
    "http_json",
    "in_private_netns",
    "server_ip",
    "setup_private_loopback",
    "wait_for_new_leader",
]
