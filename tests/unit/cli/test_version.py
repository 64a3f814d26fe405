# -*- test-case-name: tests.unit.cli.test_version -*-
"""Tests for ``consul-tw version`` (:mod:`consul_tw.cli.version`)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

import consul_tw
from tests.unit.cli.test_support import CliResult, FakeAgent, run_cli

EXPECTED = (
    f"Consul v{consul_tw.__version__}\n"
    "Protocol 2 spoken by default, understands 2 to 3 "
    "(agent will automatically use protocol >2 when speaking to compatible agents)\n"
)


class VersionTests(SynchronousTestCase):
    """All the ways to ask for the version print the same two lines."""

    def test_command(self) -> None:
        """``version`` needs no agent."""
        agent = FakeAgent()
        self.assertEqual(run_cli(["version"], agent), CliResult(0, EXPECTED, ""))
        self.assertEqual(agent.requests, [])

    def test_flags(self) -> None:
        """``-version``, ``--version`` and ``-v`` at the top level."""
        for flag in ("-version", "--version", "-v"):
            self.assertEqual(run_cli([flag]), CliResult(0, EXPECTED, ""), flag)

    def test_no_arguments(self) -> None:
        """``version`` takes no positional arguments."""
        self.assertEqual(run_cli(["version", "x"]).code, 1)
