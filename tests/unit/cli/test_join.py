"""Tests for ``consul-tw join`` and ``consul-tw force-leave``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.cli.test_support import CliResult, FakeAgent, SeenRequest, run_cli


class JoinTests(SynchronousTestCase):
    def test_joins_each_address(self) -> None:
        agent = FakeAgent(
            {
                ("PUT", "/v1/agent/join/127.0.0.1:8301"): (200, b""),
                ("PUT", "/v1/agent/join/10.0.0.2"): (200, b""),
            }
        )
        result = run_cli(["join", "127.0.0.1:8301", "10.0.0.2"], agent)
        self.assertEqual(
            result, CliResult(0, "Successfully joined cluster by contacting 2 nodes.\n", "")
        )
        self.assertEqual(
            [r.uri for r in agent.requests],
            ["/v1/agent/join/127.0.0.1:8301", "/v1/agent/join/10.0.0.2"],
        )

    def test_partial_and_total_failure(self) -> None:
        agent = FakeAgent(
            {
                ("PUT", "/v1/agent/join/good"): (200, b""),
                ("PUT", "/v1/agent/join/bad"): (500, b"1 error occurred: failed to join"),
            }
        )
        result = run_cli(["join", "bad", "good"], agent)
        self.assertEqual(result.code, 0)
        self.assertEqual(
            result.err,
            "Error joining address 'bad': Unexpected response code: 500 (1 error occurred: failed to join)\n",
        )
        failed = run_cli(["join", "bad"], agent)
        self.assertEqual(failed.code, 1)
        self.assertTrue(failed.err.endswith("Failed to join any nodes.\n"))

    def test_wan_flag_and_usage(self) -> None:
        agent = FakeAgent({("PUT", "/v1/agent/join/s2"): (200, b"")})
        self.assertEqual(run_cli(["join", "-wan", "s2"], agent).code, 0)
        self.assertEqual(agent.requests[-1], SeenRequest("PUT", "/v1/agent/join/s2?wan=1", None))
        self.assertEqual(run_cli(["join"], agent).code, 1)


class ForceLeaveTests(SynchronousTestCase):
    def test_force_leave(self) -> None:
        agent = FakeAgent({("PUT", "/v1/agent/force-leave/web1"): (200, b"")})
        self.assertEqual(run_cli(["force-leave", "web1"], agent), CliResult(0, "", ""))
        self.assertEqual(run_cli(["force-leave", "-prune", "web1"], agent).code, 0)
        self.assertEqual(agent.requests[-1].uri, "/v1/agent/force-leave/web1?prune=1")

    def test_errors(self) -> None:
        agent = FakeAgent(
            {("PUT", "/v1/agent/force-leave/x"): (500, b"agent: No node found with name 'x'")}
        )
        result = run_cli(["force-leave", "x"], agent)
        self.assertEqual(result.code, 1)
        self.assertTrue(result.err.startswith("Error force leaving: Unexpected response code: 500"))
        self.assertEqual(run_cli(["force-leave"], agent).code, 1)
        self.assertEqual(run_cli(["force-leave", "a", "b"], agent).code, 1)
