# -*- test-case-name: tests.unit.gossip.test_merge -*-
"""
Consul's merge checks: which members a pool refuses (gossip-wire.md §8.3).

Serf asks these before it accepts a join's member list or an alive
message; a refusal text is returned to the joiner (and logged), and the
members are not added.  LAN: another datacenter, another segment, or a
node ID that is already someone else's.  WAN: anything that is not a
Consul server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from consul_tw.gossip.members import Member, MemberStatus

MergeCheck = Callable[[Sequence[Member]], "str | None"]


def lan_merge_check(
    *,
    node_name: str,
    node_id: str,
    datacenter: str,
    segment: str = "",
    known: Callable[[], Sequence[Member]] = lambda: (),
) -> MergeCheck:
    """The LAN pool's veto; ``known`` gives the members already in the pool."""

    def check(members: Sequence[Member]) -> str | None:
        ids: dict[str, str] = {
            m.tags["id"]: m.name
            for m in known()
            if m.status is not MemberStatus.LEFT and m.tags.get("id") and m.name != node_name
        }
        for member in members:
            role = member.tags.get("role")
            if role in ("node", "consul") and member.tags.get("dc", "") != datacenter:
                return (
                    f"Member '{member.name}' part of wrong datacenter '{member.tags.get('dc', '')}'"
                )
            if member.tags.get("segment", "") != segment and role in ("node", "consul"):
                return (
                    f"Member '{member.name}' part of wrong segment "
                    f"'{member.tags.get('segment', '')}' (expected '{segment}')"
                )
            member_id = member.tags.get("id")
            if not member_id or member.status is MemberStatus.LEFT:
                continue
            if member_id == node_id and member.name != node_name:
                return (
                    f"Member '{member.name}' has conflicting node ID '{member_id}' "
                    "with this agent's ID"
                )
            owner = ids.get(member_id)
            if owner is not None and owner != member.name:
                return (
                    f"Member '{member.name}' has conflicting node ID '{member_id}' "
                    f"with member '{owner}'"
                )
            ids[member_id] = member.name
        return None

    return check


def wan_merge_check() -> MergeCheck:
    """The WAN pool admits Consul servers only."""

    def check(members: Sequence[Member]) -> str | None:
        for member in members:
            if not is_consul_server(member):
                return f"Member '{member.name}' is not a server"
        return None

    return check


def is_consul_server(member: Member) -> bool:
    """Consul's test: role=consul, with integer ``port`` and ``vsn`` tags (and a dc)."""
    tags = member.tags
    if tags.get("role") != "consul" or not tags.get("dc"):
        return False
    required = ("port", "vsn")
    optional = tuple(k for k in ("expect", "raft_vsn", "wan_join_port") if k in tags)
    return all(tags.get(key, "").isdigit() for key in required + optional)
