# -*- test-case-name: tests.unit.cli.test_version -*-
"""
``consul-tw version`` (also ``consul-tw -version`` / ``-v``).

Prints the consul-tw version in Consul's layout, plus the protocol line:
consul-tw speaks the same Consul protocol range (2 by default, 2 to 3) as
Consul 1.8, which is what tools comparing versions look at.
"""

from __future__ import annotations

import consul_tw
from consul_tw.cli._flags import CommandOptions
from consul_tw.cli._http import CommandContext

PROTOCOL_LINE = (
    "Protocol 2 spoken by default, understands 2 to 3 "
    "(agent will automatically use protocol >2 when speaking to compatible agents)"
)


class VersionOptions(CommandOptions):
    """``consul version`` takes no flags."""

    longdesc = "Prints the version of consul-tw and the Consul protocol it speaks."


def version_text() -> str:
    """The two lines ``consul version`` prints (no trailing newline)."""
    return f"Consul v{consul_tw.__version__}\n{PROTOCOL_LINE}"


async def run(options: VersionOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw version``; always succeeds."""
    ctx.out(version_text())
    return 0
