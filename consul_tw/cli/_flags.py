# -*- test-case-name: tests.unit.cli.test_flags -*-
"""
Consul-style flags on top of :class:`twisted.python.usage.Options`.

Consul's CLI uses Go's ``flag`` package, where ``-detailed`` and
``--detailed`` mean the same thing, a value may follow as ``-status=failed``
or as ``-status failed``, and a boolean may be written ``-wan=false``.
``usage.Options`` is getopt underneath and would read ``-detailed`` as the
short flags ``-d -e -t ...``, so every command's argv is first rewritten by
:func:`normalise_argv` into the ``--name=value`` form getopt understands.

:class:`CommandOptions` does that rewrite for each level of the command tree
(the root normalises up to the subcommand name, the subcommand normalises the
rest), and turns ``--help``/``--version`` into exceptions so that the caller,
not Twisted, decides which stream the text goes to.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import ClassVar

from twisted.python import usage

from consul_tw.goflags import normalise_argv


class HelpRequested(Exception):
    """
    ``-help`` was given; carries the options object whose usage to show.

    Raised instead of printing so the help goes to the injected stdout (and
    the caller picks the exit code) rather than Twisted's ``print`` +
    ``sys.exit``.
    """

    def __init__(self, options: usage.Options) -> None:
        super().__init__("help requested")
        self.options = options


class VersionRequested(Exception):
    """``-version`` / ``-v`` was given; the caller prints the version."""


def innermost(options: usage.Options) -> usage.Options:
    """
    Follow ``subOptions`` down to the command that was actually selected.

    After a parse (or a failed one) this is the options object whose usage
    text is relevant to the user.
    """
    while getattr(options, "subOptions", None) is not None:
        options = options.subOptions
    return options


def render_usage(options: usage.Options, width: int = 80) -> str:
    """
    The usage text for ``options``, without a trailing newline.

    A fixed width keeps the output independent of the ``COLUMNS`` variable
    Twisted would otherwise read, so tests can compare it.
    """
    text = options.getSynopsis() + "\n\n" + options.getUsage(width=width)
    return text.rstrip("\n")


class CommandOptions(usage.Options):
    """
    Base for every ``consul-tw`` command's options.

    Subclasses set :attr:`synopsis_args` and ``longdesc`` and declare flags
    with ``optFlags``/``optParameters`` as usual; the Go-style spellings come
    for free.
    """

    #: What follows the command words in the usage line.
    synopsis_args: ClassVar[str] = "[options]"
    #: Set explicitly: Twisted would otherwise fall back to ``__main__``'s
    #: docstring, which differs between ``python -m`` and the console script.
    longdesc = ""

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Normalise Go-style flags, then let getopt do the parsing."""
        argv = sys.argv[1:] if options is None else options
        super().parseOptions(normalise_argv(argv, self.longOpt))

    def opt_help(self) -> None:
        """Show this help and exit."""
        raise HelpRequested(self)

    def opt_version(self) -> None:
        """Show the consul-tw version and exit."""
        raise VersionRequested()

    def parseArgs(self, *args: str) -> None:
        """
        Reject positional arguments, in the words Consul's commands use.
        """
        if args:
            raise usage.UsageError(f"Too many arguments (expected 0, got {len(args)})")

    def command_words(self) -> list[str]:
        """The command path from the root, e.g. ``["catalog", "nodes"]``."""
        words: list[str] = []
        node: usage.Options = self
        while node.parent is not None:
            words.append(node.parent.subCommand or "")
            node = node.parent
        return list(reversed(words))

    def getSynopsis(self) -> str:
        """
        ``Usage: consul-tw <words> <args>``.

        Overridden because Twisted derives the program name from
        ``sys.argv[0]``, which reads ``python -m consul_tw`` or a full path.
        """
        words = " ".join(["consul-tw", *self.command_words(), self.synopsis_args])
        return f"Usage: {words}"


class HTTPOptions(CommandOptions):
    """
    Options for commands that talk to the agent's HTTP API.

    These mirror Consul's ``ClientFlags``; the address and token fall back
    to ``CONSUL_HTTP_ADDR`` and ``CONSUL_HTTP_TOKEN`` when absent, which is
    why their defaults are ``None`` rather than the built-in values.
    """

    optParameters: ClassVar[list[list[object]]] = [
        [
            "http-addr",
            None,
            None,
            (
                "The address and port of the Consul HTTP agent (also CONSUL_HTTP_ADDR; "
                "default http://127.0.0.1:8500)."
            ),
        ],
        ["token", None, None, "ACL token to use in the request (also CONSUL_HTTP_TOKEN)."],
    ]


class ServerHTTPOptions(HTTPOptions):
    """
    HTTP options plus Consul's ``ServerFlags`` for reads served by servers.
    """

    optFlags: ClassVar[list[list[object]]] = [
        ["stale", None, "Permit any Consul server (non-leader) to respond to this request."],
    ]
    optParameters: ClassVar[list[list[object]]] = [
        ["datacenter", None, None, "Name of the datacenter to query."],
    ]
