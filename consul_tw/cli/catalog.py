# -*- test-case-name: tests.unit.cli.test_catalog -*-
"""
``consul-tw catalog datacenters|nodes|services``.

Mirrors Consul's ``command/catalog/list/*``: the same endpoints, the same
columns (``Node  ID  Address  DC``, the ID cut at its first dash), the same
``k=v, k=v`` rendering of maps in ``-detailed``, and the same friendly
stderr note with exit 0 when a query matches nothing.  One intended
difference: ``catalog datacenters`` exits 1 when the request fails (Consul
prints the error but exits 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from twisted.python import usage

from consul_tw.cli._flags import CommandOptions, ServerHTTPOptions
from consul_tw.cli._http import APIError, CommandContext, connect
from consul_tw.cli._table import columnize, display_width

NODES_HEADER = ("Node", "ID", "Address", "DC")
DETAILED_NODES_HEADER = (*NODES_HEADER, "TaggedAddresses", "Meta")
#: Consul lists ``services -tags`` with a tabwriter padded by 6 spaces.
TAGS_PADDING = 6


class _NodeMetaOptions(ServerHTTPOptions):
    """Adds Consul's repeatable ``-node-meta key=value`` flag."""

    def __init__(self) -> None:
        super().__init__()
        self["node-meta"] = {}

    def opt_node_meta(self, value: str) -> None:
        """Filter on node metadata key=value (repeatable)."""
        key, sep, meta = value.partition("=")
        if not sep:
            raise usage.UsageError(
                f'invalid value "{value}" for flag -node-meta: '
                f'Missing "=" value in argument: {value}'
            )
        self["node-meta"][key] = meta


