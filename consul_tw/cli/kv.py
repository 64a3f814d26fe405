# -*- test-case-name: tests.unit.cli.test_kv -*-
"""
``consul-tw kv get|put|delete``: the KV store from the command line.

Mirrors Consul's ``command/kv/{get,put,del}`` and the Go ``api`` calls they
make: the same URLs (the key path-escaped as Go's ``net/url`` does), the
same ``Success!``/``Error!`` lines and exit codes, and the same quirks
where users can see them (``get`` and ``delete`` strip one leading slash,
``put`` refuses it; ``kv get -detailed`` aligns like Go's tabwriter).

A 404 from ``GET /v1/kv/...`` means "no such key" (Consul's api returns no
pair rather than an error); every other non-200 answer is an error line.
One intended difference: a ``-base64`` value that does not decode stops
``put`` with exit 1 (Consul prints the error and goes on writing).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast
from urllib.parse import quote

from twisted.python import usage
from twisted.web.http_headers import Headers

from consul_tw.cli._flags import CommandOptions, ServerHTTPOptions
from consul_tw.cli._http import (
    APIError,
    CommandContext,
    ConsulAPI,
    connect,
    request_error_text,
    unexpected_response_text,
)

_MAX_UINT64 = 2**64 - 1
#: Go's tabwriter in ``kv get -detailed``: the widest label (11) plus a padding of 6.
_DETAIL_WIDTH = 17
_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _uint64_flag(name: str, value: str) -> int:
    """A ``uint64`` flag value, refused in the words of Go's ``flag`` package."""
    if not value.isascii() or not value.isdigit():
        raise usage.UsageError(f'invalid value "{value}" for flag -{name}: parse error')
    number = int(value)
    if number > _MAX_UINT64:
        raise usage.UsageError(f'invalid value "{value}" for flag -{name}: value out of range')
    return number


class _KVOptions(ServerHTTPOptions):
    """Positional arguments are checked by the command, in Consul's words (no usage text)."""

    def parseArgs(self, *args: str) -> None:
        self["args"] = list(args)


class _ModifyIndexOptions(_KVOptions):
    def __init__(self) -> None:
        super().__init__()
        self["modify-index"] = 0

    def opt_modify_index(self, value: str) -> None:
        """Unsigned integer representing the ModifyIndex of the key (used with -cas)."""
        self["modify-index"] = _uint64_flag("modify-index", value)


class KVGetOptions(_KVOptions):
    """Flags of ``consul kv get``."""

    synopsis_args = "[options] [KEY_OR_PREFIX]"
    longdesc = (
        "Retrieves the value from Consul's key-value store at the given key name, "
        "or lists the keys and values under a prefix."
    )
    optFlags: ClassVar[list[list[object]]] = [
        ["base64", None, "Base64 encode the value."],
        ["detailed", None, "Also show the key's metadata (ModifyIndex, flags, ...)."],
        ["keys", None, "List the keys which start with the given prefix, not their values."],
        ["recurse", None, "Recursively look at all keys prefixed with the given path."],
    ]
    optParameters: ClassVar[list[list[object]]] = [
        ["separator", None, "/", "Separator between keys (only with -keys)."],
    ]


