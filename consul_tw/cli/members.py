# -*- test-case-name: tests.unit.cli.test_members -*-
"""
``consul-tw members``: the cluster members as this agent's gossip sees them.

Mirrors Consul 1.8's ``command/members``: ``GET
/v1/agent/members?segment=_all`` (``&wan=1`` with ``-wan``), rewrite the
segment tag for display, filter on the status regex, sort servers first,
and print a columnized table.  The table is the Consul 1.8 layout (no
Partition column), which is what the tutorial shows.

Exit codes are part of the interface (scripts poll ``consul members``):
0 when something was printed, 2 when the filter left nothing, 1 on error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from consul_tw.cli._flags import HTTPOptions
from consul_tw.cli._http import APIError, CommandContext, connect
from consul_tw.cli._table import columnize

#: serf.MemberStatus.String(), indexed by the integer in the API's Status.
STATUS_NAMES = ("none", "alive", "leaving", "left", "failed")
ALL_SEGMENTS = "_all"
STANDARD_HEADER = ("Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Segment")
DETAILED_HEADER = ("Node", "Address", "Status", "Tags")


class MembersOptions(HTTPOptions):
    """Flags of ``consul members``."""

    synopsis_args = "[options]"
    longdesc = "Outputs the members of a running Consul agent."
    optFlags: ClassVar[list[list[object]]] = [
        ["detailed", None, "Provides detailed information about nodes."],
        ["wan", None, "If the agent is in server mode, list the peers in the WAN pool."],
    ]
    optParameters: ClassVar[list[list[object]]] = [
        ["status", None, ".*", "Only show members whose status matches this regular expression."],
        ["segment", None, ALL_SEGMENTS, "Only show members of this network segment."],
        ["filter", None, None, "Filter expression to send with the request."],
    ]


def status_name(code: int) -> str:
    """The status string for the API's integer code (``unknown`` if new)."""
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else "unknown"


def format_address(addr: str, port: int) -> str:
    """
    ``Addr:Port`` as Go's ``net.TCPAddr.String`` prints it.

    IPv6 gets brackets and an IPv4-mapped address prints as IPv4; a value
    that is not an IP prints as ``:port`` because Go's ``ParseIP`` yields nil.
    """
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return f":{port}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"{ip.ipv4_mapped}:{port}"
        return f"[{ip}]:{port}"
    return f"{ip}:{port}"


@attrs.frozen
class Member:
    """One entry of ``/v1/agent/members``, with display-ready tags."""

    name: str
    addr: str
    port: int
    status: int
    tags: Mapping[str, str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        """Read the fields the CLI uses; a missing field reads as empty."""
        return cls(
            name=str(data.get("Name", "")),
            addr=str(data.get("Addr", "")),
            port=int(data.get("Port", 0)),
            status=int(data.get("Status", 0)),
            tags={str(k): str(v) for k, v in (data.get("Tags") or {}).items()},
        )

    @property
    def role(self) -> str:
        """The ``role`` tag: ``consul`` for servers, ``node`` for clients."""
        return self.tags.get("role", "")

    @property
    def status_text(self) -> str:
        """The status as a word, as shown and as matched by ``-status``."""
        return status_name(self.status)

    @property
    def address(self) -> str:
        """``Addr:Port`` for display."""
        return format_address(self.addr, self.port)

    def for_display(self, segment: str) -> Member:
        """
        A copy with the segment tag rewritten the way the CLI shows it.

        When listing all segments, a server is in every segment, so it shows
        ``<all>``; any other member with an empty segment is in the default
        one, shown as ``<default>``.  ``-detailed`` prints these rewritten
        tags too, which is why this is a tag rewrite and not a column rule.
        """
        tags = dict(self.tags)
        if segment == ALL_SEGMENTS and self.role == "consul":
            tags["segment"] = "<all>"
        elif not tags.get("segment"):
            tags["segment"] = "<default>"
        return attrs.evolve(self, tags=tags)


def sort_key(member: Member) -> tuple[bool, str, str]:
    """Servers first, then by segment, then by name (Consul's order)."""
    return (member.role != "consul", member.tags.get("segment", ""), member.name)


def select_members(
    members: Iterable[Member], status: re.Pattern[str], segment: str = ALL_SEGMENTS
) -> list[Member]:
    """
    Rewrite, filter and sort members for display.

    ``-status`` uses Go's ``regexp.MatchString``, which searches anywhere in
    the string, hence :meth:`re.Pattern.search` rather than ``fullmatch``.
    """
    shown = [m.for_display(segment) for m in members]
    shown = [m for m in shown if status.search(m.status_text)]
    return sorted(shown, key=sort_key)


def build_field(tags: Mapping[str, str]) -> str:
    """The Build column: the ``build`` tag up to its first ``:``."""
    build = tags.get("build", "")
    if not build:
        return "< 0.3"
    return build.split(":", 1)[0]


def standard_rows(members: Iterable[Member]) -> list[list[str]]:
    """The default table, header included."""
    rows = [list(STANDARD_HEADER)]
    for m in members:
        kind = {"consul": "server", "node": "client"}.get(m.role)
        if kind is None:
            # Consul prints nothing but the node's identity for non-Consul
            # serf members: their tags mean nothing to it.
            rows.append([m.name, m.address, m.status_text, "unknown", "", "", "", ""])
            continue
        rows.append(
            [
                m.name,
                m.address,
                m.status_text,
                kind,
                build_field(m.tags),
                m.tags.get("vsn", ""),
                m.tags.get("dc", ""),
                m.tags.get("segment", ""),
            ]
        )
    return rows


def detailed_rows(members: Iterable[Member]) -> list[list[str]]:
    """The ``-detailed`` table: all tags as sorted ``k=v`` pairs."""
    rows = [list(DETAILED_HEADER)]
    for m in members:
        tags = ",".join(f"{key}={m.tags[key]}" for key in sorted(m.tags))
        rows.append([m.name, m.address, m.status_text, tags])
    return rows


def members_query(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The query string Consul's api.MembersOpts sends for these flags."""
    query = [("segment", options["segment"])]
    if options["wan"]:
        query.append(("wan", "1"))
    if options["filter"]:
        query.append(("filter", options["filter"]))
    return query


async def run(options: MembersOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw members``; returns the exit code."""
    try:
        status = re.compile(options["status"])
    except re.error as exc:
        ctx.error(f"Failed to compile status regexp: {exc}")
        return 1
    api = connect(ctx, options)
    if api is None:
        return 1
    try:
        answer = await api.get_json("/v1/agent/members", members_query(options))
    except APIError as exc:
        ctx.error(f"Error retrieving members: {exc}")
        return 1
    # A client agent answers ?wan with null: no WAN members to show.
    members = [Member.from_json(item) for item in answer or []]
    shown = select_members(members, status, options["segment"])
    if not shown:
        return 2
    rows = detailed_rows(shown) if options["detailed"] else standard_rows(shown)
    ctx.out(columnize(rows))
    return 0
