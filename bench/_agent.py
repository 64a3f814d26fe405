"""
Starting the two contenders: the consul-tw agent and the bare baseline.

Both run as ``twistd -n`` processes from the same interpreter, with the
repository on ``PYTHONPATH`` and a temporary working directory each, on
fresh loopback ports.  ``twistd`` is the script installed beside
``sys.executable`` when there is one, so no shell shim (pyenv's, say) sits
in front of either process and the PID we hold is the server's own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import attrs

from bench._proc import Child, free_port

#: Printed by the agent once every listener is up and the reactor runs.
AGENT_RUNNING = "==> Consul agent running!"
#: Printed once the agent is leader and its node is in the catalog.
AGENT_SYNCED = "agent: Synced node info"
#: The baseline's counterpart of AGENT_RUNNING.
BASELINE_RUNNING = "bench baseline running"

#: The node name, hence the DNS name ``bench.node.consul``.
NODE = "bench"


def repo_root() -> Path:
    """The repository holding this ``bench`` package."""
    return Path(__file__).resolve().parent.parent


def twistd_argv() -> list[str]:
    beside = Path(sys.executable).parent / "twistd"
    if beside.is_file():
        return [sys.executable, str(beside)]
    found = shutil.which("twistd")
    if found is None:
        raise RuntimeError("twistd not found (is Twisted installed?)")
    return [sys.executable, found]


_pycache: list[tempfile.TemporaryDirectory[str]] = []


def pycache_prefix() -> str:
    """
    A bytecode cache private to this benchmark run, shared by its children.

    Installed Twisted comes with ``.pyc`` files, a source checkout of
    consul-tw may not (and ``PYTHONDONTWRITEBYTECODE`` may be set, as on
    the CI machine), so the agent would compile its own modules at every
    start and the baseline would not: start-up would measure the compiler.
    With ``PYTHONPYCACHEPREFIX`` pointing here both sides read and write
    bytecode in one tree outside the repository, filled by the uncounted
    warm-up runs, as a regular install would be.  It goes away at exit.
    """
    if not _pycache:
        _pycache.append(tempfile.TemporaryDirectory(prefix="bench-pycache-"))
    return _pycache[0].name


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache_prefix()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(repo_root()), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


@attrs.frozen
class Ports:
    http: int
    dns: int


def start_agent(
    extra_args: list[str] | None = None, cpus: set[int] | None = None
) -> tuple[Child, Ports]:
    """Spawn ``twistd -n consul-agent --dev`` on free ports (on ``cpus``); no waiting."""
    ports = Ports(http=free_port(), dns=free_port())
    argv = [
        *twistd_argv(),
        "-n",
        "--pidfile=",
        "consul-agent",
        "--dev",
        "--node",
        NODE,
        "--http-port",
        str(ports.http),
        "--dns-port",
        str(ports.dns),
        "--serf-lan-port",
        str(free_port()),
        "--serf-wan-port",
        str(free_port()),
        "--server-port",
        str(free_port()),
        *(extra_args or []),
    ]
    return Child("agent", argv, child_env(), cpus), ports


def start_baseline(
    fixture: Path | None = None, cpus: set[int] | None = None
) -> tuple[Child, Ports]:
    """Spawn the bare twisted.web + twisted.names baseline under ``twistd -n``."""
    ports = Ports(http=free_port(), dns=free_port())
    extra = {"BENCH_HTTP_PORT": str(ports.http), "BENCH_DNS_PORT": str(ports.dns)}
    if fixture is not None:
        extra["BENCH_FIXTURE"] = str(fixture)
    tac = Path(__file__).resolve().parent / "_baseline.tac"
    argv = [*twistd_argv(), "-n", "--pidfile=", "-y", str(tac)]
    return Child("baseline", argv, child_env(extra), cpus), ports
