# -*- test-case-name: tests.unit.cli.test_join -*-
"""
``consul-tw force-leave [-prune] [-wan] NODE``: move a failed member to ``left``.

``PUT /v1/agent/force-leave/<node>`` (``?prune`` also forgets it at once).
Like ``consul force-leave`` it prints nothing on success.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from twisted.python import usage

from consul_tw.cli._flags import HTTPOptions
from consul_tw.cli._http import APIError, CommandContext, connect


class ForceLeaveOptions(HTTPOptions):
    """Flags of ``consul force-leave``."""

    longdesc = "Forces a member of a Consul cluster to enter the left state."
    optFlags: ClassVar[list[list[object]]] = [
        ["prune", None, "Remove the agent forcibly from the list of members."],
        ["wan", None, "Exclusively leave the agent from the WAN serf pool."],
    ]

    def parseArgs(self, *names: str) -> None:
        if len(names) != 1:
            raise usage.UsageError("A single node name must be specified to force leave.")
        self["node"] = names[0]


async def run(options: ForceLeaveOptions, ctx: CommandContext) -> int:
    api = connect(ctx, options)
    if api is None:
        return 1
    flags = [name for name in ("prune", "wan") if options[name]]
    query = ("?" + "&".join(f"{name}=1" for name in flags)) if flags else ""
    try:
        await api.request("PUT", f"/v1/agent/force-leave/{quote(options['node'], safe='')}{query}")
    except APIError as exc:
        ctx.error(f"Error force leaving: {exc}")
        return 1
    return 0
