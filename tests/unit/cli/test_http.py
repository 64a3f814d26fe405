# -*- test-case-name: tests.unit.cli.test_http -*-
"""Tests for the agent address and error wording (:mod:`consul_tw.cli._http`)."""

from __future__ import annotations

from twisted.internet import error
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived

from consul_tw.cli._http import (
    AddressError,
    AgentAddress,
    request_error_text,
    resolve_address,
    transport_error_text,
    unexpected_response_text,
)
from tests.unit.cli.test_support import FakeAgent, RefusingClient, json_answer, run_cli

HP = "127.0.0.1:8500"


class AddressTests(SynchronousTestCase):
    """:func:`resolve_address` precedence and schemes."""

    def test_default(self) -> None:
        """With nothing set, the agent is at 127.0.0.1:8500 over http."""
        self.assertEqual(resolve_address(None, {}), AgentAddress("http", HP))

    def test_env(self) -> None:
        """CONSUL_HTTP_ADDR is used when the flag is absent."""
        self.assertEqual(
            resolve_address(None, {"CONSUL_HTTP_ADDR": "10.0.0.1:8500"}),
            AgentAddress("http", "10.0.0.1:8500"),
        )

    def test_flag_beats_env(self) -> None:
        """``-http-addr`` wins over CONSUL_HTTP_ADDR."""
        self.assertEqual(
            resolve_address("10.0.0.2:1234", {"CONSUL_HTTP_ADDR": "10.0.0.1:8500"}),
            AgentAddress("http", "10.0.0.2:1234"),
        )

    def test_schemes(self) -> None:
        """``http://`` and ``https://`` prefixes pick the scheme."""
        self.assertEqual(resolve_address("http://h:1", {}), AgentAddress("http", "h:1"))
        self.assertEqual(resolve_address("https://h:1", {}), AgentAddress("https", "h:1"))

    def test_ssl_env(self) -> None:
        """CONSUL_HTTP_SSL=true selects https for a bare address."""
        self.assertEqual(
            resolve_address("h:1", {"CONSUL_HTTP_SSL": "true"}), AgentAddress("https", "h:1")
        )

    def test_unknown_scheme(self) -> None:
        """Other schemes are refused in the Go client's words."""
        exc = self.assertRaises(AddressError, resolve_address, "ftp://h:1", {})
        self.assertEqual(str(exc), "Unknown protocol scheme: ftp")

    def test_url_query_sorted(self) -> None:
        """Query keys are sorted like url.Values.Encode."""
        self.assertEqual(
            AgentAddress("http", HP).url("/v1/x", [("wan", "1"), ("segment", "_all")]),
            "http://127.0.0.1:8500/v1/x?segment=_all&wan=1",
        )


class EnvironmentTests(SynchronousTestCase):
    """The environment mapping reaches the request."""

    def test_env_address_used(self) -> None:
        """CONSUL_HTTP_ADDR shows up in the error line."""
        result = run_cli(
            ["members"], RefusingClient(), env={"CONSUL_HTTP_ADDR": "http://10.1.1.1:8500"}
        )
        self.assertEqual(
            result.err,
            'Error retrieving members: Get "http://10.1.1.1:8500/v1/agent/members?segment=_all": '
            "dial tcp 10.1.1.1:8500: connect: connection refused\n",
        )

    def test_flag_beats_env(self) -> None:
        """The flag wins over the environment."""
        result = run_cli(
            ["leave", "-http-addr", "10.2.2.2:8500"],
            RefusingClient(),
            env={"CONSUL_HTTP_ADDR": "10.1.1.1:8500"},
        )
        self.assertIn('Put "http://10.2.2.2:8500/v1/agent/leave"', result.err)

    def test_token_env(self) -> None:
        """CONSUL_HTTP_TOKEN is sent as X-Consul-Token."""
        agent = FakeAgent({("GET", "/v1/catalog/datacenters"): json_answer(["dc1"])})
        run_cli(["catalog", "datacenters"], agent, env={"CONSUL_HTTP_TOKEN": "t0k"})
        self.assertEqual(agent.requests[0].token, "t0k")

    def test_unknown_scheme_reported(self) -> None:
        """A bad address is an ``Error connecting`` line and exit 1."""
        result = run_cli(["members"], FakeAgent(), env={"CONSUL_HTTP_ADDR": "unix2://x"})
        self.assertEqual(
            (result.code, result.err),
            (1, "Error connecting to Consul agent: Unknown protocol scheme: unix2\n"),
        )


class ErrorTextTests(SynchronousTestCase):
    """Go's wording for transport failures and HTTP errors."""

    def test_refused(self) -> None:
        """The connection-refused line of a stopped agent."""
        self.assertEqual(
            request_error_text(
                "GET",
                "http://127.0.0.1:8500/v1/agent/members?segment=_all",
                HP,
                error.ConnectionRefusedError("Connection refused"),
            ),
            'Get "http://127.0.0.1:8500/v1/agent/members?segment=_all": '
            "dial tcp 127.0.0.1:8500: connect: connection refused",
        )

    def test_wrapped(self) -> None:
        """Causes inside treq/Agent wrapper exceptions are unwrapped."""
        wrapped = ResponseNeverReceived([Failure(error.ConnectionLost())])
        self.assertEqual(transport_error_text(HP, wrapped), "EOF")

    def test_other_causes(self) -> None:
        """DNS, routing and timeouts read like Go's dialer."""
        self.assertEqual(
            transport_error_text("nohost:8500", error.DNSLookupError("nohost")),
            "dial tcp: lookup nohost: no such host",
        )
        self.assertEqual(
            transport_error_text(HP, error.NoRouteError()),
            "dial tcp 127.0.0.1:8500: connect: no route to host",
        )
        self.assertEqual(
            transport_error_text(HP, error.TimeoutError()), "dial tcp 127.0.0.1:8500: i/o timeout"
        )

    def test_unexpected_response(self) -> None:
        """Status code and trimmed body."""
        self.assertEqual(
            unexpected_response_text(500, b"No cluster leader\n"),
            "Unexpected response code: 500 (No cluster leader)",
        )
