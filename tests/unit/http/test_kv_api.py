"""
``/v1/kv/<key>`` in memory: StubTreq against the real resource tree of a dev
agent on a memory reactor, with writes committed through its Raft node.
Shapes, status codes, headers and error texts as Consul's kvs_endpoint.go.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgpack
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.catalog.store import KV_TABLE, TOMBSTONES
from consul_tw.http._request import HTTPError
from consul_tw.http.kv_endpoints import KV_MAX_VALUE_SIZE, parse_uint64
from consul_tw.http.root import build_site
from consul_tw.rpc.client import RemoteError
from consul_tw.rpc.endpoints import build_dispatcher
from consul_tw.rpc.protocol import HandlerError
from consul_tw.testing.agents import client_of, dev_server
from consul_tw.testing.reactor import MemoryReactorWithUDP
from tests.unit.http.test_api import ApiTestCase

Answer = tuple[int, dict[str, str], bytes]


class KVTestCase(ApiTestCase):
    def call(self, method: str, url: str, body: bytes | None = None) -> Answer:
        """One request, pumping the reactor until Raft has committed and answered."""
        kwargs: dict[str, Any] = {} if body is None else {"data": body}
        pending = self.treq.request(method, "http://127.0.0.1:8500" + url, **kwargs)
        return self.finish(pending)

    def finish(self, pending: Deferred[Any]) -> Answer:
        """
        Run the reactor until ``pending`` has its answer: a few turns for a
        commit, or clock time when the answer waits (a blocking query, or
        a write held while no leader is known).
        """
        answered: list[bool] = []

        def note(result: object) -> object:
            answered.append(True)
            return result

        pending.addBoth(note)
        for _ in range(200):
            self.reactor.advance(0)
            self.treq.flush()
            if answered:
                break
            self.reactor.advance(0.25)
        response = self.successResultOf(pending)
        body = self.successResultOf(response.content())
        headers = {
            k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()
        }
        return response.code, headers, body

    def put(self, key: str, value: bytes = b"", query: str = "") -> Any:
        code, _, body = self.call("PUT", f"/v1/kv/{key}{query}", value)
        self.assertEqual(code, 200, body)
        return json.loads(body)

    def entries(self, url: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        code, headers, body = self.call("GET", url)
        self.assertEqual(code, 200, body)
        self.assertEqual(headers["content-type"], "application/json")
        return json.loads(body), headers

    def kv_index(self) -> int:
        return self.agent.catalog().max_index(KV_TABLE, TOMBSTONES)


class GetTests(KVTestCase):
    def test_put_then_get_shape_and_headers(self) -> None:
        self.assertIs(self.put("foo/bar", b"hello", "?flags=42"), True)
        body, headers = self.entries("/v1/kv/foo/bar")
        index = self.kv_index()
        self.assertEqual(
            body,
            [
                {
                    "LockIndex": 0,
                    "Key": "foo/bar",
                    "Flags": 42,
                    "Value": base64.b64encode(b"hello").decode(),
                    "CreateIndex": index,
                    "ModifyIndex": index,
                }
            ],
        )
        self.assertEqual(
            list(body[0]), ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
        )
        self.assertEqual(
            (
                headers["x-consul-index"],
                headers["x-consul-knownleader"],
                headers["x-consul-lastcontact"],
                headers["x-consul-effective-consistency"],
            ),
            (str(index), "true", "0", "leader"),
        )

    def test_empty_value_is_null(self) -> None:
        self.put("empty")
        body, _ = self.entries("/v1/kv/empty")
        self.assertIsNone(body[0]["Value"])

    def test_missing_key_is_404_with_empty_body_and_index(self) -> None:
        code, headers, body = self.call("GET", "/v1/kv/nope")
        self.assertEqual((code, body), (404, b""))
        self.assertEqual(headers["x-consul-index"], "1")
        self.assertEqual(headers["x-consul-knownleader"], "true")
        self.assertNotIn("content-type", headers)
        self.put("a")
        self.put("b")
        self.call("DELETE", "/v1/kv/b")
        code, headers, _ = self.call("GET", "/v1/kv/nope")
        self.assertEqual((code, headers["x-consul-index"]), (404, str(self.kv_index())))

    def test_raw(self) -> None:
        value = bytes(range(256))
        self.put("bin", value)
        code, headers, body = self.call("GET", "/v1/kv/bin?raw")
        self.assertEqual((code, body), (200, value))
        self.assertEqual(
            (
                headers["content-type"],
                headers["x-content-type-options"],
                headers["content-security-policy"],
            ),
            ("text/plain", "nosniff", "sandbox"),
        )
        self.assertIn("x-consul-index", headers)
        self.assertEqual(self.call("GET", "/v1/kv/none?raw")[::2], (404, b""))

    def test_recurse_lists_the_prefix_in_key_order(self) -> None:
        for key in ("app/b", "app/a", "apple", "other"):
            self.put(key, key.encode())
        body, headers = self.entries("/v1/kv/app/?recurse")
        self.assertEqual([e["Key"] for e in body], ["app/a", "app/b"])
        self.assertEqual(headers["x-consul-index"], str(max(e["ModifyIndex"] for e in body)))
        everything, _ = self.entries("/v1/kv/?recurse")
        self.assertEqual([e["Key"] for e in everything], ["app/a", "app/b", "apple", "other"])
        raw_ignored, _ = self.entries("/v1/kv/app?recurse&raw")
        self.assertEqual(len(raw_ignored), 3)
        self.assertEqual(self.call("GET", "/v1/kv/zzz?recurse")[::2], (404, b""))

    def test_keys_and_separator(self) -> None:
        for key in ("web/a", "web/b/c", "web/b/d", "db"):
            self.put(key)
        self.assertEqual(self.entries("/v1/kv/?keys")[0], ["db", "web/a", "web/b/c", "web/b/d"])
        self.assertEqual(self.entries("/v1/kv/?keys&separator=/")[0], ["db", "web/"])
        self.assertEqual(self.entries("/v1/kv/web/?keys&separator=/")[0], ["web/a", "web/b/"])
        self.assertEqual(self.entries("/v1/kv/web/?keys&seperator=/")[0], ["web/a", "web/b/"])
        self.assertEqual(self.call("GET", "/v1/kv/nothing/?keys")[::2], (404, b""))

    def test_keys_of_an_empty_store_is_an_empty_list(self) -> None:
        body, headers = self.entries("/v1/kv/?keys")
        self.assertEqual((body, headers["x-consul-index"]), ([], "1"))

    def test_missing_key_name(self) -> None:
        for method in ("GET", "PUT", "DELETE"):
            code, headers, body = self.call(method, "/v1/kv/")
            self.assertEqual((code, body), (400, b"Missing key name"), method)
            self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")

    def test_leading_slashes_and_escapes_in_keys(self) -> None:
        self.put("a%2Fb%20c%3Fd", b"1")
        body, _ = self.entries("/v1/kv/a/b%20c%3Fd")
        self.assertEqual(body[0]["Key"], "a/b c?d")
        body, _ = self.entries("/v1/kv//a/b%20c%3Fd")
        self.assertEqual(body[0]["Key"], "a/b c?d")
        self.put("%C3%A9t%C3%A9", b"2")
        self.assertEqual(self.entries("/v1/kv/%C3%A9t%C3%A9")[0][0]["Key"], "été")

    def test_consistency_modes_and_dc(self) -> None:
        self.put("k")
        _, headers = self.entries("/v1/kv/k?stale")
        self.assertEqual(headers["x-consul-effective-consistency"], "stale")
        _, headers = self.entries("/v1/kv/k?consistent")
        self.assertEqual(headers["x-consul-effective-consistency"], "consistent")
        conflict = b"Cannot specify ?stale with ?consistent, conflicting semantics."
        for method in ("GET", "PUT", "DELETE"):
            self.assertEqual(self.call(method, "/v1/kv/?stale&consistent")[::2], (400, conflict))
        self.assertEqual(self.call("GET", "/v1/kv/k?dc=dc1")[0], 200)
        for method in ("GET", "PUT", "DELETE"):
            self.assertEqual(
                self.call(method, "/v1/kv/k?dc=elsewhere")[::2], (500, b"No path to datacenter")
            )

    def test_bad_blocking_parameters(self) -> None:
        self.assertEqual(self.call("GET", "/v1/kv/k?index=x")[::2], (400, b"Invalid index"))
        self.assertEqual(
            self.call("GET", "/v1/kv/k?index=1&wait=5")[::2], (400, b"Invalid wait time")
        )

    def test_method_not_allowed(self) -> None:
        code, headers, body = self.call("POST", "/v1/kv/k")
        self.assertEqual((code, body), (405, b"method POST not allowed"))
        self.assertEqual(headers["allow"], "OPTIONS,GET,PUT,DELETE")
        code, headers, _ = self.call("OPTIONS", "/v1/kv/k")
        self.assertEqual((code, headers["allow"]), (200, "OPTIONS,GET,PUT,DELETE"))


class BlockingTests(KVTestCase):
    def test_blocking_get_waits_for_its_key(self) -> None:
        self.put("watched", b"1")
        index = self.kv_index()
        pending = self.treq.get(f"http://127.0.0.1:8500/v1/kv/watched?index={index}&wait=30s")
        self.assertNoResult(pending)
        self.put("unrelated")
        self.assertNoResult(pending)
        self.put("watched", b"2")
        code, headers, body = self.finish(pending)
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)[0]["Value"], base64.b64encode(b"2").decode())
        self.assertEqual(headers["x-consul-index"], str(self.kv_index()))

    def test_blocking_recurse_wakes_on_delete(self) -> None:
        self.put("p/a")
        self.put("p/b")
        index = self.kv_index()
        pending = self.treq.get(f"http://127.0.0.1:8500/v1/kv/p/?recurse&index={index}")
        self.assertNoResult(pending)
        self.call("DELETE", "/v1/kv/p/b")
        code, headers, body = self.finish(pending)
        self.assertEqual([e["Key"] for e in json.loads(body)], ["p/a"])
        self.assertEqual(int(headers["x-consul-index"]), index + 1)

    def test_blocking_times_out_with_the_same_index(self) -> None:
        self.put("k")
        index = self.kv_index()
        started = self.reactor.seconds()
        pending = self.treq.get(f"http://127.0.0.1:8500/v1/kv/k?index={index}&wait=2s")
        code, headers, _ = self.finish(pending)
        self.assertEqual((code, headers["x-consul-index"]), (200, str(index)))
        self.assertGreaterEqual(self.reactor.seconds() - started, 2)


class PutTests(KVTestCase):
    def test_cas(self) -> None:
        self.assertIs(self.put("c", b"1", "?cas=0"), True)
        self.assertIs(self.put("c", b"2", "?cas=0"), False)
        index = self.entries("/v1/kv/c")[0][0]["ModifyIndex"]
        self.assertIs(self.put("c", b"3", f"?cas={index + 100}"), False)
        self.assertIs(self.put("c", b"4", f"?cas={index}"), True)
        self.assertEqual(self.call("GET", "/v1/kv/c?raw")[2], b"4")

    def test_flags_are_stored_and_replaced(self) -> None:
        self.put("f", b"", "?flags=18446744073709551615")
        self.assertEqual(self.entries("/v1/kv/f")[0][0]["Flags"], 2**64 - 1)
        self.put("f")
        self.assertEqual(self.entries("/v1/kv/f")[0][0]["Flags"], 0)

    def test_invalid_numbers_answer_go_parse_errors(self) -> None:
        cases = {
            "?flags=abc": b'strconv.ParseUint: parsing "abc": invalid syntax',
            "?flags=-1": b'strconv.ParseUint: parsing "-1": invalid syntax',
            "?cas=": b'strconv.ParseUint: parsing "": invalid syntax',
            "?cas=18446744073709551616": (
                b'strconv.ParseUint: parsing "18446744073709551616": value out of range'
            ),
        }
        for query, text in cases.items():
            self.assertEqual(self.call("PUT", f"/v1/kv/n{query}", b"v")[::2], (500, text), query)
        self.assertEqual(
            self.call("DELETE", "/v1/kv/n?cas=1x")[::2],
            (500, b'strconv.ParseUint: parsing "1x": invalid syntax'),
        )
        self.assertEqual(self.call("GET", "/v1/kv/n")[0], 404, "nothing was written")

    def test_conflicting_flags(self) -> None:
        code, _, body = self.call("PUT", "/v1/kv/k?release=s&cas=1&token=t", b"")
        self.assertEqual((code, body), (400, b"Conflicting flags: cas=1&release=s&token=t"))
        code, _, body = self.call("PUT", "/v1/kv/k?acquire&cas=1")
        self.assertEqual((code, body), (400, b"Conflicting flags: acquire=&cas=1"))
        code, _, body = self.call("DELETE", "/v1/kv/k?recurse&cas=3")
        self.assertEqual((code, body), (400, b"Conflicting flags: cas=3&recurse="))

    def test_value_size_limit(self) -> None:
        self.assertIs(self.put("max", b"x" * KV_MAX_VALUE_SIZE), True)
        code, headers, body = self.call("PUT", "/v1/kv/big", b"x" * (KV_MAX_VALUE_SIZE + 1))
        self.assertEqual(code, 413)
        self.assertEqual(
            body,
            b"Request body(524289 bytes) too large, max size: 524288 bytes. See "
            b"https://www.consul.io/docs/agent/config/config-files#kv_max_value_size.",
        )
        self.assertEqual(self.call("GET", "/v1/kv/big")[0], 404)

    def test_locks_answer_as_for_an_unknown_session(self) -> None:
        self.put("lock", b"v")
        code, _, body = self.call("PUT", "/v1/kv/lock?acquire=adf4238a", b"v")
        self.assertEqual((code, body), (500, b'invalid session "adf4238a"'))
        self.assertEqual(
            self.call("PUT", "/v1/kv/lock?acquire", b"v")[::2], (500, b"missing session")
        )
        self.assertIs(self.put("lock", b"v", "?release=adf4238a"), False)
        entries, _ = self.entries("/v1/kv/lock")
        self.assertNotIn("Session", entries[0])


class DeleteTests(KVTestCase):
    def test_delete_answers_true_and_leaves_the_index_monotonic(self) -> None:
        self.put("d/1")
        self.put("d/2")
        before = self.kv_index()
        code, _, body = self.call("DELETE", "/v1/kv/d/2")
        self.assertEqual((code, json.loads(body)), (200, True))
        self.assertEqual(json.loads(self.call("DELETE", "/v1/kv/never")[2]), True)
        _, headers = self.entries("/v1/kv/d/?recurse")
        self.assertEqual(int(headers["x-consul-index"]), before + 1)

    def test_delete_cas(self) -> None:
        self.put("c")
        index = self.entries("/v1/kv/c")[0][0]["ModifyIndex"]
        self.assertIs(json.loads(self.call("DELETE", f"/v1/kv/c?cas={index + 1}")[2]), False)
        self.assertIs(json.loads(self.call("DELETE", f"/v1/kv/c?cas={index}")[2]), True)
        self.assertEqual(self.call("GET", "/v1/kv/c")[0], 404)

    def test_delete_recurse(self) -> None:
        for key in ("t/a", "t/b/c", "u"):
            self.put(key)
        self.assertIs(json.loads(self.call("DELETE", "/v1/kv/t/?recurse")[2]), True)
        self.assertEqual(self.entries("/v1/kv/?keys")[0], ["u"])
        self.assertIs(json.loads(self.call("DELETE", "/v1/kv/?recurse")[2]), True)
        self.assertEqual(self.entries("/v1/kv/?keys")[0], [])


class NoLeaderTests(KVTestCase):
    leader = False

    def answer_now(self, method: str, url: str) -> Answer:
        """Before the first election: no clock time passes, so no leader can appear."""
        pending = self.treq.request(method, "http://127.0.0.1:8500" + url)
        self.treq.flush()
        response = self.successResultOf(pending)
        headers = {
            k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()
        }
        return response.code, headers, self.successResultOf(response.content())

    def test_stale_reads_answer_without_a_leader(self) -> None:
        """
        (Default reads and writes wait for a leader or fail with "No cluster
        leader", as the agent decides for every endpoint.)
        """
        code, headers, body = self.answer_now("GET", "/v1/kv/k?stale")
        self.assertEqual((code, body), (404, b""))
        self.assertEqual(
            (headers["x-consul-knownleader"], headers["x-consul-effective-consistency"]),
            ("false", "stale"),
        )
        code, _, body = self.answer_now("GET", "/v1/kv/?keys&stale")
        self.assertEqual((code, json.loads(body)), (200, []))


class ParseUintTests(SynchronousTestCase):
    def test_go_rules(self) -> None:
        self.assertEqual(parse_uint64("0"), 0)
        self.assertEqual(parse_uint64("007"), 7)
        self.assertEqual(parse_uint64(str(2**64 - 1)), 2**64 - 1)
        for text, reason in (
            ("+1", "invalid syntax"),
            ("1_000", "invalid syntax"),
            (" 1", "invalid syntax"),
            ("١", "invalid syntax"),
            ("99999999999999999999x", "value out of range"),
        ):
            with self.assertRaises(HTTPError) as caught:
                parse_uint64(text)
            self.assertTrue(caught.exception.message.endswith(reason), text)


class MsgpackCaller:
    """
    An RpcCaller wired to a server's dispatcher in memory, with arguments
    and results through msgpack and server errors worded as the real RPC
    client words them.
    """

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.calls: list[tuple[str, Any]] = []

    def call(
        self, host: str, port: int, method: str, args: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        wire = msgpack.unpackb(msgpack.packb(args, use_bin_type=True), raw=False)
        self.calls.append((method, wire))
        answer = maybeDeferred(self.dispatcher.dispatch, method, wire)

        def remote(failure: Failure) -> Failure:
            failure.trap(HandlerError)
            return Failure(RemoteError(failure.getErrorMessage()))

        answer.addCallback(
            lambda result: msgpack.unpackb(msgpack.packb(result, use_bin_type=True), raw=False)
        )
        return answer.addErrback(remote)

    def close(self) -> None:
        pass


class ClientAgentTests(SynchronousTestCase):
    """A client agent forwards KV reads (``Catalog.Read``) and writes (``Catalog.Apply``)."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorWithUDP()
        self.server = dev_server(self.reactor)
        self.addCleanup(self.server.stopService)
        self.caller = MsgpackCaller(build_dispatcher(self.server.agent))
        self.client = client_of("srv", self.caller)
        self.treq = StubTreq(build_site(self.client.agent, logger=HcLogger("agent.http")).resource)

    def call(self, method: str, url: str, body: bytes | None = None) -> Answer:
        kwargs: dict[str, Any] = {} if body is None else {"data": body}
        pending = self.treq.request(method, "http://127.0.0.1:8500" + url, **kwargs)
        for _ in range(20):
            self.reactor.advance(0)
            self.treq.flush()
            if pending.called:
                break
        response = self.successResultOf(pending)
        headers = {
            k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()
        }
        return response.code, headers, self.successResultOf(response.content())

    def test_kv_through_a_client(self) -> None:
        """(A client agent is not in -dev mode, so its JSON is compact.)"""
        self.assertEqual(self.call("PUT", "/v1/kv/via/client?flags=3", b"\x00v")[2], b"true")
        self.assertEqual(self.caller.calls[-1][0], "Catalog.Apply")
        code, headers, body = self.call("GET", "/v1/kv/via/client")
        self.assertEqual(code, 200)
        (entry,) = json.loads(body)
        self.assertEqual((entry["Flags"], base64.b64decode(entry["Value"])), (3, b"\x00v"))
        self.assertEqual(headers["x-consul-index"], str(entry["ModifyIndex"]))
        self.assertEqual(self.caller.calls[-1][0], "Catalog.Read")
        self.assertEqual(self.call("GET", "/v1/kv/via/client?raw")[2], b"\x00v")
        self.assertEqual(self.call("GET", "/v1/kv/?keys&separator=/")[2], b'["via/"]')
        self.assertEqual(self.call("PUT", "/v1/kv/via/client?cas=1", b"x")[2], b"false")
        self.assertEqual(self.call("GET", "/v1/kv/gone")[::2], (404, b""))
        self.assertEqual(
            self.call("PUT", "/v1/kv/k?acquire=s1")[::2],
            (500, b'rpc error making call: invalid session "s1"'),
        )
