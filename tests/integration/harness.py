"""
Real ``twistd consul-agent`` processes on loopback, for the end-to-end tests.

:class:`AgentProcess` picks free loopback ports, starts the agent as a
subprocess in its own working directory with ``PYTHONPATH`` pointing at this
checkout, captures stdout and stderr to files, and waits (bounded polling of
the stdout file) until the agent says it is running and has synced its node
info, which in ``-dev`` happens after it has won its election.
:class:`AgentPool` owns the processes a fixture started and reaps every one
of them, SIGKILL after a grace period, whatever the test did.

These tests talk to real processes over real sockets, so they wait in real
time; every wait here is bounded polling, never a bare sleep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import attrs

#: The checkout under test: tests/integration/harness.py -> repo root.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: What the banner, the ``build`` tag and /v1/agent/self report.
AGENT_VERSION = "0.1.0"

READY_TIMEOUT = 20.0
EXIT_TIMEOUT = 20.0
KILL_GRACE = 5.0
CLI_TIMEOUT = 30.0
POLL_INTERVAL = 0.05

RUNNING_LINE = "==> Consul agent running!"
SYNCED_TEXT = "agent: Synced node info"
TRACEBACK = "Traceback (most recent call last)"

#: One hclog line: RFC 3339 local time with milliseconds and zone, then the
#: bracketed level padded to 7 characters *outside* the brackets
#: (``[DEBUG]``, ``[INFO] ``, ``[WARN] ``), then one space: hclog writes
#: ``[INFO]  agent: ...``, never ``[INFO ] agent: ...``.
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}) "
    r"(\[TRACE\]|\[DEBUG\]|\[INFO\] |\[WARN\] |\[ERROR\]) "
)


def twistd_command() -> list[str]:
    """The ``twistd`` of the interpreter running the tests (its script sits beside it)."""
    script = shutil.which("twistd", path=str(Path(sys.executable).parent)) or shutil.which("twistd")
    if script is not None:
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class AgentStartError(AssertionError):
    """The agent did not come up (it exited, or the deadline passed)."""


def free_ports(count: int) -> list[int]:
    """
    ``count`` distinct loopback ports that are free for both TCP and UDP
    right now (the agent binds DNS and Serf on both).  Every probe socket
    stays open until all ports are chosen, so the kernel cannot hand the
    same one out twice, then they are all closed for the agent to take.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(50 * count):
            if len(ports) == count:
                break
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port not in ports:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) != count:
        raise RuntimeError(f"could not find {count} free loopback ports")
    return ports


@attrs.frozen
class Ports:
    http: int
    dns: int
    serf_lan: int
    serf_wan: int
    server: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(*free_ports(5))

    def args(self, single_dash: bool = False) -> list[str]:
        pairs = [
            ("http-port", self.http),
            ("dns-port", self.dns),
            ("serf-lan-port", self.serf_lan),
            ("serf-wan-port", self.serf_wan),
            ("server-port", self.server),
        ]
        if single_dash:
            return [f"-{name}={value}" for name, value in pairs]
        return [arg for name, value in pairs for arg in (f"--{name}", str(value))]


def _base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


