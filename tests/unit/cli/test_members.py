# -*- test-case-name: tests.unit.cli.test_members -*-
"""
Tests for ``consul-tw members`` (:mod:`consul_tw.cli.members`).

The expected tables are written out literally: their exact spacing is the
thing users and scripts depend on.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from consul_tw.cli.members import Member, format_address, select_members
from tests.unit.cli.test_support import (
    SERVER_MEMBER,
    CliResult,
    FakeAgent,
    RefusingClient,
    SeenRequest,
    client_member,
    json_answer,
    run_cli,
)

MEMBERS_PATH = "/v1/agent/members"

#: A dev server plus two clients, deliberately out of display order.
CLUSTER = [
    client_member("web", "10.0.0.2"),
    SERVER_MEMBER,
    client_member("db", "10.0.0.3", status=4),
]

TABLE = (
    "Node  Address         Status  Type    Build   Protocol  DC   Segment\n"
    "host  127.0.0.1:8301  alive   server  1.17.0  2         dc1  <all>\n"
    "db    10.0.0.3:8301   failed  client  1.17.0  2         dc1  <default>\n"
    "web   10.0.0.2:8301   alive   client  1.17.0  2         dc1  <default>\n"
)

SERVER_TAGS = (
    "acls=0,build=1.17.0:4e3f428b,dc=dc1,ft_fs=1,ft_si=1,grpc_port=8502,"
    "grpc_tls_port=8503,id=5c7e3a1b-93f3-2f0e-5a8d-3f1c2e4d6b7a,port=8300,"
    "raft_vsn=3,role=consul,segment=<all>,vsn=2,vsn_max=3,vsn_min=2,wan_join_port=8302"
)

REFUSED = (
    'Error retrieving members: Get "http://127.0.0.1:8500/v1/agent/members?segment=_all": '
    "dial tcp 127.0.0.1:8500: connect: connection refused\n"
)


def agent_with(members: Any, code: int = 200) -> FakeAgent:
    """A fake agent answering ``/v1/agent/members`` with ``members``."""
    answer = json_answer(members) if code == 200 else (code, members)
    return FakeAgent({("GET", MEMBERS_PATH): answer})


class TableTests(SynchronousTestCase):
    """The default and ``-detailed`` tables."""

    def test_default_table(self) -> None:
        """Servers first, then by segment and name; columnized, exit 0."""
        agent = agent_with(CLUSTER)
        self.assertEqual(run_cli(["members"], agent), CliResult(0, TABLE, ""))
        self.assertEqual(
            agent.requests, [SeenRequest("GET", "/v1/agent/members?segment=_all", None)]
        )

    def test_no_trailing_spaces(self) -> None:
        """The last column is not padded."""
        for line in run_cli(["members"], agent_with(CLUSTER)).out.splitlines():
            self.assertEqual(line, line.rstrip())

    def test_detailed(self) -> None:
        """``-detailed`` shows all tags sorted, with the segment rewritten."""
        web = client_member("web", "10.0.0.2")
        result = run_cli(["members", "-detailed"], agent_with([web, SERVER_MEMBER]))
        web_tags = (
            "build=1.17.0:4e3f428b,dc=dc1,id=web-id,role=node,segment=<default>,"
            "vsn=2,vsn_max=3,vsn_min=2"
        )
        expected = (
            "Node  Address         Status  Tags\n"
            f"host  127.0.0.1:8301  alive   {SERVER_TAGS}\n"
            f"web   10.0.0.2:8301   alive   {web_tags}\n"
        )
        self.assertEqual(result, CliResult(0, expected, ""))

    def test_wan(self) -> None:
        """``-wan`` adds ``&wan=1``; WAN names are ``node.dc`` on port 8302."""
        wan = copy.deepcopy(SERVER_MEMBER)
        wan.update(Name="host.dc1", Port=8302)
        agent = agent_with([wan])
        result = run_cli(["members", "-wan"], agent)
        expected = (
            "Node      Address         Status  Type    Build   Protocol  DC   Segment\n"
            "host.dc1  127.0.0.1:8302  alive   server  1.17.0  2         dc1  <all>\n"
        )
        self.assertEqual(result, CliResult(0, expected, ""))
        self.assertEqual(agent.requests[0].uri, "/v1/agent/members?segment=_all&wan=1")

    def test_wan_on_client_is_null(self) -> None:
        """A client agent answers ``?wan`` with ``null``: nothing to show."""
        self.assertEqual(run_cli(["members", "-wan"], agent_with(None)), CliResult(2, "", ""))

    def test_unknown_role_and_old_build(self) -> None:
        """Non-Consul members show ``unknown``; an empty build is ``< 0.3``."""
        other = client_member("other", "10.0.0.9")
        other["Tags"] = {}
        old = client_member("old", "10.0.0.8", build="")
        result = run_cli(["members"], agent_with([other, old]))
        expected = (
            "Node   Address        Status  Type     Build  Protocol  DC   Segment\n"
            "old    10.0.0.8:8301  alive   client   < 0.3  2         dc1  <default>\n"
            "other  10.0.0.9:8301  alive   unknown\n"
        )
        self.assertEqual(result, CliResult(0, expected, ""))

    def test_segments_sort_after_servers(self) -> None:
        """Clients sort by segment name, then by node name."""
        members = [
            client_member("b", "10.0.0.2", segment="beta"),
            client_member("a", "10.0.0.1", segment="beta"),
            client_member("z", "10.0.0.3"),
            SERVER_MEMBER,
        ]
        names = [
            line.split()[0] for line in run_cli(["members"], agent_with(members)).out.splitlines()
        ]
        self.assertEqual(names, ["Node", "host", "z", "a", "b"])


class StatusFilterTests(SynchronousTestCase):
    """``-status REGEX``."""

    def test_equals_form(self) -> None:
        """``-status=failed`` keeps only failed members."""
        result = run_cli(["members", "-status=failed"], agent_with(CLUSTER))
        self.assertEqual(result.code, 0)
        # Widths are computed after filtering, so the columns tighten.
        self.assertEqual(
            result.out,
            "Node  Address        Status  Type    Build   Protocol  DC   Segment\n"
            "db    10.0.0.3:8301  failed  client  1.17.0  2         dc1  <default>\n",
        )

    def test_separate_value_form(self) -> None:
        """``-status failed`` is the same as ``-status=failed``."""
        self.assertEqual(
            run_cli(["members", "-status", "failed"], agent_with(CLUSTER)),
            run_cli(["members", "--status=failed"], agent_with(CLUSTER)),
        )

    def test_search_semantics(self) -> None:
        """Like Go's MatchString, the regex may match anywhere."""
        result = run_cli(["members", "-status", "ail"], agent_with(CLUSTER))
        self.assertEqual(len(result.out.splitlines()), 2)

    def test_alternation(self) -> None:
        """``(alive|failed)`` keeps both kinds."""
        result = run_cli(["members", "-status=(alive|failed)"], agent_with(CLUSTER))
        self.assertEqual(result, CliResult(0, TABLE, ""))

    def test_nothing_left_exits_2(self) -> None:
        """No match prints nothing at all and exits 2."""
        self.assertEqual(
            run_cli(["members", "-status=left"], agent_with(CLUSTER)), CliResult(2, "", "")
        )

    def test_empty_answer_exits_2(self) -> None:
        """An empty member list behaves like an empty filter result."""
        self.assertEqual(run_cli(["members"], agent_with([])), CliResult(2, "", ""))

    def test_bad_regex(self) -> None:
        """An invalid regex is reported before any request is made."""
        agent = agent_with(CLUSTER)
        result = run_cli(["members", "-status=("], agent)
        self.assertEqual(result.code, 1)
        self.assertTrue(result.err.startswith("Failed to compile status regexp: "))
        self.assertEqual(agent.requests, [])


