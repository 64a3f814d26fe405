"""
Pools of real gossip agents for ``bench gossip``: consul-tw clients and
``serf agent`` processes, started, asked for their member list, joined and
killed the same way.

Each member is its own process in its own temporary directory, in its own
session (so a Ctrl-C in the terminal reaches only the benchmark, which then
kills every member itself), with ``PR_SET_PDEATHSIG`` set so that a member
is SIGKILLed by the kernel if the benchmark dies without cleaning up.

Every member is asked for its view over a connection kept open for the
whole run: a kept-alive HTTP connection to a consul-tw agent's
``GET /v1/agent/members``, and serf's own msgpack RPC (the protocol ``serf
members`` speaks) to a serf agent.  Spawning ``serf members`` twenty times
every 100 ms would load the two cores far more than the agents being
measured, and on one side only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import msgpack

from bench._agent import child_env, twistd_argv
from bench._proc import free_port

SERF_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
#: A member's Serf log line when it marks another failed (serf and consul-tw alike).
FAILED_EVENT = re.compile(r"serf: EventMemberFailed: (\S+)")
#: memberlist's line when a suspicion timed out: how many others had confirmed it.
MARKED_LINE = re.compile(
    r"memberlist: Marking (\S+) as failed, suspect timeout reached \((\d+) peer confirmations\)"
)
#: memberlist's line when a probe of another member got no ack.
SUSPECT_LINE = re.compile(r"memberlist: Suspect (\S+) has failed")
#: A view: member name -> "alive" / "failed" / "left" / ...
View = dict[str, str]


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the benchmark process dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Proc:
    """One member process, its output in ``out.log`` in its working directory."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.log_path = workdir / "out.log"
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, from /proc/<pid>/stat."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        # fields[0] is the state (field 3); utime and stime are fields 14, 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SerfRPC:
    """A minimal client of serf's agent RPC (msgpack header, then body)."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
        self.seq = 0
        self._call("handshake", {"Version": 1}, has_reply_body=False)

    def _next(self) -> object:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("serf RPC connection closed") from None
                self.unpacker.feed(chunk)

    def _call(self, command: str, body: object | None, has_reply_body: bool = True) -> object:
        seq = self.seq
        self.seq += 1
        data = msgpack.packb({"Command": command, "Seq": seq})
        if body is not None:
            data += msgpack.packb(body)
        self.sock.sendall(data)
        header = self._next()
        if not isinstance(header, dict) or header.get("Seq") != seq:
            raise ConnectionError(f"serf RPC: unexpected header {header!r}")
        reply = self._next() if has_reply_body else None
        if header.get("Error"):
            raise RuntimeError(f"serf RPC {command}: {header['Error']}")
        return reply

    def members(self) -> View:
        reply = self._call("members", None)
        assert isinstance(reply, dict)
        return {m["Name"]: m["Status"] for m in reply["Members"]}

    def join(self, address: str) -> None:
        self._call("join", {"Existing": [address], "Replay": False})

    def close(self) -> None:
        self.sock.close()


class Member:
    """One pool member: a process, its gossip port, a way to ask for its view."""

    kind = ""

    def __init__(self, name: str, gossip_port: int, proc: Proc) -> None:
        self.name = name
        self.gossip_port = gossip_port
        self.proc = proc
        self.killed = False

    @property
    def gossip_addr(self) -> str:
        return f"127.0.0.1:{self.gossip_port}"

    def view(self, timeout: float = 2.0) -> View | None:
        """This member's member list, or ``None`` while it does not answer."""
        raise NotImplementedError

    def join(self, address: str, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the query connection."""

    def kill(self) -> None:
        self.killed = True
        self.close()
        self.proc.kill()


class ConsulMember(Member):
    kind = "consul-tw"

    def __init__(self, name: str, gossip_port: int, proc: Proc, http_port: int) -> None:
        super().__init__(name, gossip_port, proc)
        self.http_port = http_port
        self._conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, timeout: float) -> bytes:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        try:
            self._conn.request(method, path)
            resp = self._conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.status != 200:
            raise RuntimeError(f"{self.name}: {method} {path}: {resp.status} {body[:200]!r}")
        return body

    def view(self, timeout: float = 2.0) -> View | None:
        try:
            body = self._request("GET", "/v1/agent/members", timeout)
        except (OSError, http.client.HTTPException):
            return None
        return {m["Name"]: SERF_STATUS.get(m["Status"], str(m["Status"])) for m in json.loads(body)}

    def join(self, address: str, timeout: float = 10.0) -> None:
        self._request("PUT", f"/v1/agent/join/{address}", timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SerfMember(Member):
    kind = "serf"

    def __init__(self, name: str, gossip_port: int, proc: Proc, rpc_port: int) -> None:
        super().__init__(name, gossip_port, proc)
        self.rpc_port = rpc_port
        self._rpc: SerfRPC | None = None

    def _client(self, timeout: float) -> SerfRPC:
        if self._rpc is None:
            self._rpc = SerfRPC(self.rpc_port, timeout)
        self._rpc.sock.settimeout(timeout)
        return self._rpc

    def view(self, timeout: float = 2.0) -> View | None:
        try:
            return self._client(timeout).members()
        except (OSError, ConnectionError):
            self.close()
            return None

    def join(self, address: str, timeout: float = 10.0) -> None:
        try:
            self._client(timeout).join(address)
        except (OSError, ConnectionError):
            self.close()
            raise

    def close(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None


class Pool:
    """The members of one pool, each in a directory under one temporary root."""

    def __init__(self, kind: str) -> None:
        if kind not in ("consul-tw", "serf"):
            raise ValueError(kind)
        self.kind = kind
        self._root = tempfile.TemporaryDirectory(prefix=f"bench-gossip-{kind}-")
        self.root = Path(self._root.name)
        self.members: list[Member] = []

    def start(self, name: str, join: str | None) -> Member:
        """Spawn one member (joining ``join`` at start-up if given); no waiting."""
        workdir = self.root / name
        workdir.mkdir()
        gossip_port = free_port()
        member: Member
        if self.kind == "serf":
            rpc_port = free_port()
            argv = ["serf", "agent", "-node", name, "-bind", f"127.0.0.1:{gossip_port}"]
            argv += ["-rpc-addr", f"127.0.0.1:{rpc_port}", "-log-level", "info"]
            for key, value in sorted(consul_client_tags().items()):
                argv += ["-tag", f"{key}={value}"]
            if join:
                argv += ["-join", join]
            env = {k: v for k, v in os.environ.items() if not k.startswith("SERF_")}
            member = SerfMember(name, gossip_port, Proc(argv, env, workdir), rpc_port)
        else:
            http_port = free_port()
            argv = [*twistd_argv(), "-n", "--pidfile=", "consul-agent", "--node", name]
            argv += ["--data-dir", str(workdir / "data"), "--bind", "127.0.0.1"]
            argv += ["--http-port", str(http_port), "--dns-port", "-1"]
            argv += ["--serf-lan-port", str(gossip_port), "--serf-wan-port", "-1"]
            argv += ["--server-port", str(free_port()), "--log-level", "INFO"]
            if join:
                argv += ["--join", join]
            env = {k: v for k, v in child_env().items() if not k.startswith("CONSUL_")}
            member = ConsulMember(name, gossip_port, Proc(argv, env, workdir), http_port)
        self.members.append(member)
        return member

    def kill_all(self) -> None:
        """SIGKILL and reap every member, whatever happened; then remove the root."""
        errors: list[BaseException] = []
        for member in self.members:
            try:
                member.kill()
            except BaseException as e:  # keep reaping the others
                errors.append(e)
        self._root.cleanup()
        if errors:
            raise errors[0]


def consul_client_tags() -> dict[str, str]:
    """
    The tags a consul-tw client gossips about itself (as ``client_tags``
    builds them), given to the serf agents too so that both pools carry
    node meta of the same size in their alive messages and push/pulls.
    """
    from consul_tw.gossip.members import client_tags

    return client_tags(datacenter="dc1", node_id=str(uuid.uuid4()))
