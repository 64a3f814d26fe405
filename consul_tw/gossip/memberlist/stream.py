# -*- test-case-name: tests.unit.gossip.test_memberlist_codec -*-
"""
TCP stream messages: push/pull, the fallback ping and its ack, err replies
and stream user messages, plain or compressed.

A plain stream message has no length prefix: the writer keeps the
connection open while it waits for the reply, so the reader has to parse
msgpack incrementally to know where the message ends.  :class:`StreamReader`
does that over whatever chunks TCP delivers and returns the message once it
is complete.

Encrypted streams (type 10, a length-prefixed AES-GCM frame) belong to
:mod:`.keyring`: the reader raises :class:`EncryptedStream` with the bytes it
was given, the caller decrypts the frame and feeds the plaintext (one plain
stream message) to a new :class:`StreamReader`.
"""

from __future__ import annotations

from typing import Any

import msgpack

from consul_tw.gossip.gomsgpack import WireError, boolean, pack_struct, struct_fields, uint
from consul_tw.gossip.memberlist.codec import (
    compress_message,
    decode_body,
    decode_node_state,
    encode_message,
    encode_node_state,
    unpack_compressed,
)
from consul_tw.gossip.memberlist.messages import (
    Ack,
    Err,
    Message,
    MessageType,
    Ping,
    PushNodeState,
    PushPull,
    User,
)

__all__ = ["MAX_STREAM_SIZE", "EncryptedStream", "StreamReader", "encode_stream"]

#: memberlist refuses encrypted stream payloads over 20 MiB; we bound plain
#: ones (and what a compressed one expands to) the same way.
MAX_STREAM_SIZE = 20 * 1024 * 1024
#: Largest map or array msgpack may preallocate for one header: real ones
#: have at most 7 keys, and only Serf's user state (read as bytes) is bigger.
_MAX_CONTAINER = 4096

_STREAM_TYPES = frozenset(
    {MessageType.PING, MessageType.ACK, MessageType.PUSH_PULL, MessageType.USER, MessageType.ERR}
)
_PENDING = object()


