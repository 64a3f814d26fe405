# -*- test-case-name: tests.unit.http.test_api -*-
"""
The HTTP API's twisted.web side: routing, rendering, errors and request logs.

One leaf resource receives every request so that the answers to unknown
paths (404), wrong methods (405 with ``Allow``) and malformed URLs (400)
are Consul's plain-text one-liners rather than twisted.web's HTML pages.
Handlers live in one module per API area and never see twisted.web.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from consul_tw._logging import HcLogger
from consul_tw.agent import Agent, AgentNotServer, NoClusterLeader, PeerNotFound
from consul_tw.catalog.store import RegistrationError
from consul_tw.durations import format_duration
from consul_tw.http import _json
from consul_tw.http._request import ApiCall, HTTPError, Reply
from consul_tw.raft.core import ConfigurationBusy, ConfigurationError, NotLeader, TransferFailed
from consul_tw.rpc.client import RpcError

Handler = Callable[[ApiCall], "Reply | Deferred[Reply]"]

#: Errors that are part of normal operation: their message is the answer.
EXPECTED_ERRORS = (
    NoClusterLeader,
    AgentNotServer,
    RegistrationError,
    RpcError,
    PeerNotFound,
    # Raft's own refusals: normal during elections, transfers and changes.
    NotLeader,
    ConfigurationBusy,
    ConfigurationError,
    TransferFailed,
)

UI_DISABLED = (
    "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent "
    "configuration and restart."
)


@attrs.frozen
class Route:
    """``path`` is exact, or a prefix when it ends with ``/`` and ``prefix`` is set."""

    path: str
    methods: dict[str, Handler]
    prefix: bool = False


def _match(routes: Iterable[Route], path: str) -> tuple[Route, str] | None:
    best: tuple[Route, str] | None = None
    for route in routes:
        if route.prefix and path.startswith(route.path):
            if best is None or len(route.path) > len(best[0].path):
                best = (route, path[len(route.path) :])
        elif not route.prefix and path == route.path:
            return route, ""
    return best


class ApiResource(Resource):
    isLeaf = True

    def __init__(
        self,
        agent: Agent,
        routes: list[Route],
        *,
        logger: HcLogger,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self._agent = agent
        self._routes = routes
        self._logger = logger
        self._rng = rng or random.Random()

    def render(self, request: Request) -> Any:  # type: ignore[override]
        started = self._agent.clock.seconds()
        request.responseHeaders.removeHeader(b"server")
        request.notifyFinish().addBoth(self._log_finished, request, started)
        method = (request.method or b"GET").decode("ascii", "replace")
        try:
            call, route = self._parse(request, method)
        except HTTPError as e:
            self._write_error(request, e)
            return NOT_DONE_YET
        handler = route.methods.get(method)
        allowed = ",".join(["OPTIONS", *route.methods])
        if method == "OPTIONS":
            request.setHeader(b"allow", allowed.encode())
            request.setResponseCode(200)
            request.finish()
            return NOT_DONE_YET
        if handler is None:
            self._write_error(
                request, HTTPError(405, f"method {method} not allowed", {"Allow": allowed})
            )
            return NOT_DONE_YET
        gone: list[bool] = []
        result: Deferred[Reply] = maybeDeferred(handler, call)

        def hung_up(_: object) -> None:
            # A blocking query whose client hangs up stops waiting.
            gone.append(True)
            result.cancel()

        request.notifyFinish().addErrback(hung_up)
        result.addCallback(lambda reply: gone or self._write_reply(request, call, reply))
        result.addErrback(lambda failure: gone or self._write_failure(request, failure))
        result.addErrback(
            lambda failure: self._logger.error(
                "Failed to write response", error=failure.getErrorMessage()
            )
        )
        return NOT_DONE_YET

    # -- parsing ----------------------------------------------------------

    def _parse(self, request: Request, method: str) -> tuple[ApiCall, Route]:
        raw_path = request.path or b"/"
        try:
            path = unquote(raw_path.decode("ascii"), errors="strict")
            query = {
                k: v
                for k, v in parse_qs(
                    (request.uri or b"").partition(b"?")[2].decode("utf-8"),
                    keep_blank_values=True,
                    errors="strict",
                ).items()
            }
        except (UnicodeDecodeError, ValueError):
            raise HTTPError(400, "Invalid URL encoding") from None
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
            raise HTTPError(400, f"Bad request: invalid character in URL path {path!r}")
        found = _match(self._routes, path)
        if found is None:
            raise HTTPError(404, "Invalid URL path: not a recognized HTTP API endpoint")
        route, suffix = found
        call = ApiCall(
            method=method,
            path=path,
            suffix=suffix,
            query=query,
            content=request.content,
            agent=self._agent,
            rng=self._rng,
        )
        return call, route

    # -- writing ------------------------------------------------------------

    def _write_reply(self, request: Request, call: ApiCall, reply: Reply) -> None:
        request.setResponseCode(reply.status)
        for name, value in reply.headers.items():
            request.setHeader(name.encode(), value.encode())
        if reply.json:
            pretty = call.has("pretty") or self._agent.config.pretty_json
            data = _json.encode(reply.body, pretty=pretty)
            request.setHeader(b"content-type", b"application/json")
        else:
            data = reply.body if isinstance(reply.body, bytes) else str(reply.body).encode()
        request.setHeader(b"content-length", str(len(data)).encode())
        request.write(data)
        request.finish()
        for action in call.after_reply:
            action()

    def _write_error(self, request: Request, error: HTTPError) -> None:
        request.setResponseCode(error.code)
        for name, value in error.headers.items():
            request.setHeader(name.encode(), value.encode())
        data = error.message.encode("utf-8")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", str(len(data)).encode())
        request.write(data)
        request.finish()

    def _write_failure(self, request: Request, failure: Failure) -> None:
        if failure.check(HTTPError):
            self._write_error(request, failure.value)
            return
        if failure.check(*EXPECTED_ERRORS):
            message = failure.getErrorMessage()
        else:
            # A bug of ours: the traceback goes to the log, one line to the client.
            self._logger.error("Unexpected error", error=failure.getTraceback())
            message = f"Internal error: {failure.getErrorMessage()}"
        self._logger.error(
            "Request error",
            method=request.method.decode("ascii", "replace"),
            url=request.uri.decode("utf-8", "replace"),
            **{"from": _peer(request)},
            error=message,
        )
        self._write_error(request, HTTPError(500, message))

    def _log_finished(self, _: object, request: Request, started: float) -> None:
        self._logger.debug(
            "Request finished",
            method=request.method.decode("ascii", "replace"),
            url=request.uri.decode("utf-8", "replace"),
            **{"from": _peer(request)},
            latency=format_duration(max(0.0, self._agent.clock.seconds() - started)),
        )


def _peer(request: Request) -> str:
    peer = request.getClientAddress()
    host = getattr(peer, "host", "")
    port = getattr(peer, "port", "")
    return f"{host}:{port}"


class TrackedChannel(HTTPChannel):
    """An HTTP/1.1 channel its site knows about until the connection closes."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.closed: Deferred[None] = Deferred()
        self.site.open_channels.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.site.open_channels.discard(self)
        super().connectionLost(reason)
        if not self.closed.called:
            self.closed.callback(None)


