# -*- test-case-name: tests.unit.gossip.test_memberlist_codec -*-
"""
msgpack exactly as go-msgpack 0.5.5 (memberlist's and Serf's codec) writes it.

Go structs go out as maps keyed by field name in sorted byte order; strings
and ``[]byte`` fields alike use the raw-string family (fixstr, str16,
str32, never str8 or bin), which is msgpack-python's ``use_bin_type=False``.
Reading, every raw string comes back as ``bytes`` (``raw=True``), because
meta, keys and payloads are not UTF-8; names are decoded field by field
with :func:`text`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack


class WireError(ValueError):
    """Bytes that are not a well-formed gossip message; the caller drops them."""


def pack_struct(fields: Mapping[str, Any]) -> bytes:
    """A Go struct: a map of its fields, keys sorted, ``None`` values kept as nil."""
    return msgpack.packb({k: fields[k] for k in sorted(fields)}, use_bin_type=False)


def pack(value: Any) -> bytes:
    """Any other value (maps are written in the order given)."""
    return msgpack.packb(value, use_bin_type=False)


def unpacker(data: bytes = b"") -> msgpack.Unpacker:
    """An incremental reader, for streams that carry several values back to back."""
    reader = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=32 * 1024 * 1024)
    if data:
        reader.feed(data)
    return reader


def unpack_struct(data: bytes) -> dict[str, Any]:
    """One Go struct from exactly ``data``; keys become text, values stay raw."""
    try:
        value = msgpack.unpackb(data, raw=True, strict_map_key=False)
    except Exception as e:  # msgpack raises a zoo of types for junk
        raise WireError(f"malformed msgpack: {e}") from None
    return struct_fields(value)


def struct_fields(value: Any) -> dict[str, Any]:
    """A decoded map as a Go struct's fields (keys as text)."""
    if not isinstance(value, dict):
        raise WireError(f"expected a map, got {type(value).__name__}")
    try:
        return {
            key.decode("utf-8") if isinstance(key, bytes) else str(key): v
            for key, v in value.items()
        }
    except UnicodeDecodeError:
        raise WireError("map key is not text") from None


def text(value: Any, field: str) -> str:
    """A Go ``string`` field (accepts raw bytes or str)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(f"{field} is not UTF-8") from None
    if isinstance(value, str):
        return value
    raise WireError(f"{field} must be a string")


def raw(value: Any, field: str) -> bytes:
    """A Go ``[]byte`` field (raw string, bin, or nil)."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise WireError(f"{field} must be bytes")


def uint(value: Any, field: str, bits: int = 64) -> int:
    """An unsigned Go integer of ``bits`` width (nil reads as 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise WireError(f"{field} must be a uint{bits}")
    return value


def boolean(value: Any, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise WireError(f"{field} must be a bool")
    return value
