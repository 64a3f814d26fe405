# -*- test-case-name: tests.unit.http.test_api -*-
"""
One API call, its reply, and the rules every catalog read shares.

Handlers receive an :class:`ApiCall` (method, path remainder, query, body,
agent) and return a :class:`Reply` or a Deferred of one; they raise
:class:`HTTPError` for Consul's plain-text error answers.  :func:`catalog_read`
implements what all replicated reads do in Consul: the ``?dc`` check,
consistency modes, blocking on ``?index``/``?wait`` and the ``X-Consul-*``
headers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import IO, Any

import attrs

from consul_tw.agent import Agent
from consul_tw.catalog.reads import MAX_WAIT
from consul_tw.durations import parse_duration

#: Blocking query defaults (Consul's default_query_time / max_query_time).
DEFAULT_WAIT = 300.0
#: Largest request body a handler reads (Consul's kv_max_value_size).
MAX_BODY = 512 * 1024


class HTTPError(Exception):
    """An error answer: status code and Consul's one-line plain-text body."""

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


@attrs.frozen
class Reply:
    """A successful answer: a JSON-able value, or raw bytes with ``json=False``."""

    body: Any
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    json: bool = True


@attrs.define
class ApiCall:
    method: str
    path: str
    #: What followed the route's prefix (``/v1/catalog/node/<this>``).
    suffix: str
    query: dict[str, list[str]]
    #: The request body, unread: handlers that take one read it with
    #: :meth:`read_body`, which bounds it.
    content: IO[bytes] | None
    agent: Agent
    rng: random.Random = attrs.field(factory=random.Random)
    #: Run once the reply has been sent (e.g. exit after a leave is answered).
    after_reply: list[Callable[[], None]] = attrs.field(factory=list)

    def read_body(self, limit: int = MAX_BODY) -> bytes:
        """The body, refused with Consul's 413 when larger than ``limit``."""
        if self.content is None:
            return b""
        self.content.seek(0)
        data = self.content.read(limit + 1)
        if len(data) > limit:
            raise HTTPError(413, f"Request body too large, max size: {limit} bytes")
        return data

    def has(self, name: str) -> bool:
        return name in self.query

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


def check_datacenter(call: ApiCall) -> None:
    dc = call.get("dc")
    if dc and dc.lower() != call.agent.config.datacenter:
        raise HTTPError(500, "No path to datacenter")


def blocking_params(call: ApiCall) -> tuple[int, float]:
    index_text = call.get("index")
    index = 0
    if index_text:
        try:
            index = int(index_text)
            if index < 0:
                raise ValueError(index_text)
        except ValueError:
            raise HTTPError(400, "Invalid index") from None
    wait = DEFAULT_WAIT
    wait_text = call.get("wait")
    if wait_text:
        try:
            wait = parse_duration(wait_text)
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
    if wait <= 0:
        # Consul: a zero or negative wait means the default, not "don't wait".
        wait = DEFAULT_WAIT
    wait = min(wait, MAX_WAIT)
    return index, wait
