# -*- test-case-name: tests.unit.cli.test_flags,tests.unit.test_tap -*-
"""
Go ``flag``-style command lines, as Consul's agent and CLI accept them.

Go's ``flag`` package reads ``-detailed`` and ``--detailed`` alike, takes a
value as ``-status=failed`` or ``-status failed``, and a boolean as
``-wan=false``.  ``twisted.python.usage`` is getopt underneath and would
read ``-detailed`` as the short flags ``-d -e -t ...``, so both
``twistd consul-agent`` and ``consul-tw`` rewrite argv with
:func:`normalise_argv` first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.python import usage

#: Single-letter spellings Consul users type; Go's flag package and
#: mitchellh/cli treat these as help and version requests.
_ALIASES = {"h": "help", "v": "version"}

#: Spellings accepted by Go's strconv.ParseBool, which is what ``-wan=false``
#: goes through in Consul.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool | None:
    """
    Read ``text`` the way Go's ``strconv.ParseBool`` does.

    Returns ``None`` for anything Go would reject, so callers can word the
    error like Consul does.
    """
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return None


def normalise_argv(argv: Sequence[str], long_options: Iterable[str]) -> list[str]:
    """
    Rewrite Go-style flags in ``argv`` into getopt long options.

    ``long_options`` uses getopt's spelling (``"detailed"`` for a flag,
    ``"status="`` for an option taking a value), which is exactly what
    ``usage.Options.longOpt`` holds.  Only the leading flags are rewritten:
    like Go's ``flag.Parse`` (and getopt), parsing stops at the first
    positional argument or at ``--``, and everything from there on is kept
    verbatim so a subcommand can normalise its own flags.

    Errors use Go's wording, since that is what Consul users see::

        flag provided but not defined: -foo
        flag needs an argument: -status
        invalid boolean value "x" for -wan: parse error

    @raise usage.UsageError: for an unknown flag, a missing value or a bad
        boolean.
    """
    long_options = list(long_options)
    flags = {name for name in long_options if not name.endswith("=")}
    params = {name[:-1] for name in long_options if name.endswith("=")}
    out: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--" or arg == "-" or not arg.startswith("-"):
            out.extend(argv[index:])
            break
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, value = body.partition("=")
        if name not in flags and name not in params:
            name = _ALIASES.get(name, name)
        if name in params:
            if not has_value:
                if index + 1 >= len(argv):
                    raise usage.UsageError(f"flag needs an argument: -{name}")
                index += 1
                value = argv[index]
            out.append(f"--{name}={value}")
        elif name in flags:
            enabled = True
            if has_value:
                parsed = parse_go_bool(value)
                if parsed is None:
                    raise usage.UsageError(
                        f'invalid boolean value "{value}" for -{name}: parse error'
                    )
                enabled = parsed
            if enabled:
                out.append(f"--{name}")
        else:
            raise usage.UsageError(f"flag provided but not defined: -{name}")
        index += 1
    return out
