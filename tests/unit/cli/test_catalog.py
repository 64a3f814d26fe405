# -*- test-case-name: tests.unit.cli.test_catalog -*-
"""Tests for ``consul-tw catalog ...`` (:mod:`consul_tw.cli.catalog`)."""

from __future__ import annotations

from typing import ClassVar

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.cli.test_support import CliResult, FakeAgent, RefusingClient, json_answer, run_cli

#: The dev-agent node from consul-api.md section 4.2, plus a second node.
NODES = [
    {
        "ID": "5c7e3a1b-93f3-2f0e-5a8d-3f1c2e4d6b7a",
        "Node": "host",
        "Address": "127.0.0.1",
        "Datacenter": "dc1",
        "TaggedAddresses": {
            "lan": "127.0.0.1",
            "lan_ipv4": "127.0.0.1",
            "wan": "127.0.0.1",
            "wan_ipv4": "127.0.0.1",
        },
        "Meta": {"consul-network-segment": "", "consul-version": "1.17.0"},
        "CreateIndex": 13,
        "ModifyIndex": 14,
    },
    {
        "ID": "0f1e2d3c-0000-1111-2222-333344445555",
        "Node": "web-1",
        "Address": "10.0.0.12",
        "Datacenter": "dc1",
        "TaggedAddresses": None,
        "Meta": {},
        "CreateIndex": 20,
        "ModifyIndex": 20,
    },
]


def agent(path: str, value: object) -> FakeAgent:
    """A fake agent answering GET ``path`` with ``value``."""
    return FakeAgent({("GET", path): json_answer(value)})


