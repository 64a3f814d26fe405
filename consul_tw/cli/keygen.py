# -*- test-case-name: tests.unit.cli.test_keygen -*-
"""
``consul-tw keygen``: a fresh gossip encryption key for ``-encrypt``.

Like ``consul keygen`` it prints 32 random bytes in base64 and needs no
agent; the key works with consul-tw's and memberlist's AES-256-GCM keyring.
"""

from __future__ import annotations

from consul_tw.cli._flags import CommandOptions
from consul_tw.cli._http import CommandContext
from consul_tw.gossip.memberlist.keyring import generate_key


class KeygenOptions(CommandOptions):
    """``consul keygen`` takes no flags."""

    longdesc = "Generates a new encryption key that can be used to configure the agent."


async def run(options: KeygenOptions, ctx: CommandContext) -> int:
    ctx.out(generate_key())
    return 0
