# -*- test-case-name: tests.unit.rpc.test_framing -*-
"""
The server-RPC wire format, pure (no I/O, nothing from Twisted).

A connection to the server RPC port (8300) opens with one byte naming the
protocol spoken on it, as Consul's does: :data:`PROTOCOL_RPC` (``0x01``)
for request/response calls, :data:`PROTOCOL_RAFT` (``0x02``) for Raft
messages.  After that byte both directions carry *frames*: a 4-byte
big-endian unsigned length, then exactly that many bytes holding exactly
one msgpack value (``str`` for text, ``bin`` for bytes; maps may have
non-text keys).  A frame's body is 1 to :data:`MAX_FRAME_SIZE` bytes.

On an RPC connection the client sends requests
``{"id": int, "method": str, "args": <any>}`` and the server answers
``{"id": int, "result": <any>, "error": str | None}``, as soon as each
call completes (so possibly out of order); ids are the caller's, unique
among its calls in flight on that connection.

Everything that is not well formed -- a bad length, truncated or trailing
msgpack, text that is not UTF-8, an extension type, a request without an
id -- raises :class:`FrameError` with a one-line message, and nothing else;
the caller closes the connection.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, NoReturn

import attrs
import msgpack

#: The first byte of a connection: forwarded RPC calls.
PROTOCOL_RPC = 0x01
#: The first byte of a connection: Raft messages (see :mod:`consul_tw.rpc.raft_channel`).
PROTOCOL_RAFT = 0x02

#: Largest frame body accepted or written (8 MiB).
MAX_FRAME_SIZE = 8 * 1024 * 1024
HEADER = struct.Struct(">I")
#: Request ids are unsigned 64-bit integers.
MAX_ID = 2**64 - 1

_MESSAGE_LIMIT = 200


class FrameError(ValueError):
    """Bytes or values that are not a well-formed frame; the message is one short line."""

    def __init__(self, message: str) -> None:
        line = " ".join(message.split()) or "malformed frame"
        if len(line) > _MESSAGE_LIMIT:
            line = line[: _MESSAGE_LIMIT - 3] + "..."
        super().__init__(line)


def _reject_ext(code: int, data: bytes) -> Any:
    raise FrameError(f"malformed msgpack: extension type {code} not allowed")


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


# -- frames ----------------------------------------------------------------------


def encode_body(value: Any) -> bytes:
    """``value`` as one msgpack body (FrameError if it cannot be encoded or is too large)."""
    try:
        body: bytes = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise FrameError(f"can't encode: {_describe(e)}") from None
    if len(body) > MAX_FRAME_SIZE:
        raise FrameError(f"frame too large: {len(body)} bytes (limit {MAX_FRAME_SIZE})")
    return body


def encode_frame(value: Any) -> bytes:
    """One frame (length prefix and body) holding ``value``."""
    body = encode_body(value)
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes | bytearray | memoryview) -> Any:
    """The one msgpack value that makes up ``body`` (FrameError otherwise)."""
    if len(body) == 0:
        raise FrameError("empty frame")
    try:
        return msgpack.unpackb(
            body, raw=False, strict_map_key=False, use_list=True, ext_hook=_reject_ext
        )
    except FrameError:
        raise
    except Exception as e:  # msgpack raises a zoo of types for junk
        raise FrameError(f"malformed msgpack: {_describe(e)}") from None


@attrs.define
class FrameDecoder:
    """
    Incremental reader of a frame stream.

    ``feed`` buffers bytes; ``frames`` then yields each complete frame's
    value in order and raises :class:`FrameError` at the first malformed
    one (the frames before it have been yielded).  An oversize length is
    refused as soon as its 4 header bytes arrive, before any of the body is
    buffered.  After an error the decoder stays failed.
    """

    max_size: int = MAX_FRAME_SIZE
    _buffer: bytearray = attrs.field(factory=bytearray, init=False)
    #: Start of the first unread frame in ``_buffer`` (consumed bytes are
    #: dropped on the next ``feed``, so a burst of small frames costs one move).
    _offset: int = attrs.field(default=0, init=False)
    _failed: str | None = attrs.field(default=None, init=False)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> None:
        if self._failed is not None:
            return
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    def frames(self) -> Iterator[Any]:
        while True:
            if self._failed is not None:
                raise FrameError(self._failed)
            buffer, start = self._buffer, self._offset
            if len(buffer) - start < HEADER.size:
                return
            (length,) = HEADER.unpack_from(buffer, start)
            if length == 0:
                self._fail("empty frame")
            if length > self.max_size:
                self._fail(f"frame too large: {length} bytes (limit {self.max_size})")
            end = start + HEADER.size + length
            if len(buffer) < end:
                return
            body = buffer[start + HEADER.size : end]
            self._offset = end
            try:
                value = decode_body(body)
            except FrameError as e:
                self._fail(str(e))
            yield value

    def _fail(self, message: str) -> NoReturn:
        self._failed = message
        self._buffer = bytearray()
        self._offset = 0
        raise FrameError(message)


def decode_frames(data: bytes) -> list[Any]:
    """Every frame of ``data``, which must end on a frame boundary."""
    decoder = FrameDecoder()
    decoder.feed(data)
    values = list(decoder.frames())
    if decoder.buffered:
        raise FrameError(f"truncated frame: {decoder.buffered} bytes left over")
    return values


# -- RPC messages ----------------------------------------------------------------


@attrs.frozen
class Request:
    """One call: ``args`` is any msgpack value."""

    id: int
    method: str
    args: Any = None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "args": self.args}


@attrs.frozen
class Response:
    """The answer to the request with the same id: a result, or an error text."""

    id: int
    result: Any = None
    error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "result": self.result, "error": self.error}


def _fields(value: Any, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise FrameError(f"{what} must be a map, got {type(value).__name__}")
    return value


def _id(fields: dict[Any, Any], what: str) -> int:
    call_id = fields.get("id")
    if type(call_id) is not int or not 0 <= call_id <= MAX_ID:
        raise FrameError(f"{what} id must be an unsigned 64-bit integer")
    return call_id


def request_from_wire(value: Any) -> Request:
    """A decoded frame as a :class:`Request` (unknown keys are ignored)."""
    fields = _fields(value, "request")
    call_id = _id(fields, "request")
    method = fields.get("method")
    if not isinstance(method, str) or not method:
        raise FrameError("request method must be a non-empty string")
    return Request(call_id, method, fields.get("args"))


def response_from_wire(value: Any) -> Response:
    """A decoded frame as a :class:`Response` (unknown keys are ignored)."""
    fields = _fields(value, "response")
    call_id = _id(fields, "response")
    error = fields.get("error")
    if error is not None and not isinstance(error, str):
        raise FrameError("response error must be a string or nil")
    return Response(call_id, None if error is not None else fields.get("result"), error)