class NodesTests(SynchronousTestCase):
    """``catalog nodes``."""

    def test_table(self) -> None:
        """``Node  ID  Address  DC`` with the ID cut to its first part."""
        expected = (
            "Node   ID        Address    DC\n"
            "host   5c7e3a1b  127.0.0.1  dc1\n"
            "web-1  0f1e2d3c  10.0.0.12  dc1\n"
        )
        fake = agent("/v1/catalog/nodes", NODES)
        self.assertEqual(run_cli(["catalog", "nodes"], fake), CliResult(0, expected, ""))
        self.assertEqual(fake.requests[0].uri, "/v1/catalog/nodes")

    def test_detailed(self) -> None:
        """Full IDs plus TaggedAddresses and Meta as sorted ``k=v`` lists."""
        tagged = "lan=127.0.0.1, lan_ipv4=127.0.0.1, wan=127.0.0.1, wan_ipv4=127.0.0.1"
        meta = "consul-network-segment=, consul-version=1.17.0"
        expected = (
            "Node   ID                                    Address    DC   TaggedAddresses"
            + " " * (len(tagged) - len("TaggedAddresses"))
            + "  Meta\n"
            f"host   5c7e3a1b-93f3-2f0e-5a8d-3f1c2e4d6b7a  127.0.0.1  dc1  {tagged}  {meta}\n"
            "web-1  0f1e2d3c-0000-1111-2222-333344445555  10.0.0.12  dc1\n"
        )
        result = run_cli(["catalog", "nodes", "-detailed"], agent("/v1/catalog/nodes", NODES))
        self.assertEqual(result, CliResult(0, expected, ""))

    def test_query_flags(self) -> None:
        """-datacenter, -stale, -near and repeated -node-meta reach the query."""
        fake = agent("/v1/catalog/nodes", NODES)
        run_cli(
            [
                "catalog",
                "nodes",
                "-datacenter=dc2",
                "-stale",
                "-near",
                "_agent",
                "-node-meta",
                "rack=r1",
                "-node-meta=az=a",
            ],
            fake,
        )
        self.assertEqual(
            fake.requests[0].uri,
            "/v1/catalog/nodes?dc=dc2&near=_agent&node-meta=az%3Aa&node-meta=rack%3Ar1&stale=",
        )

    def test_bad_node_meta(self) -> None:
        """``-node-meta`` without ``=`` is a usage error."""
        result = run_cli(["catalog", "nodes", "-node-meta", "rack"], FakeAgent())
        self.assertEqual(result.code, 1)
        self.assertIn('Missing "=" value in argument: rack', result.err.splitlines()[0])

    def test_by_service(self) -> None:
        """``-service`` lists the nodes of that service's instances."""
        entries = [
            {"ID": "aaaaaaaa-1", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1"},
        ]
        fake = agent("/v1/catalog/service/web", entries)
        result = run_cli(["catalog", "nodes", "-service=web"], fake)
        expected = "Node  ID        Address   DC\nn1    aaaaaaaa  10.0.0.1  dc1\n"
        self.assertEqual(result, CliResult(0, expected, ""))

    def test_empty(self) -> None:
        """No nodes: a hint on stderr, exit 0 (as Consul)."""
        self.assertEqual(
            run_cli(["catalog", "nodes"], agent("/v1/catalog/nodes", [])),
            CliResult(0, "", "No nodes match the given query - try expanding your search.\n"),
        )

    def test_error(self) -> None:
        """Failures read ``Error listing nodes: ...``."""
        result = run_cli(["catalog", "nodes"], RefusingClient())
        self.assertEqual(
            result,
            CliResult(
                1,
                "",
                'Error listing nodes: Get "http://127.0.0.1:8500/v1/catalog/nodes": '
                "dial tcp 127.0.0.1:8500: connect: connection refused\n",
            ),
        )

    def test_too_many_arguments(self) -> None:
        """Positional arguments are refused."""
        result = run_cli(["catalog", "nodes", "extra"], FakeAgent())
        self.assertEqual(result.code, 1)
        self.assertEqual(result.err.splitlines()[0], "Too many arguments (expected 0, got 1)")


class DatacentersTests(SynchronousTestCase):
    """``catalog datacenters``."""

    def test_list(self) -> None:
        """One datacenter per line."""
        fake = agent("/v1/catalog/datacenters", ["dc1", "dc2"])
        self.assertEqual(run_cli(["catalog", "datacenters"], fake), CliResult(0, "dc1\ndc2\n", ""))

    def test_error(self) -> None:
        """Errors exit 1."""
        result = run_cli(["catalog", "datacenters"], RefusingClient())
        self.assertEqual(result.code, 1)
        self.assertTrue(
            result.err.startswith('Error listing datacenters: Get "http://127.0.0.1:8500')
        )


class ServicesTests(SynchronousTestCase):
    """``catalog services``."""

    SERVICES: ClassVar[dict[str, list[str]]] = {
        "web": ["v2", "primary"],
        "consul": [],
        "db": ["pg"],
    }

    def test_names(self) -> None:
        """Names sorted, one per line."""
        fake = agent("/v1/catalog/services", self.SERVICES)
        self.assertEqual(
            run_cli(["catalog", "services"], fake), CliResult(0, "consul\ndb\nweb\n", "")
        )

    def test_tags(self) -> None:
        """``-tags``: a tabwriter column padded by 6, tags sorted and comma-joined."""
        fake = agent("/v1/catalog/services", self.SERVICES)
        expected = "consul\ndb" + " " * 10 + "pg\nweb" + " " * 9 + "primary,v2\n"
        self.assertEqual(
            run_cli(["catalog", "services", "-tags"], fake), CliResult(0, expected, "")
        )

    def test_by_node(self) -> None:
        """``-node`` lists that node's services, merging instance tags."""
        answer = {
            "Node": {"Node": "n1"},
            "Services": {
                "web-1": {"Service": "web", "Tags": ["a"]},
                "web-2": {"Service": "web", "Tags": ["b"]},
                "db": {"Service": "db", "Tags": []},
            },
        }
        fake = agent("/v1/catalog/node/n1", answer)
        result = run_cli(["catalog", "services", "-node", "n1", "-tags"], fake)
        self.assertEqual(result, CliResult(0, "db\nweb" + " " * 6 + "a,b\n", ""))

    def test_unknown_node(self) -> None:
        """An unknown node answers ``null``: nothing matches."""
        result = run_cli(
            ["catalog", "services", "-node=nope"], agent("/v1/catalog/node/nope", None)
        )
        self.assertEqual(
            result,
            CliResult(0, "", "No services match the given query - try expanding your search.\n"),
        )

    def test_error(self) -> None:
        """Failures read ``Error listing services: ...``."""
        fake = FakeAgent({("GET", "/v1/catalog/services"): (500, b"No cluster leader")})
        self.assertEqual(
            run_cli(["catalog", "services"], fake),
            CliResult(
                1, "", "Error listing services: Unexpected response code: 500 (No cluster leader)\n"
            ),
        )


class CatalogGroupTests(SynchronousTestCase):
    """``catalog`` itself."""

    def test_needs_subcommand(self) -> None:
        """A bare ``catalog`` prints one error line and the catalog usage."""
        result = run_cli(["catalog"])
        self.assertEqual(result.code, 1)
        lines = result.err.splitlines()
        self.assertEqual(lines[0], "catalog needs a subcommand: datacenters, nodes or services")
        self.assertEqual(lines[1], "Usage: consul-tw catalog <subcommand> [options]")

    def test_unknown_subcommand(self) -> None:
        """An unknown catalog subcommand is a usage error."""
        result = run_cli(["catalog", "bogus"])
        self.assertEqual((result.code, result.err.splitlines()[0]), (1, "Unknown command: bogus"))