def poll_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = POLL_INTERVAL
) -> Any:
    """Call ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # real-time: bounded polling of a real process / socket


def run_cli(
    args: Iterable[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = CLI_TIMEOUT,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m consul_tw ARGS`` with a clean environment (no inherited CONSUL_*)."""
    return subprocess.run(
        [sys.executable, "-m", "consul_tw", *args],
        env=_base_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert TRACEBACK not in text, f"Python traceback in agent output:\n{text}"


def assert_in_order(text: str, needles: list[str]) -> None:
    """Each needle occurs in ``text`` after the previous one."""
    pos = 0
    for needle in needles:
        found = text.find(needle, pos)
        assert found >= 0, f"{needle!r} missing (or out of order) after offset {pos} in:\n{text}"
        pos = found + len(needle)


def _die_with_parent() -> None:
    """
    In the child before exec (Linux): SIGKILL this agent if the test run
    itself dies without reaching its fixture teardown (e.g. killed by CI).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@attrs.define(repr=False)
class AgentProcess:
    """One ``twistd -n consul-agent --dev`` subprocess and its captured output."""

    workdir: Path
    node: str = "node1"
    config: dict[str, Any] | None = None
    extra_args: tuple[str, ...] = ()
    dev: bool = True
    #: Spell the flags as Consul does (``-dev -node=NAME``) instead of ``--dev --node NAME``.
    single_dash: bool = False
    ports: Ports | None = None
    process: subprocess.Popen[bytes] | None = None
    attempts: int = 0
    _fixed_ports: bool = False
    _out: IO[bytes] | None = None
    _err: IO[bytes] | None = None
    #: The command line of the latest start, for failure messages.
    last_argv: list[str] | None = None

    def __attrs_post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_ports = self.ports is not None

    def __repr__(self) -> str:
        pid = None if self.process is None else self.process.pid
        rc = None if self.process is None else self.process.poll()
        return f"<AgentProcess node={self.node!r} pid={pid} returncode={rc} ports={self.ports}>"

    # -- paths and addresses --------------------------------------------------

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    @property
    def http_addr(self) -> str:
        assert self.ports is not None
        return f"127.0.0.1:{self.ports.http}"

    def url(self, path: str) -> str:
        return f"http://{self.http_addr}{path}"

    def argv(self) -> list[str]:
        assert self.ports is not None
        argv = [*twistd_command(), "-n", "--pidfile=", "consul-agent"]
        dash = "-" if self.single_dash else "--"
        if self.dev:
            argv.append(f"{dash}dev")
        if self.single_dash:
            argv.append(f"-node={self.node}")
        else:
            argv += ["--node", self.node]
        argv += self.ports.args(self.single_dash)
        if self.config is not None:
            path = self.workdir / "config.json"
            path.write_text(json.dumps(self.config), encoding="utf-8")
            argv += [f"{dash}config-file={path}"]
        return argv + list(self.extra_args)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> AgentProcess:
        """Spawn the process; do not wait for anything."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self._close_files()
        if self.ports is None:
            self.ports = Ports.pick()
        self.attempts += 1
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.last_argv = self.argv()
        self.process = subprocess.Popen(
            self.last_argv,
            cwd=self.workdir,
            env=_base_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        return self

    def start_and_wait(self, timeout: float = READY_TIMEOUT, retries: int = 2) -> AgentProcess:
        """
        Start and wait until the agent is running and has synced its node
        info.  Ports picked by :func:`free_ports` can be taken by someone else
        before the agent binds them; when the agent dies before printing its
        banner and the ports were ours to choose, try again on new ones.
        """
        for attempt in range(retries + 1):
            self.start()
            try:
                return self.wait_ready(timeout)
            except AgentStartError:
                exited_early = (
                    self.process is not None
                    and self.process.poll() is not None
                    and "==> Starting Consul agent" not in self.stdout()
                )
                if self._fixed_ports or not exited_early or attempt == retries:
                    raise
                self.ports = None
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> AgentProcess:
        deadline = time.monotonic() + timeout
        while True:
            out = self.stdout()
            if RUNNING_LINE in out and SYNCED_TEXT in out:
                return self
            assert self.process is not None
            if self.process.poll() is not None:
                raise AgentStartError(
                    f"agent exited with {self.process.returncode} before it was ready\n"
                    + self.describe()
                )
            if time.monotonic() >= deadline:
                raise AgentStartError(f"agent not ready after {timeout}s\n" + self.describe())
            time.sleep(POLL_INTERVAL)  # real-time: bounded polling of the agent's stdout file

    def wait_for_output(self, needle: str | re.Pattern[str], timeout: float = 10.0) -> str:
        """Poll stdout until it contains ``needle`` (text or regex); return the stdout."""

        def found() -> str | None:
            out = self.stdout()
            hit = needle.search(out) if isinstance(needle, re.Pattern) else needle in out
            return out if hit else None

        try:
            return poll_until(found, timeout, f"{needle!r} in agent stdout")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe()}") from None

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """The process's return code once it has exited by itself (bounded)."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"agent still running after {timeout}s\n{self.describe()}"
            ) from None

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Make sure the process is gone and reaped: SIGTERM, then SIGKILL after a grace period."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(KILL_GRACE)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(KILL_GRACE)
        finally:
            self._close_files()

    def _close_files(self) -> None:
        for f in (self._out, self._err):
            if f is not None:
                f.close()
        self._out = self._err = None

    # -- output ----------------------------------------------------------------

    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        return [line for line in self.stdout().splitlines() if LOG_LINE.match(line)]

    def describe(self) -> str:
        rc = None if self.process is None else self.process.poll()
        return (
            f"argv: {self.last_argv}\nreturncode: {rc}\n"
            f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"
        )

    # -- clients ---------------------------------------------------------------

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``consul-tw ARGS -http-addr=<this agent>``."""
        return run_cli([*args, f"-http-addr={self.http_addr}"], env=env, timeout=timeout)


@attrs.define
class AgentPool:
    """Starts agents under ``root`` and reaps all of them in :meth:`stop_all`."""

    root: Path
    agents: list[AgentProcess] = attrs.field(factory=list)

    def new(self, node: str = "node1", **kwargs: Any) -> AgentProcess:
        workdir = self.root / f"agent{len(self.agents)}-{node}"
        agent = AgentProcess(workdir=workdir, node=node, **kwargs)
        self.agents.append(agent)
        return agent

    def start(self, node: str = "node1", **kwargs: Any) -> AgentProcess:
        return self.new(node, **kwargs).start_and_wait()

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        for agent in reversed(self.agents):
            try:
                agent.stop()
            except BaseException as e:  # keep reaping the others
                errors.append(e)
        if errors:
            raise errors[0]
