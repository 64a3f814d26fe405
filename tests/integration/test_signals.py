"""
SIGTERM and SIGINT to a dev server: Consul's server defaults
(``leave_on_terminate`` false, ``skip_leave_on_interrupt`` true) mean no
graceful leave: the rest of the cluster would see a failure.
"""

from __future__ import annotations

import signal

import pytest

from tests.integration.harness import assert_in_order, assert_no_traceback

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("signum", "name"),
    [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupt")],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_stops_server_without_leaving(agents, signum, name):
    agent = agents.start(f"sig-{name}")
    agent.send_signal(signum)
    returncode = agent.wait_exit()
    # Ended by the signal (twistd re-raises it), or Consul's own exit code 1.
    assert returncode != 0
    assert returncode in (-signum, 1), returncode

    out = agent.stdout()
    assert_in_order(
        out,
        [
            f"[INFO]  agent: Caught: signal={name}",
            "[INFO]  agent: Graceful shutdown disabled. Exiting",
            "[INFO]  agent: Requesting shutdown",
            "[INFO]  agent.server: shutting down server",
        ],
    )
    assert out.count("Caught: signal=") == 1
    assert "EventMemberLeave" not in out
    assert "server starting leave" not in out
    assert "Gracefully shutting down agent" not in out
    assert "Exit code: code=0" not in out
    assert_no_traceback(out, agent.stderr())