def node_meta_query(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``node-meta=key:value`` pairs, as Consul's api encodes NodeMeta."""
    return [("node-meta", f"{k}:{v}") for k, v in sorted(options["node-meta"].items())]


class NodesOptions(_NodeMetaOptions):
    """Flags of ``consul catalog nodes``."""

    longdesc = "Retrieves the list of nodes registered in a given datacenter."
    optFlags: ClassVar[list[list[object]]] = [
        ["detailed", None, "Output full node IDs, tagged addresses and metadata."],
    ]
    optParameters: ClassVar[list[list[object]]] = [
        [
            "near",
            None,
            None,
            "Sort by estimated round-trip time from this node (_agent: this one).",
        ],
        ["service", None, None, "Only list nodes providing this service."],
        ["filter", None, None, "Filter expression to send with the request."],
    ]


class ServicesOptions(_NodeMetaOptions):
    """Flags of ``consul catalog services``."""

    longdesc = "Retrieves the list of services registered in a given datacenter."
    optFlags: ClassVar[list[list[object]]] = [
        ["tags", None, "Display each service's tags as a comma-separated list."],
    ]
    optParameters: ClassVar[list[list[object]]] = [
        ["node", None, None, "Only list the services of this node."],
    ]


class DatacentersOptions(ServerHTTPOptions):
    """Flags of ``consul catalog datacenters``."""

    longdesc = "Retrieves the list of all known datacenters."


class CatalogOptions(CommandOptions):
    """``consul catalog`` only groups its subcommands."""

    synopsis_args = "<subcommand> [options]"
    longdesc = "Interact with the catalog: list datacenters, nodes and services."
    subCommands: ClassVar[list[tuple[str, None, type[usage.Options], str]]] = [
        ("datacenters", None, DatacentersOptions, "Lists all known datacenters"),
        ("nodes", None, NodesOptions, "Lists all nodes in the given datacenter"),
        ("services", None, ServicesOptions, "Lists all registered services in a datacenter"),
    ]

    def postOptions(self) -> None:
        """A bare ``catalog`` is a usage error (Consul shows its help, exit 1)."""
        if self.subCommand is None:
            raise usage.UsageError("catalog needs a subcommand: datacenters, nodes or services")


def map_to_kv(mapping: Mapping[str, Any] | None) -> str:
    """Consul's ``mapToKV``: sorted ``k=v`` pairs joined by ``", "``."""
    mapping = mapping or {}
    return ", ".join(f"{k}={mapping[k]}" for k in sorted(mapping))


def short_id(node_id: str) -> str:
    """A node ID up to its first dash: the first 8 hex digits of a UUID."""
    index = node_id.find("-")
    return node_id[:index] if index > 0 else node_id


def node_rows(nodes: Iterable[Mapping[str, Any]], detailed: bool) -> list[list[str]]:
    """The ``catalog nodes`` table, header included."""
    rows = [list(DETAILED_NODES_HEADER if detailed else NODES_HEADER)]
    for node in nodes:
        node_id = str(node.get("ID") or "")
        row = [
            str(node.get("Node", "")),
            node_id if detailed else short_id(node_id),
            str(node.get("Address", "")),
            str(node.get("Datacenter", "")),
        ]
        if detailed:
            row += [map_to_kv(node.get("TaggedAddresses")), map_to_kv(node.get("Meta"))]
        rows.append(row)
    return rows


def service_node_as_node(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The Node view of a ServiceNode, as ``catalog nodes -service`` uses it."""
    return {
        "ID": entry.get("ID"),
        "Node": entry.get("Node"),
        "Address": entry.get("Address"),
        "Datacenter": entry.get("Datacenter"),
        "TaggedAddresses": entry.get("TaggedAddresses"),
        "Meta": entry.get("NodeMeta"),
    }


async def run_nodes(options: NodesOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw catalog nodes``; returns the exit code."""
    api = connect(ctx, options)
    if api is None:
        return 1
    query = node_meta_query(options)
    query += [(key, options[key]) for key in ("near", "filter") if options[key]]
    try:
        if options["service"]:
            path = "/v1/catalog/service/" + quote(options["service"], safe="")
            entries = await api.get_json(path, query)
            nodes = [service_node_as_node(entry) for entry in entries or []]
        else:
            nodes = await api.get_json("/v1/catalog/nodes", query) or []
    except APIError as exc:
        what = "nodes for service" if options["service"] else "nodes"
        ctx.error(f"Error listing {what}: {exc}")
        return 1
    if not nodes:
        ctx.error("No nodes match the given query - try expanding your search.")
        return 0
    ctx.out(columnize(node_rows(nodes, options["detailed"])))
    return 0


def services_of_node(answer: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """
    Name → tags from ``/v1/catalog/node/<node>``.

    Consul concatenates the tags of every instance of a service (duplicates
    included) and so does this.
    """
    services: dict[str, list[str]] = {}
    for instance in ((answer or {}).get("Services") or {}).values():
        services.setdefault(instance.get("Service", ""), []).extend(instance.get("Tags") or [])
    return services


def service_lines(services: Mapping[str, list[str] | None], tags: bool) -> list[str]:
    """
    The ``catalog services`` output lines, sorted by name.

    With ``-tags`` Consul aligns through a tabwriter with 6 spaces of
    padding; lines are right-stripped here (Go leaves trailing spaces on
    untagged services except the last).
    """
    names = sorted(services)
    if not tags:
        return names
    width = max(display_width(name) for name in names) + TAGS_PADDING
    return [
        (
            name + " " * (width - display_width(name)) + ",".join(sorted(services[name] or []))
        ).rstrip()
        for name in names
    ]


async def run_services(options: ServicesOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw catalog services``; returns the exit code."""
    api = connect(ctx, options)
    if api is None:
        return 1
    query = node_meta_query(options)
    try:
        if options["node"]:
            path = "/v1/catalog/node/" + quote(options["node"], safe="")
            services = services_of_node(await api.get_json(path, query))
        else:
            services = await api.get_json("/v1/catalog/services", query) or {}
    except APIError as exc:
        what = "services for node" if options["node"] else "services"
        ctx.error(f"Error listing {what}: {exc}")
        return 1
    if not services:
        ctx.error("No services match the given query - try expanding your search.")
        return 0
    ctx.out("\n".join(service_lines(services, options["tags"])))
    return 0


async def run_datacenters(options: DatacentersOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw catalog datacenters``; returns the exit code."""
    api = connect(ctx, options)
    if api is None:
        return 1
    try:
        datacenters = await api.get_json("/v1/catalog/datacenters") or []
    except APIError as exc:
        ctx.error(f"Error listing datacenters: {exc}")
        return 1
    for dc in datacenters:
        ctx.out(str(dc))
    return 0
