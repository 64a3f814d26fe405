# -*- test-case-name: tests.unit.cli.test_http -*-
"""
Talking to the agent's HTTP API from the CLI, and wording the failures.

Consul's commands go through its Go ``api`` package, so their error lines
carry Go's ``net/http`` wording, e.g.::

    Get "http://127.0.0.1:8500/v1/agent/members?segment=_all": dial tcp 127.0.0.1:8500: connect: connection refused
    Unexpected response code: 500 (No cluster leader)

:class:`ConsulAPI` makes the request through an injected treq-style client
(``treq.HTTPClient`` in production, ``treq.testing.StubTreq`` in tests) and
turns every failure into an :class:`APIError` whose message is that text, so
commands only add their ``Error retrieving members:`` prefix.

:class:`CommandContext` bundles what a command needs from the outside world
(HTTP client, environment, output streams) so nothing reaches for globals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TextIO
from urllib.parse import urlencode

import attrs
import treq
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.web.http_headers import Headers

from consul_tw.goflags import parse_go_bool

DEFAULT_ADDRESS = "127.0.0.1:8500"


class HTTPClientLike(Protocol):
    """The one method of ``treq.HTTPClient``/``StubTreq`` the CLI uses."""

    def request(self, method: str, url: str, *, headers: Headers | None = None) -> Deferred[Any]:
        """Send ``method`` to ``url``; fires with an ``IResponse``."""


class AddressError(Exception):
    """The agent address cannot be used (e.g. an unknown scheme)."""


class APIError(Exception):
    """A request failed; ``str()`` is the Go-api-style one-line reason."""


@attrs.frozen
class AgentAddress:
    """Where the agent's HTTP API listens: ``scheme://host:port``."""

    scheme: str
    hostport: str

    def url(self, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
        """
        The full URL for ``path`` with ``query`` appended.

        Query pairs are sorted by key (stably), as Go's ``url.Values.Encode``
        does, so the URL in an error line matches Consul's.
        """
        url = f"{self.scheme}://{self.hostport}{path}"
        if query:
            url += "?" + urlencode(sorted(query, key=lambda pair: pair[0]))
        return url


def resolve_address(flag: str | None, env: Mapping[str, str]) -> AgentAddress:
    """
    Pick the agent address as Consul's api.DefaultConfig + ``-http-addr`` do.

    Precedence: the ``-http-addr`` flag, then ``CONSUL_HTTP_ADDR``, then
    ``127.0.0.1:8500``.  An ``http://`` or ``https://`` prefix selects the
    scheme; without one, ``CONSUL_HTTP_SSL=true`` selects https.

    @raise AddressError: for any other scheme, worded like Go's client.
    """
    raw = flag or env.get("CONSUL_HTTP_ADDR") or DEFAULT_ADDRESS
    scheme = "https" if parse_go_bool(env.get("CONSUL_HTTP_SSL", "")) else "http"
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
        if scheme not in ("http", "https"):
            raise AddressError(f"Unknown protocol scheme: {scheme}")
    return AgentAddress(scheme=scheme, hostport=raw)


def _host_of(hostport: str) -> str:
    """The host part of ``host:port`` (brackets of IPv6 literals removed)."""
    host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
    return host.strip("[]")


def _unwrap(reason: BaseException) -> BaseException:
    """
    The underlying cause of Twisted's wrapper exceptions.

    ``ResponseFailed``, ``ResponseNeverReceived`` and
    ``RequestTransmissionFailed`` carry a ``reasons`` list of Failures; the
    first one is what went wrong on the wire.
    """
    while True:
        reasons = getattr(reason, "reasons", None)
        if not reasons:
            return reason
        reason = reasons[0].value


def transport_error_text(hostport: str, reason: BaseException) -> str:
    """
    Go's wording for a failed connection to ``hostport``.

    Only the common cases map to Go's exact text; anything else keeps
    Twisted's message so the user still sees the cause.
    """
    reason = _unwrap(reason)
    dial = f"dial tcp {hostport}"
    if isinstance(reason, ierror.ConnectionRefusedError):
        return f"{dial}: connect: connection refused"
    if isinstance(reason, ierror.NoRouteError):
        return f"{dial}: connect: no route to host"
    if isinstance(reason, ierror.TCPTimedOutError):
        return f"{dial}: connect: connection timed out"
    if isinstance(reason, ierror.TimeoutError):
        return f"{dial}: i/o timeout"
    if isinstance(reason, ierror.DNSLookupError):
        return f"dial tcp: lookup {_host_of(hostport)}: no such host"
    if isinstance(reason, ierror.ConnectionClosed):
        return "EOF"
    if isinstance(reason, ierror.ConnectError):
        return f"{dial}: {reason}"
    return str(reason) or type(reason).__name__


def request_error_text(method: str, url: str, hostport: str, reason: BaseException) -> str:
    """
    ``Get "<url>": <cause>``, as Go's ``*url.Error`` prints itself.
    """
    operation = method[:1].upper() + method[1:].lower()
    return f'{operation} "{url}": {transport_error_text(hostport, reason)}'


def unexpected_response_text(code: int, body: bytes) -> str:
    """
    The Consul api's message for a non-200 answer.

    The body is trimmed (Consul's error bodies end in a newline) and decoded
    leniently: it is shown to a human, never parsed.
    """
    text = body.decode("utf-8", "replace").strip()
    return f"Unexpected response code: {code} ({text})"


@attrs.frozen
class ConsulAPI:
    """
    A minimal Consul API client: one request, Consul-worded failures.

    ``datacenter`` and ``stale`` are applied to every request, as the Go
    client applies its config's ``Datacenter`` (commands that do not take
    ``-datacenter`` leave them unset).
    """

    client: HTTPClientLike
    address: AgentAddress
    token: str = ""
    datacenter: str = ""
    stale: bool = False

    def _query(self, query: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        pairs = list(query)
        if self.datacenter:
            pairs.append(("dc", self.datacenter))
        if self.stale:
            pairs.append(("stale", ""))
        return pairs

    async def request(self, method: str, path: str, query: Sequence[tuple[str, str]] = ()) -> bytes:
        """
        Send one request and return the body of a 200 answer.

        @raise APIError: on a transport failure or any other status code.
        """
        url = self.address.url(path, self._query(query))
        headers = Headers({b"X-Consul-Token": [self.token.encode("utf-8")]} if self.token else {})
        try:
            response = await self.client.request(method, url, headers=headers)
        except Exception as exc:
            raise APIError(request_error_text(method, url, self.address.hostport, exc)) from exc
        try:
            body: bytes = await treq.content(response)
        except Exception as exc:
            # Go reports a body cut short as io.ErrUnexpectedEOF.
            cause = _unwrap(exc)
            text = "unexpected EOF" if isinstance(cause, ierror.ConnectionClosed) else str(cause)
            raise APIError(text) from exc
        if response.code != 200:
            raise APIError(unexpected_response_text(response.code, body))
        return body

    async def get_json(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Any:
        """GET ``path`` and decode the JSON answer."""
        body = await self.request("GET", path, query)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise APIError(f"invalid JSON in response: {exc}") from exc


@attrs.frozen
class CommandContext:
    """
    Everything a command touches outside itself, injected by ``main``.

    Tests pass a ``StubTreq``, a plain dict for ``env`` and ``io.StringIO``
    streams; :func:`consul_tw.cli.main.run` passes the real ones.
    """

    http: HTTPClientLike
    env: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO

    def out(self, text: str) -> None:
        """Write one line (or block) of normal output."""
        self.stdout.write(text + "\n")

    def error(self, text: str) -> None:
        """Write one line (or block) to stderr, as Consul's ``UI.Error``."""
        self.stderr.write(text + "\n")

    def api(self, options: Mapping[str, Any]) -> ConsulAPI:
        """
        Build the API client for a command's parsed options.

        @raise AddressError: when the address is unusable.
        """
        return ConsulAPI(
            client=self.http,
            address=resolve_address(options.get("http-addr"), self.env),
            token=options.get("token") or self.env.get("CONSUL_HTTP_TOKEN", ""),
            datacenter=options.get("datacenter") or "",
            stale=bool(options.get("stale")),
        )


def connect(ctx: CommandContext, options: Mapping[str, Any]) -> ConsulAPI | None:
    """
    :meth:`CommandContext.api`, reporting an unusable address like Consul.

    Returns ``None`` after printing ``Error connecting to Consul agent: ...``;
    the command then exits 1.
    """
    try:
        return ctx.api(options)
    except AddressError as exc:
        ctx.error(f"Error connecting to Consul agent: {exc}")
        return None