class EncryptedStream(WireError):
    """The stream starts with the encrypt type (10): :mod:`.keyring` must open it.

    ``data`` holds every byte fed so far (the type byte first); the caller
    passes them and the rest of the connection to the keyring's framer.  It
    is a :class:`WireError`, so a node without encryption simply drops the
    connection.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__("encrypted stream")
        self.data = data


def encode_stream(msg: Message, *, compress: bool = True) -> bytes:
    """``msg`` as memberlist writes it on a stream.

    serf compresses every stream message unconditionally (even when that
    makes it bigger), hence the default.  Only push/pull, ping, ack, err and
    user messages travel on streams; anything else raises ValueError.
    """
    if isinstance(msg, PushPull):
        body = bytes([MessageType.PUSH_PULL]) + pack_struct(
            {"Join": msg.join, "Nodes": len(msg.nodes), "UserStateLen": len(msg.user_state)}
        )
        body += b"".join(encode_node_state(node) for node in msg.nodes) + msg.user_state
    elif isinstance(msg, User):
        body = bytes([MessageType.USER]) + pack_struct({"UserMsgLen": len(msg.payload)})
        body += msg.payload
    elif isinstance(msg, Ping | Ack | Err):
        body = encode_message(msg)
    else:
        raise ValueError(f"{type(msg).__name__} is not sent on streams")
    return compress_message(body) if compress else body


class _Parser:
    """One stream message, parsed as far as the bytes fed so far allow.

    msgpack's ``Unpacker`` keeps its place inside a half-received value, so
    every byte is parsed once however the stream is chunked.
    """

    def __init__(self, max_size: int, *, inner: bool = False) -> None:
        self._inner = inner
        self._max_size = max_size
        self._reader = msgpack.Unpacker(
            raw=True,
            strict_map_key=False,
            max_buffer_size=max_size,
            max_str_len=max_size,
            max_bin_len=max_size,
            max_ext_len=max_size,
            max_array_len=_MAX_CONTAINER,
            max_map_len=_MAX_CONTAINER,
        )
        self.kind: int | None = None
        self.compressed = False
        self._header: dict[str, Any] | None = None
        self._node_count = 0
        self._nodes: list[PushNodeState] = []
        self._tail = bytearray()
        self._tail_len = 0

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)

    def consumed(self) -> int:
        return self._reader.tell()

    def _value(self) -> Any:
        try:
            return self._reader.unpack()
        except msgpack.OutOfData:
            return _PENDING
        except Exception as e:  # msgpack raises a zoo of types for junk
            raise WireError(f"malformed msgpack: {e}") from None

    def _length(self, value: Any, field: str) -> int:
        length = uint(value, field, 63)
        if length > self._max_size:
            raise WireError(f"{field} {length} is over the {self._max_size}-byte stream limit")
        return length

    def _read_tail(self) -> bool:
        """Collect the raw bytes after the headers; True once all are in."""
        missing = self._tail_len - len(self._tail)
        if missing:
            self._tail += self._reader.read_bytes(missing)
        return len(self._tail) == self._tail_len

    def step(self) -> Message | None:
        """The message if it is complete now, else None (feed more)."""
        if self.kind is None:
            first = self._reader.read_bytes(1)
            if not first:
                return None
            self.kind = first[0]
            if self.kind == MessageType.COMPRESS and not self._inner:
                self.compressed = True
            elif self.kind == MessageType.ENCRYPT and not self._inner:
                raise EncryptedStream(b"")  # the caller fills in the bytes
            elif self.kind not in _STREAM_TYPES:
                raise WireError(f"message type {self.kind} is not allowed on a stream")
        if self.kind == MessageType.COMPRESS:
            return self._step_compressed()
        if self.kind == MessageType.PUSH_PULL:
            return self._step_push_pull()
        if self.kind == MessageType.USER:
            return self._step_user()
        value = self._value()
        return None if value is _PENDING else decode_body(self.kind, value)

    def _step_compressed(self) -> Message | None:
        value = self._value()
        if value is _PENDING:
            return None
        inner = _Parser(self._max_size, inner=True)
        inner.feed(unpack_compressed(value, max_output=self._max_size))
        msg = inner.step()
        if msg is None:
            raise WireError("compressed stream message is truncated")
        return msg

    def _step_push_pull(self) -> Message | None:
        if self._header is None:
            value = self._value()
            if value is _PENDING:
                return None
            self._header = struct_fields(value)
            self._node_count = self._length(self._header.get("Nodes"), "Nodes")
            self._tail_len = self._length(self._header.get("UserStateLen"), "UserStateLen")
        while len(self._nodes) < self._node_count:
            value = self._value()
            if value is _PENDING:
                return None
            self._nodes.append(decode_node_state(value))
        if not self._read_tail():
            return None
        return PushPull(
            join=boolean(self._header.get("Join"), "Join"),
            # mypy reads attrs' converter=tuple as Iterable[_T_co]; the value is right.
            nodes=tuple(self._nodes),  # type: ignore[arg-type]
            user_state=bytes(self._tail),
        )

    def _step_user(self) -> Message | None:
        if self._header is None:
            value = self._value()
            if value is _PENDING:
                return None
            self._header = struct_fields(value)
            self._tail_len = self._length(self._header.get("UserMsgLen"), "UserMsgLen")
        if not self._read_tail():
            return None
        return User(payload=bytes(self._tail))


class StreamReader:
    """Reads the one message a stream carries, fed in chunks as they arrive.

    :meth:`feed` returns None until the message is complete, then the
    message; :attr:`compressed` tells whether it came wrapped in a
    ``compress`` message, and :attr:`unused` holds bytes that followed it
    in the last chunk (memberlist sends nothing after a message).  Junk, a
    type not allowed on streams, or more than ``max_size`` bytes raise
    :class:`WireError`; type 10 raises :class:`EncryptedStream`.  A reader
    that raised, or that already returned its message, refuses more input.
    """

    def __init__(self, max_size: int = MAX_STREAM_SIZE) -> None:
        self._max_size = max_size
        self._parser = _Parser(max_size)
        self._size = 0
        self._state = "reading"  # then "done" or "failed"
        self.compressed = False
        self.unused = b""

    def feed(self, data: bytes) -> Message | None:
        """Add ``data``; the message once it is complete, else None."""
        if self._state != "reading":
            raise WireError(f"stream reader is {self._state}; no more input expected")
        if not data:
            return None
        if self._size + len(data) > self._max_size:
            self._state = "failed"
            raise WireError(f"stream message larger than {self._max_size} bytes")
        self._size += len(data)
        try:
            self._parser.feed(bytes(data))
            msg = self._parser.step()
        except EncryptedStream:
            self._state = "failed"
            raise EncryptedStream(bytes(data)) from None
        except WireError:
            self._state = "failed"
            raise
        if msg is None:
            return None
        self._state = "done"
        self.compressed = self._parser.compressed
        extra = self._size - self._parser.consumed()
        self.unused = bytes(data[len(data) - extra :]) if extra else b""
        return msg
