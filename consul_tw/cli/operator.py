# -*- test-case-name: tests.unit.cli.test_operator -*-
"""
``consul-tw operator raft list-peers`` and ``operator raft remove-peer``.

Mirrors Consul 1.8's ``command/operator/raft``: ``list-peers`` prints the
Raft configuration (``GET /v1/operator/raft/configuration``) as the table
``Node  ID  Address  State  Voter  RaftProtocol``; ``remove-peer`` sends
``DELETE /v1/operator/raft/peer`` with ``?id=`` or ``?address=``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from twisted.python import usage

from consul_tw.cli._flags import CommandOptions, HTTPOptions, ServerHTTPOptions
from consul_tw.cli._http import APIError, CommandContext, connect
from consul_tw.cli._table import columnize

PEERS_HEADER = ("Node", "ID", "Address", "State", "Voter", "RaftProtocol")


class ListPeersOptions(ServerHTTPOptions):
    longdesc = "Displays the current Raft peer configuration."


class RemovePeerOptions(HTTPOptions):
    longdesc = "Removes the Consul server with the given address or ID from the Raft configuration."
    optParameters: ClassVar[list[list[object]]] = [
        ["id", None, None, "The ID of the server to remove."],
        ["address", None, None, "The address of the server to remove (IP:port)."],
    ]

    def postOptions(self) -> None:
        if bool(self["id"]) == bool(self["address"]):
            raise usage.UsageError("Must specify either -id or -address")


class RaftOptions(CommandOptions):
    longdesc = "Operate on the Raft peer set of the Consul servers."
    subCommands: ClassVar[list[tuple[str, None, type[usage.Options], str]]] = [
        ("list-peers", None, ListPeersOptions, "Display the current Raft peer configuration"),
        (
            "remove-peer",
            None,
            RemovePeerOptions,
            "Remove a Consul server from the Raft configuration",
        ),
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("raft needs a subcommand: list-peers or remove-peer")


class OperatorOptions(CommandOptions):
    longdesc = "Provides cluster-level tools for Consul operators."
    subCommands: ClassVar[list[tuple[str, None, type[usage.Options], str]]] = [
        ("raft", None, RaftOptions, "Provides cluster-level tools for Consul operators"),
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("operator needs a subcommand: raft")


def peer_rows(servers: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """The ``list-peers`` table, header included."""
    rows = [list(PEERS_HEADER)]
    for server in servers:
        rows.append(
            [
                str(server.get("Node", "")),
                str(server.get("ID", "")),
                str(server.get("Address", "")),
                "leader" if server.get("Leader") else "follower",
                "true" if server.get("Voter") else "false",
                str(server.get("ProtocolVersion", "")) or "<=1",
            ]
        )
    return rows


async def run_list_peers(options: ListPeersOptions, ctx: CommandContext) -> int:
    api = connect(ctx, options)
    if api is None:
        return 1
    try:
        answer = await api.get_json("/v1/operator/raft/configuration")
    except APIError as exc:
        ctx.error(f"Error getting peers: {exc}")
        return 1
    ctx.out(columnize(peer_rows((answer or {}).get("Servers") or [])))
    return 0


async def run_remove_peer(options: RemovePeerOptions, ctx: CommandContext) -> int:
    api = connect(ctx, options)
    if api is None:
        return 1
    key, value = ("id", options["id"]) if options["id"] else ("address", options["address"])
    try:
        await api.request("DELETE", "/v1/operator/raft/peer", [(key, value)])
    except APIError as exc:
        ctx.error(f"Error removing peer: {exc}")
        return 1
    ctx.out(f'Removed peer with {key} "{value}"')
    return 0
