# -*- test-case-name: tests.unit.cli.test_join -*-
"""
``consul-tw join [-wan] ADDR...``: ask the local agent to join a cluster.

Each address is sent to ``PUT /v1/agent/join/<addr>`` on its own, as
``consul join`` does, so one unreachable seed does not hide the others.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

from twisted.python import usage

from consul_tw.cli._flags import HTTPOptions
from consul_tw.cli._http import APIError, CommandContext, connect


class JoinOptions(HTTPOptions):
    """Flags of ``consul join``."""

    longdesc = (
        "Tells a running Consul agent to join the cluster by specifying at least one "
        "existing member."
    )
    optFlags: ClassVar[list[list[object]]] = [
        ["wan", None, "Joins a server to another server in the WAN pool."],
    ]

    def parseArgs(self, *addresses: str) -> None:
        if not addresses:
            raise usage.UsageError("At least one address to join must be specified.")
        self["addresses"] = list(addresses)


async def run(options: JoinOptions, ctx: CommandContext) -> int:
    api = connect(ctx, options)
    if api is None:
        return 1
    joined = 0
    query = "?wan=1" if options["wan"] else ""
    for address in options["addresses"]:
        try:
            await api.request("PUT", f"/v1/agent/join/{quote(address, safe=':[]')}{query}")
        except APIError as exc:
            ctx.error(f"Error joining address '{address}': {exc}")
            continue
        joined += 1
    if joined == 0:
        ctx.error("Failed to join any nodes.")
        return 1
    ctx.out(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0
