# -*- test-case-name: tests.unit.http.test_kv_api -*-
"""
``/v1/kv/<key>``: Consul's KV store over HTTP (GET, PUT, DELETE).

Mirrors Consul's ``agent/kvs_endpoint.go``: reads are the named reads
``KVS.Get``, ``KVS.List`` and ``KVS.ListKeys`` (so a client agent forwards
them like any catalog read) rendered with the usual ``X-Consul-*`` headers,
and a missing key or empty prefix is a 404 with an empty body and those
headers.  Writes are :class:`consul_tw.catalog.commands.KVS` commands
committed through Raft; the body of a PUT is the raw value.

The order of the checks is Consul's, because it decides which error a bad
request gets: query options first (``?stale&consistent``, ``?index``,
``?wait``, for every method), then the key, conflicting flags, the numbers
in ``?flags``/``?cas`` (Go's ``strconv.ParseUint`` error, which Consul
answers with a 500), the value size (413), and the datacenter last, where
Consul's RPC would fail.
"""

from __future__ import annotations

import base64
from typing import IO, Any
from urllib.parse import quote_plus, urlencode

from twisted.internet.defer import Deferred

from consul_tw.catalog.commands import (
    KV_CAS,
    KV_DELETE,
    KV_DELETE_CAS,
    KV_DELETE_TREE,
    KV_LOCK,
    KV_SET,
    KV_UNLOCK,
    KVS,
    MAX_UINT64,
)
from consul_tw.http._request import ApiCall, HTTPError, Reply, blocking_params, check_datacenter
from consul_tw.http.catalog_endpoints import read
from consul_tw.http.root import Route

#: Consul's ``kv_max_value_size`` default (512 KiB).
KV_MAX_VALUE_SIZE = 512 * 1024
#: Where Consul 1.17's 413 answer points.
_SIZE_DOCS = "https://www.consul.io/docs/agent/config/config-files#kv_max_value_size"
#: What Consul adds to a ``?raw`` answer so that a browser never runs a stored value.
_RAW_HEADERS = {
    "Content-Type": "text/plain",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}


# -- request parsing -------------------------------------------------------------


def _key(call: ApiCall) -> str:
    """
    The key: the path after ``/v1/kv/``, already percent-decoded (``%2F`` is
    a slash, as in Go's ``URL.Path``), without leading slashes (Go's router
    would clean ``/v1/kv//k`` to ``/v1/kv/k``).
    """
    return call.suffix.lstrip("/")


def _query_options(call: ApiCall) -> None:
    """Consul parses the query options of every KV request, writes included."""
    if call.has("stale") and call.has("consistent"):
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    blocking_params(call)


