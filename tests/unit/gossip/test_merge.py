"""Consul's merge checks for the LAN and WAN pools."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.members import Member, MemberStatus, client_tags, server_tags
from consul_tw.gossip.merge import is_consul_server, lan_merge_check, wan_merge_check


def client(name: str, node_id: str, dc: str = "dc1") -> Member:
    return Member(
        name=name, addr="10.0.0.1", port=8301, tags=client_tags(datacenter=dc, node_id=node_id)
    )


def server(name: str) -> Member:
    return Member(
        name=name,
        addr="10.0.0.2",
        port=8302,
        tags=server_tags(
            datacenter="dc1",
            node_id=f"id-{name}",
            server_port=8300,
            wan_port=8302,
            bootstrap=False,
            wan=True,
        ),
    )


class LanTests(SynchronousTestCase):
    def check(self, known: list[Member] = ()) -> object:  # type: ignore[assignment]
        return lan_merge_check(
            node_name="me", node_id="id-me", datacenter="dc1", known=lambda: known
        )

    def test_accepts_same_dc_and_plain_serf_members(self) -> None:
        plain = Member(name="serf1", addr="10.0.0.3", port=7946, tags={"role": "web"})
        self.assertIsNone(self.check()([client("a", "id-a"), plain]))

    def test_refuses_other_datacenter(self) -> None:
        self.assertEqual(
            self.check()([client("a", "id-a", dc="dc2")]),
            "Member 'a' part of wrong datacenter 'dc2'",
        )

    def test_refuses_our_node_id_under_another_name(self) -> None:
        self.assertIn("with this agent's ID", self.check()([client("impostor", "id-me")]) or "")

    def test_refuses_duplicate_ids_but_not_left_members(self) -> None:
        check = self.check([client("a", "id-x")])
        self.assertIn("with member 'a'", check([client("b", "id-x")]) or "")
        left = attrs.evolve(client("a", "id-x"), status=MemberStatus.LEFT)
        self.assertIsNone(self.check([left])([client("b", "id-x")]))
        self.assertIsNone(check([client("a", "id-x")]), "a member meeting itself again is fine")

    def test_refuses_other_segment(self) -> None:
        member = client("a", "id-a")
        member = attrs.evolve(member, tags={**member.tags, "segment": "alpha"})
        self.assertIn("wrong segment 'alpha'", self.check()([member]) or "")


class WanTests(SynchronousTestCase):
    def test_servers_only(self) -> None:
        self.assertIsNone(wan_merge_check()([server("s1.dc1")]))
        self.assertEqual(wan_merge_check()([client("c1", "id")]), "Member 'c1' is not a server")
        broken = attrs.evolve(server("s2.dc1"), tags={**server("s2.dc1").tags, "port": "x"})
        self.assertFalse(is_consul_server(broken))
