"""
Child processes for the benchmarks: spawn, wait for a line, read memory, kill.

A child's stdout goes to a file rather than a pipe.  The agent writes a
DEBUG line per request; a pipe would need a reader thread in the benchmark
process, and that thread would wake up at the very moment the client is
timing the agent's answer and compete with it for the GIL, biasing the
agent's figures only.  Instead, waiting for a line polls the file every
millisecond, which costs the same on both sides and is precise enough for
start-up times of hundreds of milliseconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

#: How often :meth:`Child.wait_for` looks at the output file.
POLL_INTERVAL = 0.001

_handed_out: set[int] = set()


def free_port() -> int:
    """
    A loopback port free for TCP *and* UDP (DNS and serf listen on both),
    found by binding port 0.  Ports already handed out in this process are
    skipped, so one agent's five ports are distinct.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from ``VmRSS`` in /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pin_client_and_servers(enabled: bool = True) -> tuple[set[int] | None, str]:
    """
    Pin this process (the client) to one CPU and return another for the servers.

    Unpinned, the scheduler sometimes runs a server on the client's core,
    where a request/answer ping-pong costs tens of microseconds less than
    across cores, and sometimes not, and the choice sticks for a process's
    lifetime: the same benchmark's DNS ratio then ranged from 2.3x to 4.1x
    run to run.  With the client on one core and both servers on the other,
    each side always pays the same cross-core wake-up.  Returns ``(None,
    why)`` when pinning is off or there are fewer than two CPUs to use.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled:
        return None, "not pinned (--no-pin)"
    if len(cpus) < 2:
        return None, f"not pinned (only CPU {cpus} available)"
    os.sched_setaffinity(0, {cpus[0]})
    return {cpus[1]}, f"client pinned to CPU {cpus[0]}, servers to CPU {cpus[1]}"


class ChildFailed(RuntimeError):
    """A child exited, or did not print what was expected in time."""


class Child:
    """
    One spawned process, its output captured in a file inside its own
    temporary working directory (so nothing lands in the repository).
    Use as a context manager: the process is SIGKILLed on exit.
    """

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], cpus: set[int] | None = None
    ) -> None:
        self.name = name
        self._dir = tempfile.TemporaryDirectory(prefix=f"bench-{name}-")
        self.cwd = Path(self._dir.name)
        self._out_path = self.cwd / "stdout.log"
        self._out = open(self._out_path, "wb")
        self._reader = open(self._out_path, "rb")
        self._pending = b""
        self.lines: list[str] = []
        self.spawned_at = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=subprocess.STDOUT,
            )
            if cpus is not None:
                os.sched_setaffinity(self.proc.pid, cpus)
        except BaseException:
            self._close_files()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> list[str]:
        """Complete lines written since the last call."""
        data = self._pending + self._reader.read()
        *complete, self._pending = data.split(b"\n")
        new = [line.decode("utf-8", "replace") for line in complete]
        self.lines.extend(new)
        return new

    def wait_for(self, text: str, timeout: float = 30.0) -> float:
        """
        Wait until a line containing ``text`` appears (or has appeared);
        return the seconds from spawn to when it was seen.
        """
        if any(text in line for line in self.lines):
            raise ChildFailed(f"{self.name}: {text!r} was already seen; wait for it once")
        deadline = time.perf_counter() + timeout
        while True:
            if any(text in line for line in self._drain()):
                return time.perf_counter() - self.spawned_at
            if self.proc.poll() is not None:
                self._drain()
                raise ChildFailed(
                    f"{self.name} exited with {self.proc.returncode} before {text!r}:\n"
                    + self.tail()
                )
            if time.perf_counter() > deadline:
                raise ChildFailed(f"{self.name}: no {text!r} within {timeout} s:\n" + self.tail())
            time.sleep(POLL_INTERVAL)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines[-n:])

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_files()

    def _close_files(self) -> None:
        self._reader.close()
        self._out.close()
        self._dir.cleanup()

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