class KVPutOptions(_ModifyIndexOptions):
    """Flags of ``consul kv put``."""

    synopsis_args = "[options] KEY [DATA]"
    longdesc = (
        "Writes the data to the given path in the key-value store. DATA may be @FILE, "
        "or - to read standard input; without DATA the key gets an empty value."
    )
    optFlags: ClassVar[list[list[object]]] = [
        ["cas", None, "Perform a Check-And-Set operation (with -modify-index)."],
        ["base64", None, "Treat the data as base 64 encoded."],
        ["acquire", None, "Obtain a lock on the key (needs -session)."],
        ["release", None, "Forfeit the lock on the key (needs -session)."],
    ]
    optParameters: ClassVar[list[list[object]]] = [
        ["session", None, None, "Session identifier, used with -acquire and -release."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["flags"] = 0

    def opt_flags(self, value: str) -> None:
        """Unsigned integer value to assign to this key-value pair (default 0)."""
        self["flags"] = _uint64_flag("flags", value)


class KVDeleteOptions(_ModifyIndexOptions):
    """Flags of ``consul kv delete``."""

    synopsis_args = "[options] KEY_OR_PREFIX"
    longdesc = "Removes the value from Consul's key-value store at the given path."
    optFlags: ClassVar[list[list[object]]] = [
        ["cas", None, "Perform a Check-And-Set operation (with -modify-index)."],
        ["recurse", None, "Recursively delete all keys with the path."],
    ]


class KVOptions(CommandOptions):
    """``consul kv`` only groups its subcommands."""

    synopsis_args = "<subcommand> [options] [args]"
    longdesc = "Interact with the key-value store."
    subCommands: ClassVar[list[tuple[str, None, type[usage.Options], str]]] = [
        ("delete", None, KVDeleteOptions, "Removes data from the KV store"),
        ("get", None, KVGetOptions, "Retrieves or lists data from the KV store"),
        ("put", None, KVPutOptions, "Sets or updates data in the KV store"),
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("kv needs a subcommand: delete, get or put")


# -- talking to /v1/kv -----------------------------------------------------------


def kv_path(key: str) -> str:
    """``/v1/kv/<key>`` with the key escaped as Go's ``url.URL`` escapes a path."""
    return "/v1/kv/" + quote(key, safe="/$&+,:;=@")


async def kv_request(
    api: ConsulAPI,
    method: str,
    key: str,
    query: Sequence[tuple[str, str]] = (),
    *,
    body: bytes | None = None,
) -> bytes | None:
    """
    One request to ``/v1/kv/<key>``; the body of a 200, or None for a GET's
    404 (no such key).  ``-datacenter`` applies to every request, ``-stale``
    only to reads, as in Consul's api client.

    @raise APIError: on a transport failure or any other status.
    """
    pairs = list(query)
    if api.datacenter:
        pairs.append(("dc", api.datacenter))
    if api.stale and method == "GET":
        pairs.append(("stale", ""))
    url = api.address.url(kv_path(key), pairs)
    headers = Headers({b"X-Consul-Token": [api.token.encode("utf-8")]} if api.token else {})
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["data"] = body
    try:
        # treq's request takes ``data``; the CLI's client protocol only declares GETs.
        response = await cast(Any, api.client).request(method, url, **kwargs)
        content: bytes = await response.content()
    except Exception as exc:
        raise APIError(request_error_text(method, url, api.address.hostport, exc)) from exc
    if response.code == 200:
        return content
    if response.code == 404 and method == "GET":
        return None
    raise APIError(unexpected_response_text(response.code, content))


def _json(body: bytes | None) -> Any:
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise APIError(f"invalid JSON in response: {exc}") from exc


def _value(pair: dict[str, Any]) -> bytes:
    return base64.b64decode(pair.get("Value") or "")


def _show(ctx: CommandContext, data: bytes) -> None:
    """One line of value bytes, as they are when stdout is a real stream."""
    buffer = getattr(ctx.stdout, "buffer", None)
    if buffer is None:
        ctx.out(data.decode("utf-8", "replace"))
        return
    ctx.stdout.flush()
    buffer.write(data + b"\n")
    buffer.flush()


def detailed_lines(pair: dict[str, Any], base64_value: bool) -> list[str]:
    """``kv get -detailed``: Consul's labels, aligned as its tabwriter aligns them."""
    value = _value(pair)
    shown = (
        base64.b64encode(value).decode("ascii")
        if base64_value
        else value.decode("utf-8", "replace")
    )
    rows = [
        ("CreateIndex", str(pair.get("CreateIndex", 0))),
        ("Flags", str(pair.get("Flags", 0))),
        ("Key", str(pair.get("Key", ""))),
        ("LockIndex", str(pair.get("LockIndex", 0))),
        ("ModifyIndex", str(pair.get("ModifyIndex", 0))),
        ("Session", str(pair.get("Session") or "-")),
        ("Value", shown),
    ]
    return [label.ljust(_DETAIL_WIDTH) + text for label, text in rows]


# -- get --------------------------------------------------------------------------


async def run_get(options: KVGetOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw kv get``; returns the exit code."""
    args = options["args"]
    if len(args) > 1:
        ctx.error(f"Too many arguments (expected 1, got {len(args)})")
        return 1
    key = args[0] if args else ""
    if key.startswith("/"):
        key = key[1:]
    if not key and not (options["recurse"] or options["keys"]):
        ctx.error("Error! Missing KEY argument")
        return 1
    api = connect(ctx, options)
    if api is None:
        return 1
    try:
        if options["keys"]:
            query = [("keys", "")]
            if options["separator"]:
                query.append(("separator", options["separator"]))
            for name in _json(await kv_request(api, "GET", key, query)) or []:
                ctx.out(str(name))
            return 0
        if options["recurse"]:
            pairs = _json(await kv_request(api, "GET", key, [("recurse", "")])) or []
        else:
            found = _json(await kv_request(api, "GET", key)) or []
            if not found:
                ctx.error(f"Error! No key exists at: {key}")
                return 1
            pairs = found[:1]
    except APIError as exc:
        ctx.error(f"Error querying Consul agent: {exc}")
        return 1
    for position, pair in enumerate(pairs):
        if options["detailed"]:
            ctx.out("\n".join(detailed_lines(pair, options["base64"])))
            if options["recurse"] and position < len(pairs) - 1:
                ctx.out("")
        elif not options["recurse"]:
            _show(ctx, _value(pair))
        elif options["base64"]:
            ctx.out(f"{pair.get('Key', '')}:{base64.b64encode(_value(pair)).decode('ascii')}")
        else:
            _show(ctx, f"{pair.get('Key', '')}:".encode() + _value(pair))
    return 0


# -- put --------------------------------------------------------------------------


class _DataError(Exception):
    """The DATA argument cannot be read; the message follows ``Error! ``."""


def _arg_bytes(text: str) -> bytes:
    """An argv string back to the bytes the shell passed."""
    return os.fsencode(text)


def _stdin(ctx: CommandContext) -> bytes:
    stream = getattr(ctx, "stdin", None) or sys.stdin
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
    return data if isinstance(data, bytes) else data.encode("utf-8")


def load_data(ctx: CommandContext, data: str) -> bytes:
    """Consul's ``LoadDataSource``: ``@FILE``, ``-`` for stdin, else the text itself."""
    if data.startswith("@"):
        path = data[1:]
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise _DataError(f"Failed to read file: open {path}: {reason}") from exc
    if data == "-":
        try:
            return _stdin(ctx)
        except OSError as exc:
            raise _DataError(f"Failed to read stdin: {exc}") from exc
    return _arg_bytes(data)


def _decode_base64(data: bytes) -> bytes:
    """Standard base64, refused with Go's ``illegal base64 data at input byte N``."""
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        bad = next((i for i, b in enumerate(data) if b not in _BASE64_ALPHABET), None)
        offset = bad if bad is not None else len(data) - len(data) % 4
        raise _DataError(
            f"Cannot base 64 decode data: illegal base64 data at input byte {offset}"
        ) from None


async def run_put(options: KVPutOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw kv put``; returns the exit code."""
    args = options["args"]
    try:
        if not args:
            raise _DataError("Missing KEY argument")
        if len(args) > 2:
            raise _DataError(f"Too many arguments (expected 1 or 2, got {len(args)})")
        key = args[0]
        data = load_data(ctx, args[1]) if len(args) == 2 else b""
        if options["base64"]:
            data = _decode_base64(data)
    except _DataError as exc:
        ctx.error(f"Error! {exc}")
        return 1
    session = options["session"] or ""
    if (options["acquire"] or options["release"]) and not session:
        ctx.error("Error! Missing -session (required with -acquire and -release)")
        return 1
    api = connect(ctx, options)
    if api is None:
        return 1
    query: list[tuple[str, str]] = []
    if options["flags"]:
        query.append(("flags", str(options["flags"])))
    if options["cas"]:
        query.append(("cas", str(options["modify-index"])))
    elif options["acquire"]:
        query.append(("acquire", session))
    elif options["release"]:
        query.append(("release", session))
    try:
        if key.startswith("/"):
            # Consul's api refuses such keys before sending anything.
            raise APIError(f"Invalid key. Key must not begin with a '/': {key}")
        written = b"true" in (await kv_request(api, "PUT", key, query, body=data) or b"")
    except APIError as exc:
        if options["cas"]:
            ctx.error(f"Error! Did not write to {key}: {exc}")
        elif options["release"]:
            # Consul prints the key here, not the error.
            ctx.error(f"Error! Failed writing data: {key}")
        else:
            ctx.error(f"Error! Failed writing data: {exc}")
        return 1
    return _put_outcome(options, ctx, key, written)


def _put_outcome(options: KVPutOptions, ctx: CommandContext, key: str, written: bool) -> int:
    if options["cas"] and not written:
        if options["modify-index"] == 0:
            ctx.error(
                f"Error! Did not write to {key}: CAS performed with index=0 and key already exists."
            )
        else:
            ctx.error(f"Error! Did not write to {key}: CAS failed")
        return 1
    if options["cas"]:
        ctx.out(f"Success! Data written to: {key}")
    elif options["acquire"]:
        if not written:
            ctx.error("Error! Did not acquire lock")
            return 1
        ctx.out(f"Success! Lock acquired on: {key}")
    elif options["release"]:
        if not written:
            ctx.error("Error! Did not release lock")
            return 1
        ctx.out(f"Success! Lock released on: {key}")
    else:
        ctx.out(f"Success! Data written to: {key}")
    return 0


# -- delete -----------------------------------------------------------------------


async def run_delete(options: KVDeleteOptions, ctx: CommandContext) -> int:
    """Execute ``consul-tw kv delete``; returns the exit code."""
    args = options["args"]
    if len(args) > 1:
        ctx.error(f"Too many arguments (expected 1, got {len(args)})")
        return 1
    key = args[0] if args else ""
    if key.startswith("/"):
        key = key[1:]
    cas, recurse, index = options["cas"], options["recurse"], options["modify-index"]
    problem = None
    if not key and not recurse:
        problem = "Error! Missing KEY argument"
    elif cas and index == 0:
        problem = (
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0."
        )
    elif index != 0 and not cas:
        problem = "Cannot specify -modify-index without -cas!"
    elif recurse and cas:
        problem = "Cannot specify both -cas and -recurse!"
    if problem is not None:
        ctx.error(problem)
        return 1
    api = connect(ctx, options)
    if api is None:
        return 1
    if recurse:
        query, failure = [("recurse", "")], f"Error! Did not delete prefix {key}"
    elif cas:
        query, failure = [("cas", str(index))], f"Error! Did not delete key {key}"
    else:
        query, failure = [], f"Error deleting key {key}"
    try:
        deleted = b"true" in (await kv_request(api, "DELETE", key, query) or b"")
    except APIError as exc:
        ctx.error(f"{failure}: {exc}")
        return 1
    if recurse:
        ctx.out(f"Success! Deleted keys with prefix: {key}")
        return 0
    if cas and not deleted:
        ctx.error(f"Error! Did not delete key {key}: CAS failed")
        return 1
    ctx.out(f"Success! Deleted key: {key}")
    return 0
