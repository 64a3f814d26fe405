# -*- test-case-name: tests.unit.cli.test_main -*-
"""
Tests for the ``consul-tw`` dispatcher (:mod:`consul_tw.cli.main`):
help, usage errors and exit codes.  The subcommands have their own modules.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from consul_tw.cli.main import RUNNERS, RootOptions
from tests.unit.cli.test_support import run_cli

ROOT_SYNOPSIS = "Usage: consul-tw [-version] [-help] <command> [<args>]"


class HelpTests(SynchronousTestCase):
    """Help goes to stdout with exit 0."""

    def test_root_help(self) -> None:
        """``--help`` lists the commands."""
        for flag in ("--help", "-help", "-h"):
            result = run_cli([flag])
            self.assertEqual((result.code, result.err), (0, ""), flag)
            self.assertEqual(result.out.splitlines()[0], ROOT_SYNOPSIS)
            for command in ("catalog", "leave", "members", "version"):
                self.assertIn(f"    {command}  ", result.out)

    def test_members_help(self) -> None:
        """``members --help`` shows the members flags."""
        for flag in ("--help", "-help"):
            result = run_cli(["members", flag])
            self.assertEqual((result.code, result.err), (0, ""))
            self.assertEqual(result.out.splitlines()[0], "Usage: consul-tw members [options]")
            for option in ("--detailed", "--status=", "--wan", "--http-addr="):
                self.assertIn(option, result.out)

    def test_nested_help(self) -> None:
        """``catalog nodes -help`` names the full command path."""
        result = run_cli(["catalog", "nodes", "-help"])
        self.assertEqual(result.out.splitlines()[0], "Usage: consul-tw catalog nodes [options]")


class UsageErrorTests(SynchronousTestCase):
    """Bad command lines: one error line, then usage, on stderr; exit 1."""

    def assert_usage_error(self, argv: list[str], message: str, synopsis: str) -> None:
        result = run_cli(argv)
        self.assertEqual((result.code, result.out), (1, ""))
        lines = result.err.splitlines()
        self.assertEqual(lines[:3], [message, synopsis, ""])
        self.assertNotIn("Traceback", result.err)

    def test_unknown_command(self) -> None:
        """Unknown commands show the root usage."""
        self.assert_usage_error(["bogus"], "Unknown command: bogus", ROOT_SYNOPSIS)

    def test_no_command(self) -> None:
        """No command at all is an error too."""
        self.assert_usage_error([], "no command given", ROOT_SYNOPSIS)

    def test_unknown_flag(self) -> None:
        """Unknown flags show the command's usage."""
        self.assert_usage_error(
            ["members", "-bogus"],
            "flag provided but not defined: -bogus",
            "Usage: consul-tw members [options]",
        )

    def test_unknown_root_flag(self) -> None:
        """Unknown flags before the command show the root usage."""
        self.assert_usage_error(
            ["-detailed", "members"], "flag provided but not defined: -detailed", ROOT_SYNOPSIS
        )

    def test_missing_value(self) -> None:
        """A value flag without its value."""
        self.assert_usage_error(
            ["members", "-status"],
            "flag needs an argument: -status",
            "Usage: consul-tw members [options]",
        )


class WiringTests(SynchronousTestCase):
    """Every leaf command has a runner."""

    def test_all_leaves_have_runners(self) -> None:
        """Walking the subcommand tree finds only runnable leaves."""
        leaves = []
        pending = [RootOptions]
        while pending:
            options = pending.pop()
            children = getattr(options, "subCommands", None)
            if children:
                pending.extend(child for _, _, child, _ in children)
            else:
                leaves.append(options)
        self.assertEqual(set(leaves), set(RUNNERS))


class EntryPointTests(SynchronousTestCase):
    """``python -m consul_tw`` goes through run() and exits with the code."""

    def run_module(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        return subprocess.run(
            [sys.executable, "-m", "consul_tw", *argv],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    def test_help(self) -> None:
        """``--help`` through the real entry point."""
        process = self.run_module("--help")
        self.assertEqual((process.returncode, process.stderr), (0, ""))
        self.assertEqual(process.stdout.splitlines()[0], ROOT_SYNOPSIS)

    def test_usage_error_exit_code(self) -> None:
        """Usage errors exit 1 without a traceback."""
        process = self.run_module("members", "-bogus")
        self.assertEqual(process.returncode, 1)
        self.assertEqual(process.stderr.splitlines()[0], "flag provided but not defined: -bogus")
