"""
The two 3-member clusters of ``bench raft``: consul-tw servers and etcd members.

Both are started, asked who leads, killed and restarted the same way, so the
benchmark's loops do not care which one they drive.  Each member is a
:class:`bench._gossip_pool.Proc` (own session, ``PR_SET_PDEATHSIG``, output
in a file) with its data directory under one root on disk, the same
filesystem for both sides, so both pay the same fsync.

Members listen on addresses of their own (consul-tw on 127.0.0.11-13, etcd
on 127.0.0.21-23) with fixed ports: the benchmark normally runs in a private
network namespace where nothing else can hold them, and distinct addresses
keep the two sides apart even without one.

Timeouts are made equal: consul-tw's ``-raft-multiplier 1`` is
hashicorp/raft's defaults (heartbeat timeout 1 s, election timeout 1 s, a
heartbeat sent every heartbeat timeout / 10 = 100 ms), and etcd gets
``--heartbeat-interval 100 --election-timeout 1000``.
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import attrs

from bench._agent import child_env, twistd_argv
from bench._gossip_pool import Proc

#: consul-tw's timing multiplier; etcd's flags below are its equivalents.
RAFT_MULTIPLIER = 1
ETCD_HEARTBEAT_MS = 100
ETCD_ELECTION_MS = 1000
#: Debian package for each command the benchmark runs.
PACKAGES = {"etcd": "etcd-server", "wrk": "wrk"}
#: A key no benchmark writes: reading it only fetches the store's index.
PROBE_KEY = "bench-probe/none"
#: An hclog warning or error: level, then the message up to its first key=value.
_HCLOG_WARNING = re.compile(r"\[(WARN|ERROR)\]\s+(.*?)(?::\s+[\w.-]+=|$)")


class ClusterError(RuntimeError):
    """A member exited, or the cluster did not agree on a leader in time."""


def ensure_commands(packages: dict[str, str] = PACKAGES) -> list[str]:
    """
    Install the Debian packages of whichever commands are missing (apt-get,
    so root is needed then); return what was installed.  Must run before
    the benchmark leaves the host's network namespace, which has the mirror.
    """
    missing = sorted({pkg for cmd, pkg in packages.items() if shutil.which(cmd) is None})
    if not missing:
        return []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    still = [cmd for cmd in packages if shutil.which(cmd) is None]
    if still:
        raise RuntimeError(f"{still} still missing after apt-get install {missing}")
    return missing


def package_version(package: str) -> str:
    """The installed Debian version of ``package`` (``?`` if dpkg does not know it)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
    )
    return result.stdout.strip() or "?"


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def call(
    host: str, port: int, method: str, path: str, body: bytes | None = None, timeout: float = 2.0
) -> Reply:
    """One request on a fresh connection (probes are rare; the load uses its own)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


@attrs.define
class Member:
    """One server: its address, its HTTP port, the command that (re)starts it."""

    name: str
    host: str
    http_port: int
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    proc: Proc | None = None
    restarts: int = 0
    #: Characters of :meth:`log` written before :meth:`Cluster.mark_logs`.
    log_mark: int = 0

    def spawn(self) -> None:
        """Start (or restart, same data directory) this member; no waiting."""
        if self.proc is not None:
            # keep the log of the previous life: Proc truncates out.log
            log = self.workdir / "out.log"
            if log.exists():
                log.rename(self.workdir / f"out.{self.restarts}.log")
            self.restarts += 1
        self.proc = Proc(self.argv, self.env, self.workdir)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.running()

    def kill(self) -> None:
        """SIGKILL (kill -9), then reap."""
        if self.proc is not None:
            self.proc.kill()

    def cpu_seconds(self) -> float:
        return self.proc.cpu_seconds() if self.proc is not None and self.alive else 0.0

    def log(self) -> str:
        """Everything this member printed, over all its lives."""
        parts = [p.read_text(errors="replace") for p in sorted(self.workdir.glob("out.*.log"))]
        return "".join(parts) + (self.proc.log() if self.proc is not None else "")


class Cluster:
    """Three members of one kind; subclasses say how to start and ask them."""

    kind = ""
    #: The wrk script's name for the write request to send.
    wrk_kind = ""

    def __init__(self, root: Path) -> None:
        self.root = root / self.kind
        self.root.mkdir(parents=True)
        self.members = [self._member(i) for i in (1, 2, 3)]

    def _member(self, i: int) -> Member:
        raise NotImplementedError

    # -- what differs between the two ----------------------------------------

    def _leader_view(self, member: Member) -> str | None:
        """Which member ``member`` says leads (a member name), None if none or no answer."""
        raise NotImplementedError

    def write(self, key: str, value: bytes) -> tuple[str, str, bytes]:
        """Method, path and body of one durable write of ``key``."""
        raise NotImplementedError

    def write_ok(self, status: int, body: bytes) -> bool:
        raise NotImplementedError

    def committed_index(self, member: Member) -> int:
        """The store's index as ``member`` answers it (grows by at least 1 a write)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------

    def start(self) -> None:
        for member in self.members:
            _check_free(member.host, member.http_port)
            member.spawn()

    def by_name(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def leader(self) -> Member | None:
        """The member every live member names as leader, None unless they all agree."""
        views = set()
        for member in self.members:
            if member.alive:
                views.add(self._leader_view(member))
        if len(views) != 1 or None in views:
            return None
        return self.by_name(views.pop())  # type: ignore[arg-type]

    def wait_leader(self, timeout: float) -> Member:
        """Poll until every live member names the same leader; raise after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for member in self.members:
                if member.proc is not None and not member.alive:
                    raise ClusterError(f"{self.kind} {member.name} exited:\n{member.log()[-3000:]}")
            found = self.leader()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                views = {m.name: self._leader_view(m) for m in self.members}
                raise ClusterError(f"{self.kind}: no agreed leader after {timeout} s: {views}")
            time.sleep(0.1)

    def _warning(self, line: str) -> str | None:
        """The gist of a warning or error line (without time and values), else None."""
        raise NotImplementedError

    def mark_logs(self) -> None:
        """From now on, warnings count (those of forming the cluster do not)."""
        for member in self.members:
            member.log_mark = len(member.log())

    def warnings(self) -> collections.Counter[str]:
        """Warnings and errors members logged since :meth:`mark_logs`, by gist."""
        found: collections.Counter[str] = collections.Counter()
        for member in self.members:
            for line in member.log()[member.log_mark :].splitlines():
                gist = self._warning(line)
                if gist is not None:
                    found[f"{member.name} {gist}"] += 1
        return found

    def follower(self, leader: Member) -> Member:
        return next(m for m in self.members if m is not leader and m.alive)

    def kill_all(self) -> None:
        """SIGKILL and reap every member, whatever happened."""
        errors: list[BaseException] = []
        for member in self.members:
            try:
                member.kill()
            except BaseException as e:  # keep reaping the others
                errors.append(e)
        if errors:
            raise errors[0]


def _check_free(host: str, port: int) -> None:
    """Fail early and clearly if a fixed port is taken (possible outside the namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the servers do: connections of the last round in TIME_WAIT do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ClusterError(f"{host}:{port} is not free: {e}") from None


class ConsulCluster(Cluster):
    """
    Three ``twistd -n consul-agent -server -bootstrap-expect 3`` processes,
    data on disk, joined through ``-retry-join`` to the first one.
    """

    kind = "consul-tw"
    wrk_kind = "consul"
    HTTP_PORT, SERF_PORT, SERVER_PORT = 8500, 8301, 8300

    def _member(self, i: int) -> Member:
        host = f"127.0.0.{10 + i}"
        workdir = self.root / f"s{i}"
        workdir.mkdir()
        argv = [*twistd_argv(), "-n", "--pidfile=", "consul-agent", "--server"]
        argv += ["--bootstrap-expect", "3", "--data-dir", str(workdir / "data")]
        argv += ["--node", f"s{i}", "--bind", host, "--client", host]
        argv += ["--http-port", str(self.HTTP_PORT), "--dns-port", "-1"]
        argv += ["--serf-lan-port", str(self.SERF_PORT), "--serf-wan-port", "-1"]
        argv += ["--server-port", str(self.SERVER_PORT)]
        argv += ["--raft-multiplier", str(RAFT_MULTIPLIER)]
        argv += ["--retry-join", f"127.0.0.11:{self.SERF_PORT}", "--retry-interval", "1s"]
        argv += ["--log-level", "WARN"]
        env = {k: v for k, v in child_env().items() if not k.startswith("CONSUL_")}
        return Member(f"s{i}", host, self.HTTP_PORT, argv, env, workdir)

    def _leader_view(self, member: Member) -> str | None:
        try:
            reply = call(member.host, member.http_port, "GET", "/v1/status/leader", timeout=1.0)
            address = json.loads(reply.body) if reply.status == 200 else ""
        except (OSError, http.client.HTTPException, ValueError):
            return None
        host = str(address).rpartition(":")[0]
        return next((m.name for m in self.members if m.host == host), None)

    def write(self, key: str, value: bytes) -> tuple[str, str, bytes]:
        return "PUT", f"/v1/kv/{key}", value

    def _warning(self, line: str) -> str | None:
        match = _HCLOG_WARNING.search(line)
        if match is None:
            return None
        return f"[{match.group(1)}] {match.group(2)[:110]}"

    def write_ok(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"true"

    def committed_index(self, member: Member) -> int:
        reply = call(member.host, member.http_port, "GET", f"/v1/kv/{PROBE_KEY}", timeout=10.0)
        return int(reply.headers.get("x-consul-index", "0"))


class EtcdCluster(Cluster):
    """
    Three ``etcd`` members (Debian's etcd-server) on loopback, written to
    through the gRPC gateway's HTTP/JSON API (``POST /v3/kv/put``), so that
    both sides pay HTTP and JSON on every write.
    """

    kind = "etcd"
    wrk_kind = "etcd"
    CLIENT_PORT, PEER_PORT = 2379, 2380

    def __init__(self, root: Path) -> None:
        self._ids: dict[str, str] = {}
        super().__init__(root)

    def _member(self, i: int) -> Member:
        host = f"127.0.0.{20 + i}"
        workdir = self.root / f"e{i}"
        workdir.mkdir()
        cluster = ",".join(f"e{j}=http://127.0.0.{20 + j}:{self.PEER_PORT}" for j in (1, 2, 3))
        argv = ["etcd", "--name", f"e{i}", "--data-dir", str(workdir / "data")]
        argv += ["--listen-peer-urls", f"http://{host}:{self.PEER_PORT}"]
        argv += ["--initial-advertise-peer-urls", f"http://{host}:{self.PEER_PORT}"]
        argv += ["--listen-client-urls", f"http://{host}:{self.CLIENT_PORT}"]
        argv += ["--advertise-client-urls", f"http://{host}:{self.CLIENT_PORT}"]
        argv += ["--initial-cluster", cluster, "--initial-cluster-state", "new"]
        argv += ["--initial-cluster-token", "bench-raft"]
        argv += ["--heartbeat-interval", str(ETCD_HEARTBEAT_MS)]
        argv += ["--election-timeout", str(ETCD_ELECTION_MS)]
        argv += ["--logger", "zap", "--log-level", "warn"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        return Member(f"e{i}", host, self.CLIENT_PORT, argv, env, workdir)

    def _status(self, member: Member) -> dict[str, object] | None:
        try:
            reply = call(
                member.host, member.http_port, "POST", "/v3/maintenance/status", b"{}", 1.0
            )
            return json.loads(reply.body) if reply.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def _leader_view(self, member: Member) -> str | None:
        status = self._status(member)
        if status is None:
            return None
        header = status.get("header")
        if isinstance(header, dict):
            self._ids[str(header.get("member_id"))] = member.name
        leader = str(status.get("leader", "0"))
        if leader not in self._ids:
            self._learn_ids()
        return self._ids.get(leader)

    def _learn_ids(self) -> None:
        """Member ID -> name for every member, from any member that answers."""
        for member in self.members:
            if not member.alive:
                continue
            try:
                reply = call(
                    member.host, member.http_port, "POST", "/v3/cluster/member/list", b"{}"
                )
                for m in json.loads(reply.body).get("members", []):
                    self._ids[str(m["ID"])] = str(m["name"])
                return
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                continue

    def _warning(self, line: str) -> str | None:
        if not line.startswith("{"):
            return None
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if entry.get("level") not in ("warn", "error", "fatal", "panic"):
            return None
        return f"[{entry['level']}] {str(entry.get('msg', ''))[:110]}"

    def write(self, key: str, value: bytes) -> tuple[str, str, bytes]:
        body = json.dumps({"key": b64(key), "value": b64(value)}).encode()
        return "POST", "/v3/kv/put", body

    def write_ok(self, status: int, body: bytes) -> bool:
        return status == 200 and b'"header"' in body

    def committed_index(self, member: Member) -> int:
        body = json.dumps({"key": b64(PROBE_KEY)}).encode()
        reply = call(member.host, member.http_port, "POST", "/v3/kv/range", body, timeout=10.0)
        return int(json.loads(reply.body)["header"]["revision"])
