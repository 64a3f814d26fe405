"""Tests for ``consul-tw kv get|put|delete`` (:mod:`consul_tw.cli.kv`)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, cast

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from consul_tw.cli._http import CommandContext, HTTPClientLike
from consul_tw.cli.kv import detailed_lines, kv_path
from consul_tw.cli.main import main
from tests.unit.cli.test_support import CliResult, RefusingClient


@attrs.frozen
class Seen:
    method: str
    uri: str
    body: bytes


class FakeKVAgent(Resource):
    """Canned answers by (method, path); a GET of anything else is a 404 with no body."""

    isLeaf = True

    def __init__(self, routes: Mapping[tuple[str, str], tuple[int, bytes]] | None = None) -> None:
        super().__init__()
        self.routes = dict(routes or {})
        self.requests: list[Seen] = []

    def render(self, request: Request) -> bytes:
        method = request.method.decode("ascii")
        body = request.content.read() if request.content is not None else b""
        self.requests.append(Seen(method, request.uri.decode("ascii"), body))
        code, answer = self.routes.get((method, request.path.decode("ascii")), (404, b""))
        request.setResponseCode(code)
        return answer


@attrs.frozen
class StdinContext(CommandContext):
    """A context with a stdin to read ``kv put KEY -`` from."""

    stdin: IO[bytes] = attrs.field(factory=io.BytesIO)


def pair(key: str, value: bytes, **extra: Any) -> dict[str, Any]:
    entry = {
        "LockIndex": 0,
        "Key": key,
        "Flags": 0,
        "Value": base64.b64encode(value).decode() if value else None,
        "CreateIndex": 10,
        "ModifyIndex": 12,
    }
    entry.update(extra)
    return entry


def answer(value: Any, code: int = 200) -> tuple[int, bytes]:
    return code, json.dumps(value).encode()


def run(
    argv: Sequence[str],
    http: Resource | HTTPClientLike,
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    pump: Callable[[], None] | None = None,
) -> CliResult:
    stub = StubTreq(http) if isinstance(http, Resource) else None
    client = cast(HTTPClientLike, stub) if stub is not None else cast(HTTPClientLike, http)
    out, err = io.StringIO(), io.StringIO()
    ctx = StdinContext(
        http=client, env=dict(env or {}), stdout=out, stderr=err, stdin=io.BytesIO(stdin)
    )
    results: list[object] = []
    Deferred.fromCoroutine(main(["kv", *argv], ctx)).addBoth(results.append)
    for _ in range(50):
        if results or pump is None:
            break
        pump()
        if stub is not None:
            stub.flush()
    if not results:
        raise AssertionError(f"consul-tw kv {list(argv)} did not finish")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    code = results[0]
    assert isinstance(code, int)
    return CliResult(code, out.getvalue(), err.getvalue())


class GetTests(SynchronousTestCase):
    def test_value(self) -> None:
        agent = FakeKVAgent({("GET", "/v1/kv/foo/bar"): answer([pair("foo/bar", b"hello")])})
        self.assertEqual(run(["get", "foo/bar"], agent), CliResult(0, "hello\n", ""))
        self.assertEqual(agent.requests[0].uri, "/v1/kv/foo/bar")

    def test_one_leading_slash_is_stripped(self) -> None:
        agent = FakeKVAgent({("GET", "/v1/kv/foo"): answer([pair("foo", b"")])})
        self.assertEqual(run(["get", "/foo"], agent), CliResult(0, "\n", ""))

    def test_missing_key(self) -> None:
        self.assertEqual(
            run(["get", "nope"], FakeKVAgent()), CliResult(1, "", "Error! No key exists at: nope\n")
        )

    def test_argument_errors(self) -> None:
        self.assertEqual(
            run(["get"], FakeKVAgent()), CliResult(1, "", "Error! Missing KEY argument\n")
        )
        self.assertEqual(
            run(["get", "a", "b"], FakeKVAgent()),
            CliResult(1, "", "Too many arguments (expected 1, got 2)\n"),
        )

    def test_detailed(self) -> None:
        agent = FakeKVAgent({("GET", "/v1/kv/k"): answer([pair("k", b"v", Flags=42)])})
        expected = (
            "CreateIndex      10\n"
            "Flags            42\n"
            "Key              k\n"
            "LockIndex        0\n"
            "ModifyIndex      12\n"
            "Session          -\n"
            "Value            v\n"
        )
        self.assertEqual(run(["get", "-detailed", "k"], agent), CliResult(0, expected, ""))
        lines = detailed_lines(pair("k", b"v", Session="s-1"), base64_value=True)
        self.assertEqual(lines[-2:], ["Session          s-1", "Value            dg=="])

    def test_base64_and_binary_values(self) -> None:
        agent = FakeKVAgent({("GET", "/v1/kv/b"): answer([pair("b", b"\xff\x00")])})
        self.assertEqual(
            run(["get", "-base64", "-detailed", "b"], agent).out.splitlines()[-1],
            "Value            /wA=",
        )

    def test_recurse(self) -> None:
        pairs = [pair("app/a", b"1"), pair("app/b", b"")]
        agent = FakeKVAgent({("GET", "/v1/kv/app"): answer(pairs)})
        self.assertEqual(
            run(["get", "-recurse", "app"], agent), CliResult(0, "app/a:1\napp/b:\n", "")
        )
        self.assertEqual(agent.requests[0].uri, "/v1/kv/app?recurse=")
        self.assertEqual(
            run(["get", "-recurse", "-base64", "app"], agent).out, "app/a:MQ==\napp/b:\n"
        )
        detailed = run(["get", "-recurse", "-detailed", "app"], agent).out
        self.assertEqual(detailed.count("\n\n"), 1)
        self.assertTrue(detailed.startswith("CreateIndex      10\n"))

    def test_recurse_of_nothing_prints_nothing(self) -> None:
        self.assertEqual(run(["get", "-recurse"], FakeKVAgent()), CliResult(0, "", ""))

    def test_keys(self) -> None:
        agent = FakeKVAgent({("GET", "/v1/kv/web/"): answer(["web/a", "web/b/"])})
        self.assertEqual(run(["get", "-keys", "web/"], agent), CliResult(0, "web/a\nweb/b/\n", ""))
        self.assertEqual(agent.requests[0].uri, "/v1/kv/web/?keys=&separator=%2F")
        run(["get", "-keys", "-separator=", "web/"], agent)
        self.assertEqual(agent.requests[1].uri, "/v1/kv/web/?keys=")
        self.assertEqual(run(["get", "-keys"], FakeKVAgent()), CliResult(0, "", ""))

    def test_query_flags_and_token(self) -> None:
        agent = FakeKVAgent({("GET", "/v1/kv/k"): answer([pair("k", b"v")])})
        run(["get", "-stale", "-datacenter=dc2", "-token=t", "k"], agent)
        self.assertEqual(agent.requests[0].uri, "/v1/kv/k?dc=dc2&stale=")

    def test_errors(self) -> None:
        agent = FakeKVAgent({("GET", "/v1/kv/k"): (500, b"No cluster leader")})
        self.assertEqual(
            run(["get", "k"], agent),
            CliResult(
                1,
                "",
                "Error querying Consul agent: Unexpected response code: 500 (No cluster leader)\n",
            ),
        )
        self.assertEqual(
            run(["get", "k"], RefusingClient()).err,
            'Error querying Consul agent: Get "http://127.0.0.1:8500/v1/kv/k": '
            "dial tcp 127.0.0.1:8500: connect: connection refused\n",
        )

    def test_keys_are_path_escaped_as_go_does(self) -> None:
        self.assertEqual(kv_path("a b/c?d#e%f"), "/v1/kv/a%20b/c%3Fd%23e%25f")
        self.assertEqual(kv_path("$&+,:;=@~-._"), "/v1/kv/$&+,:;=@~-._")
        self.assertEqual(kv_path("été"), "/v1/kv/%C3%A9t%C3%A9")


class PutTests(SynchronousTestCase):
    def agent(self, answer_body: bytes = b"true") -> FakeKVAgent:
        return FakeKVAgent({("PUT", "/v1/kv/k"): (200, answer_body)})

    def test_put_value(self) -> None:
        agent = self.agent()
        self.assertEqual(
            run(["put", "k", "hello"], agent), CliResult(0, "Success! Data written to: k\n", "")
        )
        self.assertEqual(agent.requests, [Seen("PUT", "/v1/kv/k", b"hello")])

    def test_empty_value_flags_and_stdin(self) -> None:
        agent = self.agent()
        run(["put", "-flags=42", "k"], agent)
        self.assertEqual(agent.requests[-1], Seen("PUT", "/v1/kv/k?flags=42", b""))
        run(["put", "k", "-"], agent, stdin=b"from\nstdin")
        self.assertEqual(agent.requests[-1].body, b"from\nstdin")
        run(["put", "k", "-x"], agent)
        self.assertEqual(agent.requests[-1].body, b"-x")

    def test_file_data(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "data")
        with open(path, "wb") as f:
            f.write(b"\x00file")
        agent = self.agent()
        run(["put", "k", "@" + path], agent)
        self.assertEqual(agent.requests[-1].body, b"\x00file")
        self.assertEqual(
            run(["put", "k", "@/no/such/file"], agent).err,
            "Error! Failed to read file: open /no/such/file: no such file or directory\n",
        )

    def test_base64(self) -> None:
        agent = self.agent()
        run(["put", "-base64", "k", "aGk="], agent)
        self.assertEqual(agent.requests[-1].body, b"hi")
        self.assertEqual(
            run(["put", "-base64", "k", "a*b="], agent),
            CliResult(
                1, "", "Error! Cannot base 64 decode data: illegal base64 data at input byte 1\n"
            ),
        )

    def test_cas(self) -> None:
        agent = self.agent()
        result = run(["put", "-cas", "-modify-index=7", "k", "v"], agent)
        self.assertEqual(result, CliResult(0, "Success! Data written to: k\n", ""))
        self.assertEqual(agent.requests[-1].uri, "/v1/kv/k?cas=7")
        failing = self.agent(b"false")
        self.assertEqual(
            run(["put", "-cas", "-modify-index", "7", "k", "v"], failing),
            CliResult(1, "", "Error! Did not write to k: CAS failed\n"),
        )
        self.assertEqual(
            run(["put", "-cas", "k", "v"], failing),
            CliResult(
                1,
                "",
                "Error! Did not write to k: CAS performed with index=0 and key already exists.\n",
            ),
        )
        self.assertEqual(failing.requests[-1].uri, "/v1/kv/k?cas=0")

    def test_locks(self) -> None:
        self.assertEqual(
            run(["put", "-acquire", "k"], self.agent()),
            CliResult(1, "", "Error! Missing -session (required with -acquire and -release)\n"),
        )
        refusing = FakeKVAgent({("PUT", "/v1/kv/k"): (500, b'invalid session "s"')})
        self.assertEqual(
            run(["put", "-acquire", "-session=s", "k"], refusing).err,
            'Error! Failed writing data: Unexpected response code: 500 (invalid session "s")\n',
        )
        self.assertEqual(refusing.requests[-1].uri, "/v1/kv/k?acquire=s")
        self.assertEqual(
            run(["put", "-release", "-session=s", "k"], self.agent(b"false")),
            CliResult(1, "", "Error! Did not release lock\n"),
        )
        self.assertEqual(
            run(["put", "-release", "-session=s", "k"], refusing).err,
            "Error! Failed writing data: k\n",
        )

    def test_argument_errors(self) -> None:
        agent = self.agent()
        self.assertEqual(run(["put"], agent), CliResult(1, "", "Error! Missing KEY argument\n"))
        self.assertEqual(
            run(["put", "a", "b", "c"], agent),
            CliResult(1, "", "Error! Too many arguments (expected 1 or 2, got 3)\n"),
        )
        self.assertEqual(
            run(["put", "/k", "v"], agent),
            CliResult(
                1,
                "",
                "Error! Failed writing data: Invalid key. Key must not begin with a '/': /k\n",
            ),
        )
        bad = run(["put", "-flags=x", "k"], agent)
        self.assertEqual(bad.code, 1)
        self.assertTrue(bad.err.startswith('invalid value "x" for flag -flags: parse error\n'))
        self.assertTrue(
            run(["put", "-modify-index=-1", "k"], agent).err.startswith(
                'invalid value "-1" for flag -modify-index: parse error'
            )
        )
        self.assertEqual(agent.requests, [])

    def test_server_error(self) -> None:
        agent = FakeKVAgent({("PUT", "/v1/kv/k"): (413, b"Request body(1 bytes) too large")})
        self.assertEqual(
            run(["put", "k", "v"], agent).err,
            "Error! Failed writing data: Unexpected response code: 413 "
            "(Request body(1 bytes) too large)\n",
        )


class DeleteTests(SynchronousTestCase):
    def agent(self, answer_body: bytes = b"true") -> FakeKVAgent:
        return FakeKVAgent({("DELETE", "/v1/kv/k"): (200, answer_body)})

    def test_delete(self) -> None:
        agent = self.agent()
        self.assertEqual(
            run(["delete", "/k"], agent), CliResult(0, "Success! Deleted key: k\n", "")
        )
        self.assertEqual(agent.requests, [Seen("DELETE", "/v1/kv/k", b"")])

    def test_recurse(self) -> None:
        agent = self.agent()
        self.assertEqual(
            run(["delete", "-recurse", "k"], agent),
            CliResult(0, "Success! Deleted keys with prefix: k\n", ""),
        )
        self.assertEqual(agent.requests[-1].uri, "/v1/kv/k?recurse=")
        everything = FakeKVAgent({("DELETE", "/v1/kv/"): (200, b"true")})
        self.assertEqual(run(["delete", "-recurse"], everything).code, 0)

    def test_cas(self) -> None:
        agent = self.agent()
        self.assertEqual(
            run(["delete", "-cas", "-modify-index=5", "k"], agent),
            CliResult(0, "Success! Deleted key: k\n", ""),
        )
        self.assertEqual(agent.requests[-1].uri, "/v1/kv/k?cas=5")
        self.assertEqual(
            run(["delete", "-cas", "-modify-index=5", "k"], self.agent(b"false")),
            CliResult(1, "", "Error! Did not delete key k: CAS failed\n"),
        )

    def test_argument_errors(self) -> None:
        agent = self.agent()
        for argv, text in (
            (["delete"], "Error! Missing KEY argument"),
            (["delete", "a", "b"], "Too many arguments (expected 1, got 2)"),
            (
                ["delete", "-cas", "k"],
                "Cannot delete a key that does not exist. "
                "Provide a -modify-index greater than than 0.",
            ),
            (["delete", "-modify-index=3", "k"], "Cannot specify -modify-index without -cas!"),
            (
                ["delete", "-recurse", "-cas", "-modify-index=3", "k"],
                "Cannot specify both -cas and -recurse!",
            ),
        ):
            self.assertEqual(run(argv, agent), CliResult(1, "", text + "\n"), argv)
        self.assertEqual(agent.requests, [])

    def test_errors(self) -> None:
        failing = FakeKVAgent({("DELETE", "/v1/kv/k"): (500, b"No cluster leader")})
        reason = "Unexpected response code: 500 (No cluster leader)"
        self.assertEqual(run(["delete", "k"], failing).err, f"Error deleting key k: {reason}\n")
        self.assertEqual(
            run(["delete", "-recurse", "k"], failing).err,
            f"Error! Did not delete prefix k: {reason}\n",
        )
        self.assertEqual(
            run(["delete", "-cas", "-modify-index=1", "k"], failing).err,
            f"Error! Did not delete key k: {reason}\n",
        )


class AgainstTheAPITests(SynchronousTestCase):
    """The commands against the real HTTP API of an in-memory dev agent."""

    def setUp(self) -> None:
        from tests.unit.http.test_api import ApiTestCase

        fixture = ApiTestCase("setUp")
        fixture.setUp()
        self.addCleanup(fixture.doCleanups)
        self.reactor = fixture.reactor
        self.site = fixture.site

    def cli(self, *argv: str, stdin: bytes = b"") -> CliResult:
        return run(argv, self.site.resource, stdin=stdin, pump=lambda: self.reactor.advance(0))

    def test_put_get_delete(self) -> None:
        self.assertEqual(
            self.cli("put", "app/config", "v1"),
            CliResult(0, "Success! Data written to: app/config\n", ""),
        )
        self.assertEqual(self.cli("get", "app/config"), CliResult(0, "v1\n", ""))
        detailed = self.cli("get", "-detailed", "app/config").out.splitlines()
        index = int(detailed[4].split()[-1])
        self.assertEqual(self.cli("put", "-cas", "-modify-index=1", "app/config", "x").code, 1)
        self.assertEqual(
            self.cli("put", "-cas", f"-modify-index={index}", "app/config", "-", stdin=b"v2").code,
            0,
        )
        self.assertEqual(self.cli("put", "app/other").code, 0)
        self.assertEqual(self.cli("get", "-recurse", "app").out, "app/config:v2\napp/other:\n")
        self.assertEqual(self.cli("get", "-keys", "-separator=", "").out, "app/config\napp/other\n")
        self.assertEqual(self.cli("get", "-keys").out, "app/\n")
        self.assertEqual(
            self.cli("delete", "app/other"), CliResult(0, "Success! Deleted key: app/other\n", "")
        )
        self.assertEqual(
            self.cli("get", "app/other"), CliResult(1, "", "Error! No key exists at: app/other\n")
        )
        self.assertEqual(self.cli("delete", "-recurse", "app/").code, 0)
        self.assertEqual(self.cli("get", "-recurse").out, "")
        self.assertEqual(
            self.cli("put", "-acquire", "-session=s1", "lock").err,
            'Error! Failed writing data: Unexpected response code: 500 (invalid session "s1")\n',
        )
