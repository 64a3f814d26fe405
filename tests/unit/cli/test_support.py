# -*- test-case-name: tests.unit.cli.test_support -*-
"""
Shared fakes for the CLI tests, plus tests of the fakes themselves.

:class:`FakeAgent` is a ``twisted.web`` resource answering canned JSON per
``(method, path)`` and recording every request; wrapped in
``treq.testing.StubTreq`` it stands in for a Consul agent without any
network.  :func:`run_cli` drives :func:`consul_tw.cli.main.main` to
completion and returns the exit code and captured streams.

(The module is named ``test_*`` so that it stays inside the CLI test file
set; it holds a few tests of its own.)
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request

from consul_tw.cli._http import CommandContext, HTTPClientLike
from consul_tw.cli.main import main

#: A server member exactly as consul-api.md section 3.3 shows it.
SERVER_MEMBER: dict[str, Any] = {
    "Name": "host",
    "Addr": "127.0.0.1",
    "Port": 8301,
    "Tags": {
        "acls": "0",
        "build": "1.17.0:4e3f428b",
        "dc": "dc1",
        "ft_fs": "1",
        "ft_si": "1",
        "grpc_port": "8502",
        "grpc_tls_port": "8503",
        "id": "5c7e3a1b-93f3-2f0e-5a8d-3f1c2e4d6b7a",
        "port": "8300",
        "raft_vsn": "3",
        "role": "consul",
        "segment": "",
        "vsn": "2",
        "vsn_max": "3",
        "vsn_min": "2",
        "wan_join_port": "8302",
    },
    "Status": 1,
    "ProtocolMin": 1,
    "ProtocolMax": 5,
    "ProtocolCur": 2,
    "DelegateMin": 2,
    "DelegateMax": 5,
    "DelegateCur": 4,
}


def client_member(name: str, addr: str, status: int = 1, **tags: str) -> dict[str, Any]:
    """A client member in the same shape, with consul-api.md's client tags."""
    member = copy.deepcopy(SERVER_MEMBER)
    member.update(Name=name, Addr=addr, Status=status)
    member["Tags"] = {
        "build": "1.17.0:4e3f428b",
        "dc": "dc1",
        "id": f"{name}-id",
        "role": "node",
        "segment": "",
        "vsn": "2",
        "vsn_max": "3",
        "vsn_min": "2",
        **tags,
    }
    return member


def json_answer(value: Any) -> tuple[int, bytes]:
    """A 200 answer carrying ``value`` as JSON."""
    return 200, json.dumps(value).encode("utf-8")


@attrs.frozen
class SeenRequest:
    """What the fake agent recorded about one request."""

    method: str
    uri: str
    token: str | None


class FakeAgent(Resource):
    """
    Canned answers keyed by ``(method, path)``; 404 for anything else.

    The 404 body is Go's ``404 page not found`` so tests of the error line
    see what a real agent would send.
    """

    isLeaf = True

    def __init__(self, routes: Mapping[tuple[str, str], tuple[int, bytes]] | None = None) -> None:
        super().__init__()
        self.routes = dict(routes or {})
        self.requests: list[SeenRequest] = []

    def render(self, request: Request) -> bytes:
        method = request.method.decode("ascii")
        token = request.getHeader(b"x-consul-token")
        self.requests.append(
            SeenRequest(
                method=method,
                uri=request.uri.decode("ascii"),
                token=token.decode("ascii") if token is not None else None,
            )
        )
        code, body = self.routes.get(
            (method, request.path.decode("ascii")), (404, b"404 page not found\n")
        )
        request.setResponseCode(code)
        return body


@attrs.frozen
class RefusingClient:
    """An HTTP client whose every connection attempt is refused."""

    def request(self, method: str, url: str, *, headers: Headers | None = None) -> Deferred[Any]:
        """Fail the way Agent does when nothing listens on the port."""
        return fail(ConnectionRefusedError("Connection refused"))


@attrs.frozen
class CliResult:
    """Exit code and captured output of one CLI run."""

    code: int
    out: str
    err: str


def run_cli(
    argv: Sequence[str],
    http: HTTPClientLike | FakeAgent | None = None,
    env: Mapping[str, str] | None = None,
) -> CliResult:
    """
    Run ``consul-tw argv`` against ``http`` and return what it did.

    A :class:`FakeAgent` is wrapped in ``StubTreq``; StubTreq answers
    synchronously, so the command must have finished when this returns.
    """
    if http is None:
        http = FakeAgent()
    client = cast(HTTPClientLike, StubTreq(http)) if isinstance(http, Resource) else http
    stdout, stderr = io.StringIO(), io.StringIO()
    ctx = CommandContext(http=client, env=dict(env or {}), stdout=stdout, stderr=stderr)
    results: list[object] = []
    Deferred.fromCoroutine(main(list(argv), ctx)).addBoth(results.append)
    if not results:
        raise AssertionError(f"consul-tw {list(argv)} did not finish")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    code = results[0]
    assert isinstance(code, int)
    return CliResult(code=code, out=stdout.getvalue(), err=stderr.getvalue())


class FakeAgentTests(SynchronousTestCase):
    """The fake agent behaves as the other tests assume."""

    def test_records_and_answers(self) -> None:
        """A routed request is answered and recorded with its token."""
        agent = FakeAgent({("GET", "/v1/catalog/datacenters"): json_answer(["dc1"])})
        result = run_cli(["catalog", "datacenters", "-token", "s3cr3t"], agent)
        self.assertEqual(result, CliResult(0, "dc1\n", ""))
        self.assertEqual(agent.requests, [SeenRequest("GET", "/v1/catalog/datacenters", "s3cr3t")])

    def test_unrouted_is_404(self) -> None:
        """Unknown paths answer 404 like Go's mux."""
        result = run_cli(["catalog", "datacenters"], FakeAgent())
        self.assertEqual(
            result.err,
            "Error listing datacenters: Unexpected response code: 404 (404 page not found)\n",
        )
        self.assertEqual(result.code, 1)