def _go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` for the texts these errors show (ASCII in practice)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in escaped) + '"'


def parse_uint64(text: str) -> int:
    """
    Go's ``strconv.ParseUint(text, 10, 64)``: ASCII digits only, checked in
    order (so a syntax error after an overflow reports the overflow).
    """
    number = 0
    for ch in text:
        if not "0" <= ch <= "9":
            raise HTTPError(500, f"strconv.ParseUint: parsing {_go_quote(text)}: invalid syntax")
        number = number * 10 + ord(ch) - ord("0")
        if number > MAX_UINT64:
            raise HTTPError(
                500, f"strconv.ParseUint: parsing {_go_quote(text)}: value out of range"
            )
    if not text:
        raise HTTPError(500, 'strconv.ParseUint: parsing "": invalid syntax')
    return number


def _uint_param(call: ApiCall, name: str) -> int:
    return parse_uint64(call.get(name, "") or "")


def _conflicting(call: ApiCall, *names: str) -> None:
    """Consul's ``conflictingFlags``: the query (Go's ``Values.Encode``) in the 400."""
    if sum(call.has(name) for name in names) > 1:
        encoded = urlencode(sorted(call.query.items()), doseq=True, quote_via=quote_plus)
        raise HTTPError(400, f"Conflicting flags: {encoded}")


def _value(call: ApiCall) -> bytes:
    """The PUT body; over :data:`KV_MAX_VALUE_SIZE` it is Consul's 413."""
    content: IO[bytes] | None = call.content
    if content is None:
        return b""
    content.seek(0, 2)
    size = content.tell()
    if size > KV_MAX_VALUE_SIZE:
        raise HTTPError(
            413,
            f"Request body({size} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes. "
            f"See {_SIZE_DOCS}.",
        )
    content.seek(0)
    return content.read()


# -- rendering ---------------------------------------------------------------------


def entry_json(record: dict[str, Any]) -> dict[str, Any]:
    """A KVS read's entry as Consul's JSON: the value base64, ``null`` when empty."""
    value = record["Value"]
    return {**record, "Value": base64.b64encode(value).decode("ascii") if value else None}


def _not_found(reply: Reply) -> Reply:
    """Consul's 404 for a missing key: no body, but the index and leader headers."""
    return Reply(b"", status=404, headers=reply.headers, json=False)


# -- handlers ----------------------------------------------------------------------


def get(call: ApiCall) -> Deferred[Reply]:
    _query_options(call)
    key = _key(call)
    if call.has("keys"):
        return _keys(call, key)
    recurse = call.has("recurse")
    if not recurse and not key:
        raise HTTPError(400, "Missing key name")
    raw = call.has("raw") and not recurse

    def render(reply: Reply) -> Reply:
        entries = reply.body
        if not entries:
            return _not_found(reply)
        if raw:
            return Reply(entries[0]["Value"], headers={**reply.headers, **_RAW_HEADERS}, json=False)
        return Reply([entry_json(e) for e in entries], headers=reply.headers)

    if recurse:
        return read(call, "KVS.List", {"prefix": key}).addCallback(render)
    return read(call, "KVS.Get", {"key": key}).addCallback(render)


def _keys(call: ApiCall, prefix: str) -> Deferred[Reply]:
    # Consul still honours its historic misspelling, with the right one winning.
    separator = call.get("separator") if call.has("separator") else call.get("seperator", "")

    def render(reply: Reply) -> Reply:
        if not reply.body and prefix:
            return _not_found(reply)
        return reply

    args = {"prefix": prefix, "separator": separator or ""}
    return read(call, "KVS.ListKeys", args).addCallback(render)


def put(call: ApiCall) -> Deferred[Reply]:
    _query_options(call)
    key = _key(call)
    if not key:
        raise HTTPError(400, "Missing key name")
    _conflicting(call, "cas", "acquire", "release")
    op, flags, cas, session = KV_SET, 0, 0, ""
    if call.has("flags"):
        flags = _uint_param(call, "flags")
    if call.has("cas"):
        op, cas = KV_CAS, _uint_param(call, "cas")
    if call.has("acquire"):
        op, session = KV_LOCK, call.get("acquire", "") or ""
    if call.has("release"):
        op, session = KV_UNLOCK, call.get("release", "") or ""
    value = _value(call)
    check_datacenter(call)
    command = KVS(op=op, key=key, value=value, flags=flags, cas=cas, session=session)
    # A plain set always answers true; CAS, acquire and release answer the outcome.
    return call.agent.write(command).addCallback(lambda ok: Reply(op == KV_SET or bool(ok)))


def delete(call: ApiCall) -> Deferred[Reply]:
    _query_options(call)
    key = _key(call)
    _conflicting(call, "recurse", "cas")
    op, cas = KV_DELETE, 0
    if call.has("recurse"):
        op = KV_DELETE_TREE
    elif not key:
        raise HTTPError(400, "Missing key name")
    if call.has("cas"):
        op, cas = KV_DELETE_CAS, _uint_param(call, "cas")
    check_datacenter(call)
    command = KVS(op=op, key=key, cas=cas)
    return call.agent.write(command).addCallback(lambda ok: Reply(op != KV_DELETE_CAS or bool(ok)))


ROUTES = [
    Route("/v1/kv/", {"GET": get, "PUT": put, "DELETE": delete}, prefix=True),
]
