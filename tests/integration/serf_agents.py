"""
Real ``serf agent`` processes (Debian's serf 0.9.4) on loopback, for
interoperability tests: start, ask for members, join, leave, kill -9.

Every agent started through a :class:`SerfPool` is reaped when the pool is
stopped, whatever the test did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from tests.integration.harness import free_ports

SERF = shutil.which("serf")


@attrs.define(eq=False)
class SerfAgent:
    name: str
    port: int
    rpc_port: int
    workdir: Path
    tags: dict[str, str] = attrs.field(factory=dict)
    encrypt: str | None = None
    process: subprocess.Popen[bytes] | None = None
    #: Set when the test ended the agent on purpose (kill, stop).
    stopped: bool = False

    @property
    def log(self) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, join: str | None = None) -> SerfAgent:
        assert SERF is not None
        argv = [
            SERF,
            "agent",
            "-node",
            self.name,
            "-bind",
            f"127.0.0.1:{self.port}",
            "-rpc-addr",
            f"127.0.0.1:{self.rpc_port}",
            "-log-level",
            "debug",
        ]
        for key, value in sorted(self.tags.items()):
            argv += ["-tag", f"{key}={value}"]
        if self.encrypt:
            argv += ["-encrypt", self.encrypt]
        if join:
            argv += ["-join", join]
        log = open(self.workdir / f"{self.name}.log", "wb")  # noqa: SIM115 - closed by the process
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=dict(os.environ)
        )
        log.close()
        return self

    def command(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        assert SERF is not None
        verb, *rest = args
        if verb == "leave":
            self.stopped = True  # the agent exits by itself after a leave
        return subprocess.run(
            [SERF, verb, f"-rpc-addr=127.0.0.1:{self.rpc_port}", *rest],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def members(self) -> dict[str, dict[str, Any]]:
        """``serf members -format json``, by name; {} while the agent is not answering."""
        if not self.stopped and self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"serf agent {self.name} exited with {self.process.returncode}:\n{self.log[-2000:]}"
            )
        result = self.command("members", "-format=json")
        if result.returncode != 0:
            return {}
        return {m["name"]: m for m in json.loads(result.stdout)["members"]}

    def kill(self) -> None:
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


@attrs.define(eq=False)
class SerfPool:
    workdir: Path
    agents: list[SerfAgent] = attrs.field(factory=list)

    def new(self, name: str, **kwargs: Any) -> SerfAgent:
        port, rpc_port = free_ports(2)
        agent = SerfAgent(name=name, port=port, rpc_port=rpc_port, workdir=self.workdir, **kwargs)
        self.agents.append(agent)
        return agent

    def stop_all(self) -> None:
        for agent in self.agents:
            agent.kill()


#: Consul client tags, as our side of an interop pool publishes them.
CLIENT_TAGS = {
    "role": "node",
    "dc": "dc1",
    "segment": "",
    "vsn": "2",
    "vsn_min": "2",
    "vsn_max": "3",
    "build": "0.1.0:consultw",
    "id": "6a2b1c1e-0000-4000-8000-000000000001",
}


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` on the real reactor until it returns something true."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await deferLater(reactor, 0.1, lambda: None)  # real-time: polling real processes
