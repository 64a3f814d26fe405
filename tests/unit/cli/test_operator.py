# -*- test-case-name: tests.unit.cli.test_operator -*-
"""Tests for ``consul-tw operator raft ...`` (:mod:`consul_tw.cli.operator`)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.cli.test_support import CliResult, FakeAgent, json_answer, run_cli

CONFIGURATION = {
    "Servers": [
        {
            "ID": "04fc67b2-e910-4c9a-a704-ecf60930ae09",
            "Node": "s1",
            "Address": "127.0.0.1:8300",
            "Leader": True,
            "ProtocolVersion": "3",
            "Voter": True,
        },
        {
            "ID": "34495a35-34f9-4467-92c9-d24b8a266a8e",
            "Node": "s2",
            "Address": "127.0.0.2:8300",
            "Leader": False,
            "ProtocolVersion": "3",
            "Voter": True,
        },
    ],
    "Index": 1,
}


class ListPeersTests(SynchronousTestCase):
    def test_table(self) -> None:
        fake = FakeAgent(
            {("GET", "/v1/operator/raft/configuration"): json_answer(CONFIGURATION)}
        )
        result = run_cli(["operator", "raft", "list-peers", "-stale"], fake)
        self.assertEqual(
            result,
            CliResult(
                0,
                "Node  ID                                    Address         State     Voter"
                "  RaftProtocol\n"
                "s1    04fc67b2-e910-4c9a-a704-ecf60930ae09  127.0.0.1:8300  leader    true"
                "   3\n"
                "s2    34495a35-34f9-4467-92c9-d24b8a266a8e  127.0.0.2:8300  follower  true"
                "   3\n",
                "",
            ),
        )
        self.assertEqual(fake.requests[0].uri, "/v1/operator/raft/configuration?stale=")

    def test_error(self) -> None:
        result = run_cli(["operator", "raft", "list-peers"], FakeAgent({}))
        self.assertEqual(result.code, 1)
        self.assertTrue(result.err.startswith("Error getting peers: "), result.err)


class RemovePeerTests(SynchronousTestCase):
    def test_by_id(self) -> None:
        fake = FakeAgent({("DELETE", "/v1/operator/raft/peer"): (200, b"")})
        result = run_cli(["operator", "raft", "remove-peer", "-id=abc"], fake)
        self.assertEqual(result, CliResult(0, 'Removed peer with id "abc"\n', ""))
        self.assertEqual(fake.requests[0].uri, "/v1/operator/raft/peer?id=abc")

    def test_needs_exactly_one_of_id_or_address(self) -> None:
        for argv in ([], ["-id=a", "-address=127.0.0.1:8300"]):
            result = run_cli(["operator", "raft", "remove-peer", *argv], FakeAgent({}))
            self.assertEqual(result.code, 1)
            self.assertIn("Must specify either -id or -address", result.err)
