# -*- test-case-name: tests.unit.cli.test_flags -*-
"""Tests for Go-style flag handling (:mod:`consul_tw.cli._flags`)."""

from __future__ import annotations

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.cli.members import MembersOptions
from consul_tw.goflags import normalise_argv, parse_go_bool

LONG = ["detailed", "wan", "status=", "http-addr=", "help", "version"]


class NormaliseTests(SynchronousTestCase):
    """:func:`normalise_argv`."""

    def test_single_dash_flags(self) -> None:
        """``-name`` and ``-name=value`` become getopt long options."""
        self.assertEqual(
            normalise_argv(["-detailed", "-status=failed", "-http-addr=127.0.0.1:8500"], LONG),
            ["--detailed", "--status=failed", "--http-addr=127.0.0.1:8500"],
        )

    def test_double_dash_kept(self) -> None:
        """``--name`` is accepted as well."""
        self.assertEqual(
            normalise_argv(["--wan", "--status", "alive"], LONG), ["--wan", "--status=alive"]
        )

    def test_separate_value(self) -> None:
        """A value may be the next word, even when it starts with a dash."""
        self.assertEqual(normalise_argv(["-status", "-x"], LONG), ["--status=-x"])

    def test_value_containing_equals(self) -> None:
        """Only the first ``=`` separates the name."""
        self.assertEqual(normalise_argv(["-status=a=b"], LONG), ["--status=a=b"])

    def test_stops_at_positional(self) -> None:
        """Flags after the first positional belong to someone else."""
        self.assertEqual(
            normalise_argv(["-wan", "catalog", "-detailed", "-bogus"], LONG),
            ["--wan", "catalog", "-detailed", "-bogus"],
        )

    def test_double_dash_terminator(self) -> None:
        """``--`` ends flag parsing and is kept for getopt."""
        self.assertEqual(normalise_argv(["--", "-wan"], LONG), ["--", "-wan"])

    def test_booleans(self) -> None:
        """Go's ParseBool spellings: true keeps the flag, false drops it."""
        self.assertEqual(normalise_argv(["-wan=true", "-detailed=0"], LONG), ["--wan"])

    def test_bad_boolean(self) -> None:
        """A non-boolean value is rejected in Go's words."""
        error = self.assertRaises(UsageError, normalise_argv, ["-wan=yes"], LONG)
        self.assertEqual(str(error), 'invalid boolean value "yes" for -wan: parse error')

    def test_unknown_flag(self) -> None:
        """Unknown flags are rejected in Go's words, never split into letters."""
        error = self.assertRaises(UsageError, normalise_argv, ["-bogus"], LONG)
        self.assertEqual(str(error), "flag provided but not defined: -bogus")

    def test_no_prefix_abbreviations(self) -> None:
        """getopt's prefix matching (``--det``) is not let through."""
        self.assertRaises(UsageError, normalise_argv, ["--det"], LONG)

    def test_missing_value(self) -> None:
        """A value flag at the end of argv needs its argument."""
        error = self.assertRaises(UsageError, normalise_argv, ["-status"], LONG)
        self.assertEqual(str(error), "flag needs an argument: -status")

    def test_aliases(self) -> None:
        """``-h`` and ``-v`` are help and version, as in Consul."""
        self.assertEqual(normalise_argv(["-h"], LONG), ["--help"])
        self.assertEqual(normalise_argv(["-v"], LONG), ["--version"])

    def test_go_bool(self) -> None:
        """parse_go_bool follows strconv.ParseBool."""
        self.assertEqual(
            [parse_go_bool(t) for t in ("1", "t", "TRUE", "0", "False", "yes", "")],
            [True, True, True, False, False, None, None],
        )


class OptionsTests(SynchronousTestCase):
    """The normalisation is wired into real command options."""

    def test_members_options(self) -> None:
        """All of Consul's spellings parse into the options dict."""
        options = MembersOptions()
        options.parseOptions(["-detailed", "-status", "failed", "--wan", "-http-addr=h:1"])
        self.assertEqual(
            (options["detailed"], options["status"], options["wan"], options["http-addr"]),
            (True, "failed", True, "h:1"),
        )

    def test_defaults(self) -> None:
        """Consul's defaults: status ``.*``, segment ``_all``."""
        options = MembersOptions()
        options.parseOptions([])
        self.assertEqual((options["status"], options["segment"]), (".*", "_all"))

    def test_positional_rejected(self) -> None:
        """Stray arguments are an error, in the catalog commands' words."""
        error = self.assertRaises(UsageError, MembersOptions().parseOptions, ["extra"])
        self.assertEqual(str(error), "Too many arguments (expected 0, got 1)")