class QuietSite(Site):
    """
    A Site without twisted.web's access log (Consul logs requests itself)
    that knows its open connections, so that stopping the HTTP server can
    let answers already written (such as a leave's) reach their clients.
    """

    noisy = False
    protocol = TrackedChannel

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.open_channels: set[TrackedChannel] = set()

    def log(self, request: Request) -> None:
        pass


def ui_disabled(call: ApiCall) -> Reply:
    """``GET /``: Consul's answer when its web UI is not served (ours is not built)."""
    return Reply(
        UI_DISABLED.encode(), json=False, headers={"Content-Type": "text/plain; charset=utf-8"}
    )


def build_site(agent: Agent, *, logger: HcLogger, rng: random.Random | None = None) -> QuietSite:
    from consul_tw.http import (
        agent_endpoints,
        catalog_endpoints,
        health_endpoints,
        kv_endpoints,
        operator_endpoints,
        status_endpoints,
    )

    routes = [
        Route("/", {"GET": ui_disabled}),
        *agent_endpoints.ROUTES,
        *catalog_endpoints.ROUTES,
        *health_endpoints.ROUTES,
        *kv_endpoints.ROUTES,
        *operator_endpoints.ROUTES,
        *status_endpoints.ROUTES,
    ]
    site = QuietSite(ApiResource(agent, routes, logger=logger, rng=rng))
    site.displayTracebacks = False
    return site
