"""
Fault tests of a real 3-server Raft cluster: bootstrap, crashes, restart of
all servers, and a partition of the leader, each checked for linearizability.

Each scenario runs in its own driver process inside a private network
namespace (``unshare -n python -m tests.integration.raft_faults ...``): the
partition rules change routing for the whole namespace, and the clients must
be inside it to reach the agents.  The driver writes a JSON verdict, which is
what is asserted here; on failure its errors, the checker's explanation and
the tail of every agent log are printed, and the history and logs stay in
the test's tmp dir.  Without permission to create a network namespace the
tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO_ROOT, _base_env, _die_with_parent

pytestmark = pytest.mark.integration


def _netns_unavailable() -> str | None:
    """Why a private network namespace cannot be had here, or None if it can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    try:
        probe = subprocess.run(
            ["unshare", "-n", "ip", "link", "set", "lo", "up"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`unshare -n` failed: {e}"
    if probe.returncode != 0:
        return (
            "`unshare -n` is not permitted here (needs root or CAP_SYS_ADMIN for a private "
            f"network namespace): {probe.stderr.strip()}"
        )
    return None


@pytest.fixture(scope="module")
def netns() -> None:
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(reason)


def run_driver(scenario: str, tmp_path: Path, timeout: float) -> dict[str, Any]:
    """
    Run one scenario in a fresh network namespace and return its JSON
    verdict.  The driver leads its own process group, dies with this process
    and its agents die with it (``PDEATHSIG``), so killing the group on a
    timeout, or on any way out of here, leaves nothing behind.
    """
    out = tmp_path / "result.json"
    argv = [
        "unshare",
        "-n",
        sys.executable,
        "-m",
        "tests.integration.raft_faults",
        scenario,
        "--json",
        str(out),
        "--workdir",
        str(tmp_path / "run"),
    ]
    process = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=_base_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # and its agents after it: if pytest itself is killed
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(
            f"driver for {scenario!r} still running after {timeout}s; its output:\n"
            + output.decode(errors="replace")
        )
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    text = output.decode(errors="replace")
    print(text)
    if not out.exists():
        pytest.fail(
            f"driver for {scenario!r} exited {process.returncode} without a verdict:\n{text}"
        )
    return json.loads(out.read_text(encoding="utf-8"))


def assert_verdict(result: dict[str, Any]) -> None:
    """The driver's errors, checker explanation and log tails, in one failure message."""
    summary = {k: result.get(k) for k in ("timings", "counts", "not_ok", "info", "anomalies")}
    print(json.dumps(summary, indent=2, default=str))
    if result["ok"]:
        return
    checker = result.get("checker", {})
    pytest.fail(
        "\n\n".join(
            [
                f"scenario {result['scenario']!r} (seed {result['seed']}) failed:",
                *result["errors"],
                "culprits: " + json.dumps(checker.get("culprits", []), indent=1),
                f"history: {result['history']}\nlogs: {result['workdir']}",
                "events:\n" + "\n".join(result.get("events", [])),
                result.get("log_tails", ""),
            ]
        )
    )


def test_bootstrap(netns: None, tmp_path: Path) -> None:
    """-bootstrap-expect 3 elects one leader; all servers name it and list all three peers."""
    result = run_driver("bootstrap", tmp_path, timeout=150)
    assert_verdict(result)
    assert result["counts"]["write:ok"] == 3


def test_crashes(netns: None, tmp_path: Path) -> None:
    """
    kill -9 of the leader, then of a follower, restarts, and a leader frozen
    with SIGSTOP, all under concurrent writes, reads (both modes) and CAS: no
    acknowledged write is lost, the history is linearizable, and a new leader
    follows each leader kill quickly.
    """
    result = run_driver("crashes", tmp_path, timeout=300)
    assert_verdict(result)
    assert result["counts"]["acknowledged_writes"] > 0
    assert result["counts"].get("read[consistent]:ok", 0) > 0
    assert result["counts"].get("read[default]:ok", 0) > 0
    assert isinstance(result["timings"].get("new_leader_after_kill_s"), float)


def test_restart_all(netns: None, tmp_path: Path) -> None:
    """200 acknowledged keys survive kill -9 of all three servers and a restart."""
    result = run_driver("restart-all", tmp_path, timeout=240)
    assert_verdict(result)
    assert result["info"]["acknowledged_keys"] >= 200


def test_partition(netns: None, tmp_path: Path) -> None:
    """
    The leader is cut off from both followers for 10 s: the majority elects a
    new leader, the old one stops serving reads once its lease is gone, and
    the whole history (default and consistent reads) is linearizable.
    """
    result = run_driver("partition", tmp_path, timeout=300)
    assert_verdict(result)
    assert isinstance(result["timings"].get("new_leader_after_cut_s"), float)
