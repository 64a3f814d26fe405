# -*- test-case-name: tests.unit.cli.test_leave -*-
"""
``consul-tw leave``: ask the local agent to leave the cluster and shut down.

``PUT /v1/agent/leave`` only answers once the leave has finished (about 11
seconds on a dev server: WAN and LAN propagation plus the drain), so the
request deliberately has no timeout.
"""

from __future__ import annotations

from twisted.python import usage

from consul_tw.cli._flags import HTTPOptions
from consul_tw.cli._http import APIError, CommandContext, connect


class LeaveOptions(HTTPOptions):
    """Flags of ``consul leave``."""

    longdesc = "Causes the agent to gracefully leave the Consul cluster and shutdown."

    def parseArgs(self, *args: str) -> None:
        """Consul's ``leave`` words its argument check differently."""
        if args:
            raise usage.UsageError(f"Error found unexpected args: [{' '.join(args)}]")


async def run(options: LeaveOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw leave``; returns the exit code."""
    api = connect(ctx, options)
    if api is None:
        return 1
    try:
        await api.request("PUT", "/v1/agent/leave")
    except APIError as exc:
        ctx.error(f"Error leaving: {exc}")
        return 1
    ctx.out("Graceful leave complete")
    return 0