class FlagSpellingTests(SynchronousTestCase):
    """Consul's single-dash flags and their double-dash twins agree."""

    def test_spellings(self) -> None:
        """Every spelling of ``-detailed`` gives the same output."""
        outputs = {
            run_cli(["members", *argv], agent_with(CLUSTER)).out
            for argv in (["-detailed"], ["--detailed"], ["-detailed=true"], ["--detailed=1"])
        }
        self.assertEqual(len(outputs), 1)
        self.assertIn("Tags", outputs.pop())

    def test_false_boolean(self) -> None:
        """``-detailed=false`` is the default table."""
        self.assertEqual(run_cli(["members", "-detailed=false"], agent_with(CLUSTER)).out, TABLE)

    def test_http_addr_flag(self) -> None:
        """``-http-addr`` selects the agent (visible in the error line)."""
        result = run_cli(["members", "-http-addr=127.0.0.1:9500"], RefusingClient())
        self.assertIn('Get "http://127.0.0.1:9500/v1/agent/members?segment=_all"', result.err)


class ErrorTests(SynchronousTestCase):
    """Failures are one line on stderr and exit 1."""

    def test_connection_refused(self) -> None:
        """The exact text Consul prints once the agent is gone."""
        self.assertEqual(run_cli(["members"], RefusingClient()), CliResult(1, "", REFUSED))

    def test_non_200(self) -> None:
        """Non-200 answers use the api's ``Unexpected response code`` text."""
        result = run_cli(["members"], agent_with(b"No cluster leader\n", code=500))
        self.assertEqual(
            result,
            CliResult(
                1,
                "",
                "Error retrieving members: Unexpected response code: 500 (No cluster leader)\n",
            ),
        )

    def test_bad_json(self) -> None:
        """A garbled body is an error line, not a traceback."""
        agent = FakeAgent({("GET", MEMBERS_PATH): (200, b"{not json")})
        result = run_cli(["members"], agent)
        self.assertEqual(result.code, 1)
        self.assertTrue(result.err.startswith("Error retrieving members: invalid JSON"))


class HelperTests(SynchronousTestCase):
    """The pure helpers behind the table."""

    def test_format_address(self) -> None:
        """Go's TCPAddr formatting, including IPv6 brackets."""
        self.assertEqual(format_address("127.0.0.1", 8301), "127.0.0.1:8301")
        self.assertEqual(format_address("::1", 8301), "[::1]:8301")
        self.assertEqual(format_address("::ffff:10.0.0.1", 8301), "10.0.0.1:8301")
        self.assertEqual(format_address("not-an-ip", 8301), ":8301")

    def test_named_segment_is_kept(self) -> None:
        """With a specific ``-segment``, servers are not shown as ``<all>``."""
        import re

        server = Member.from_json(SERVER_MEMBER)
        [shown] = select_members([server], re.compile(".*"), segment="alpha")
        self.assertEqual(shown.tags["segment"], "<default>")

    def test_status_names(self) -> None:
        """All five serf statuses read as Consul prints them."""
        statuses = []
        for code in range(5):
            member = copy.deepcopy(SERVER_MEMBER)
            member["Status"] = code
            statuses.append(Member.from_json(member).status_text)
        self.assertEqual(statuses, ["none", "alive", "leaving", "left", "failed"])
