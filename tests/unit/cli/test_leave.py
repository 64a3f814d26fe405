# -*- test-case-name: tests.unit.cli.test_leave -*-
"""Tests for ``consul-tw leave`` (:mod:`consul_tw.cli.leave`)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.cli.test_support import CliResult, FakeAgent, RefusingClient, SeenRequest, run_cli

LEAVE = ("PUT", "/v1/agent/leave")


class LeaveTests(SynchronousTestCase):
    """PUT /v1/agent/leave and its outcomes."""

    def test_success(self) -> None:
        """An empty 200 answer means the leave completed."""
        agent = FakeAgent({LEAVE: (200, b"")})
        self.assertEqual(run_cli(["leave"], agent), CliResult(0, "Graceful leave complete\n", ""))
        self.assertEqual(agent.requests, [SeenRequest("PUT", "/v1/agent/leave", None)])

    def test_refused(self) -> None:
        """No agent: Go's Put error line, exit 1."""
        self.assertEqual(
            run_cli(["leave"], RefusingClient()),
            CliResult(
                1,
                "",
                'Error leaving: Put "http://127.0.0.1:8500/v1/agent/leave": '
                "dial tcp 127.0.0.1:8500: connect: connection refused\n",
            ),
        )

    def test_http_error(self) -> None:
        """A non-200 answer is reported with its code and body."""
        agent = FakeAgent({LEAVE: (403, b"Permission denied\n")})
        self.assertEqual(
            run_cli(["leave"], agent),
            CliResult(1, "", "Error leaving: Unexpected response code: 403 (Permission denied)\n"),
        )

    def test_unexpected_args(self) -> None:
        """Positional arguments are refused before any request."""
        agent = FakeAgent({LEAVE: (200, b"")})
        result = run_cli(["leave", "now", "please"], agent)
        self.assertEqual(result.code, 1)
        self.assertEqual(result.err.splitlines()[0], "Error found unexpected args: [now please]")
        self.assertEqual(agent.requests, [])
