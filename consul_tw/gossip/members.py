# -*- test-case-name: tests.unit.gossip.test_membership -*-
"""
Serf members as Consul reports them (``/v1/agent/members``, ``consul members``).

Status codes and the protocol/delegate version numbers are Serf's and
memberlist's; tags are the strings Consul puts in a member's node meta, which
is how every agent learns roles, ports and IDs of the others.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from consul_tw import __version__

#: The part of the ``build`` tag after the colon: Consul puts its git revision here.
REVISION = "consultw"
BUILD_TAG = f"{__version__}:{REVISION}"


class MemberStatus(enum.IntEnum):
    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@attrs.frozen(kw_only=True)
class Member:
    name: str
    addr: str
    port: int
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    status: MemberStatus = MemberStatus.ALIVE
    protocol_min: int = 1
    protocol_max: int = 5
    protocol_cur: int = 2
    delegate_min: int = 2
    delegate_max: int = 5
    delegate_cur: int = 4

    @property
    def is_server(self) -> bool:
        return self.tags.get("role") == "consul"


def server_tags(
    *,
    datacenter: str,
    node_id: str,
    server_port: int,
    wan_port: int,
    bootstrap: bool,
    wan: bool,
    expect: int = 0,
) -> dict[str, str]:
    """The tags a Consul server gossips about itself (LAN, or WAN with ``wan=True``)."""
    tags = {
        "acls": "0",
        "build": BUILD_TAG,
        "dc": datacenter,
        "id": node_id,
        "port": str(server_port),
        "raft_vsn": "3",
        "role": "consul",
        "vsn": "2",
        "vsn_max": "3",
        "vsn_min": "2",
    }
    if not wan:
        tags["segment"] = ""
        if wan_port > 0:
            tags["wan_join_port"] = str(wan_port)
    if bootstrap:
        tags["bootstrap"] = "1"
    if expect:
        tags["expect"] = str(expect)
    return tags


def client_tags(*, datacenter: str, node_id: str) -> dict[str, str]:
    """The tags a Consul client agent gossips about itself."""
    return {
        "build": BUILD_TAG,
        "dc": datacenter,
        "id": node_id,
        "role": "node",
        "segment": "",
        "vsn": "2",
        "vsn_max": "3",
        "vsn_min": "2",
    }
