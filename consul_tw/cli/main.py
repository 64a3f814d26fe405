# -*- test-case-name: tests.unit.cli.test_main -*-
"""
The ``consul-tw`` command: parse argv, dispatch to a subcommand, exit.

:func:`main` is the whole command with its dependencies passed in (HTTP
client, environment, streams), so tests drive it with ``StubTreq`` and
``StringIO``.  :func:`run` is the console-script entry point
(``consul-tw = consul_tw.cli.main:run`` and ``python -m consul_tw``): it is
the only place in the CLI that uses the global reactor, through
:func:`twisted.internet.task.react`.

Parse problems never produce a traceback: the user gets one error line and
the relevant usage text on stderr, and exit status 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, NoReturn, cast

from treq.client import HTTPClient
from twisted.internet import task
from twisted.internet.interfaces import IReactorTCP
from twisted.python import usage
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgent

from consul_tw.cli import (
    catalog,
    force_leave,
    join,
    keygen,
    kv,
    leave,
    members,
    operator,
    version,
)
from consul_tw.cli._flags import (
    CommandOptions,
    HelpRequested,
    VersionRequested,
    innermost,
    render_usage,
)
from consul_tw.cli._http import CommandContext, HTTPClientLike

Runner = Callable[[Any, CommandContext], Awaitable[int]]

#: Which coroutine executes each leaf command's parsed options.
RUNNERS: dict[type[usage.Options], Runner] = {
    members.MembersOptions: members.run,
    leave.LeaveOptions: leave.run,
    version.VersionOptions: version.run,
    keygen.KeygenOptions: keygen.run,
    join.JoinOptions: join.run,
    force_leave.ForceLeaveOptions: force_leave.run,
    catalog.NodesOptions: catalog.run_nodes,
    catalog.ServicesOptions: catalog.run_services,
    catalog.DatacentersOptions: catalog.run_datacenters,
    kv.KVGetOptions: kv.run_get,
    kv.KVPutOptions: kv.run_put,
    kv.KVDeleteOptions: kv.run_delete,
    operator.ListPeersOptions: operator.run_list_peers,
    operator.RemovePeerOptions: operator.run_remove_peer,
}


class RootOptions(CommandOptions):
    """``consul-tw [-version] [-help] <command> [<args>]``."""

    synopsis_args = "[-version] [-help] <command> [<args>]"
    longdesc = "consul-tw: a HashiCorp-Consul-compatible agent and CLI on Twisted."
    subCommands: ClassVar[list[tuple[str, None, type[usage.Options], str]]] = [
        ("catalog", None, catalog.CatalogOptions, "Interact with the catalog"),
        (
            "force-leave",
            None,
            force_leave.ForceLeaveOptions,
            'Forces a member of the cluster to enter the "left" state',
        ),
        ("join", None, join.JoinOptions, "Tell Consul agent to join cluster"),
        ("kv", None, kv.KVOptions, "Interact with the key-value store"),
        ("leave", None, leave.LeaveOptions, "Gracefully leaves the Consul cluster and shuts down"),
        ("members", None, members.MembersOptions, "Lists the members of a Consul cluster"),
        (
            "operator",
            None,
            operator.OperatorOptions,
            "Provides cluster-level tools for Consul operators",
        ),
        ("version", None, version.VersionOptions, "Prints the Consul version"),
        ("keygen", None, keygen.KeygenOptions, "Generates a new encryption key"),
    ]

    def parseArgs(self, *args: str) -> None:
        """Only reached without a subcommand; see :meth:`postOptions`."""

    def postOptions(self) -> None:
        """Running ``consul-tw`` with no command is a usage error."""
        if self.subCommand is None:
            raise usage.UsageError("no command given")


async def main(argv: Sequence[str], ctx: CommandContext) -> int:
    """
    Run ``consul-tw`` with ``argv`` (without the program name).

    Returns the exit status: 0 on success, 1 on errors (usage or API), and
    whatever else a command defines (``members`` returns 2 for "no match").
    """
    root = RootOptions()
    try:
        root.parseOptions(list(argv))
    except HelpRequested as request:
        ctx.out(render_usage(request.options))
        return 0
    except VersionRequested:
        ctx.out(version.version_text())
        return 0
    except usage.UsageError as exc:
        ctx.error(str(exc))
        ctx.error(render_usage(innermost(root)))
        return 1
    command = innermost(root)
    return await RUNNERS[type(command)](command, ctx)


def _http_client(reactor: IReactorTCP) -> HTTPClientLike:
    """
    A treq client without a persistent pool.

    Each command makes one or two requests; keeping connections open would
    only leave sockets for the reactor to tear down at exit.
    """
    pool = HTTPConnectionPool(reactor, persistent=False)
    agent = cast(IAgent, Agent(reactor, pool=pool))  # mypy cannot see @implementer
    return HTTPClient(agent)


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """
    Console-script entry point: run :func:`main` on the global reactor.

    Any unexpected exception is reduced to one ``Error: ...`` line (exit 1)
    so users never see a traceback from the CLI.
    """
    args = list(sys.argv[1:] if argv is None else argv)

    async def _react_main(reactor: Any) -> NoReturn:
        ctx = CommandContext(
            http=_http_client(reactor), env=os.environ, stdout=sys.stdout, stderr=sys.stderr
        )
        try:
            code = await main(args, ctx)
        except Exception as exc:  # noqa: BLE001 - last resort: one line, no traceback
            ctx.error(f"Error: {exc}")
            code = 1
        raise SystemExit(code)

    task.react(_react_main)
