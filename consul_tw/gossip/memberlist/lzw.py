# -*- test-case-name: tests.unit.gossip.test_lzw -*-
"""
Go's ``compress/lzw`` in LSB order with 8-bit literals, the only compression
memberlist knows (``compress{Algo: 0, Buf}``).

Python has no compatible codec: GIF and Unix ``compress`` use the same
algorithm inside other containers and bit orders.  Serf compresses every
TCP stream message unconditionally, so without this a node cannot even
read a join reply.  The writer follows Go 1.19's exactly (a clear code
first, a clear code when the table fills, the end code, the last partial
byte flushed), because the wire tests compare our output with serf's byte
for byte; the reader accepts Go's older writers too (no leading clear).

The reader is fed untrusted bytes: every way the code stream can be wrong
raises :class:`WireError`, and the output is bounded, since a few hundred
bytes of codes can expand to megabytes.
"""

from __future__ import annotations

from consul_tw.gossip.gomsgpack import WireError

__all__ = ["DEFAULT_MAX_OUTPUT", "compress", "decompress"]

#: Default bound on what :func:`decompress` produces (bytes).
DEFAULT_MAX_OUTPUT = 32 * 1024 * 1024

_LIT_WIDTH = 8
_CLEAR = 1 << _LIT_WIDTH  # 256
_EOF = _CLEAR + 1  # 257
_MAX_WIDTH = 12
_MAX_CODE = (1 << _MAX_WIDTH) - 1  # 4095: the writer clears when its counter gets here


class _BitWriter:
    """Variable-width codes packed least-significant bit first."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.bits = 0
        self.n_bits = 0

    def write(self, code: int, width: int) -> None:
        self.bits |= code << self.n_bits
        self.n_bits += width
        while self.n_bits >= 8:
            self.out.append(self.bits & 0xFF)
            self.bits >>= 8
            self.n_bits -= 8

    def flush(self) -> bytes:
        if self.n_bits > 0:
            self.out.append(self.bits & 0xFF)
        return bytes(self.out)


def compress(data: bytes) -> bytes:
    """``data`` compressed exactly as Go's ``lzw.NewWriter(w, lzw.LSB, 8)`` + Close would.

    Mirrors the Go writer's counter (``hi``): it names the next table entry
    and moves after every code written; the width grows when it reaches the
    next power of two, and at 4095 the writer emits a clear code (at the
    current width) and starts over with an empty table.  Go's hash table is
    an exact map, so a dict gives the same codes.
    """
    writer = _BitWriter()
    width = _LIT_WIDTH + 1
    hi = _EOF
    overflow = 1 << width
    table: dict[int, int] = {}

    def inc_hi() -> bool:
        """Advance the counter; True when the table was just reset."""
        nonlocal width, hi, overflow
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            writer.write(_CLEAR, width)
            width = _LIT_WIDTH + 1
            hi = _EOF
            overflow = 1 << width
            table.clear()
            return True
        return False

    writer.write(_CLEAR, width)
    if not data:
        writer.write(_EOF, width)
        return writer.flush()
    code = data[0]
    for literal in data[1:]:
        key = (code << 8) | literal
        hit = table.get(key)
        if hit is not None:
            code = hit
            continue
        writer.write(code, width)
        code = literal
        if not inc_hi():
            table[key] = hi
    writer.write(code, width)
    inc_hi()
    writer.write(_EOF, width)
    return writer.flush()


def decompress(data: bytes, max_output: int = DEFAULT_MAX_OUTPUT) -> bytes:
    """The bytes ``data`` decodes to, as Go's ``lzw.NewReader(r, lzw.LSB, 8)`` reads them.

    Raises :class:`WireError` on an invalid code, a stream that ends before
    its end code (Go reports ``io.ErrUnexpectedEOF``, memberlist then drops
    the message) or output beyond ``max_output`` bytes.  Bytes after the end
    code are ignored, as Go ignores them.
    """
    # table[c] is what code c expands to; entries 0..255 are the literals.
    table: list[bytes] = [bytes([i]) for i in range(_CLEAR)] + [b""] * ((1 << _MAX_WIDTH) - _CLEAR)
    out = bytearray()
    width = _LIT_WIDTH + 1
    hi = _EOF
    overflow = 1 << width
    last: bytes | None = None  # the previous code's expansion; None right after a clear
    full = False  # every code up to 4095 is defined; no more entries until a clear
    bits = 0
    n_bits = 0
    pos = 0
    size = len(data)
    while True:
        while n_bits < width:
            if pos >= size:
                raise WireError("lzw: stream ends before its end code")
            bits |= data[pos] << n_bits
            pos += 1
            n_bits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        n_bits -= width

        if code < _CLEAR:
            entry = table[code]
        elif code == _CLEAR:
            width = _LIT_WIDTH + 1
            hi = _EOF
            overflow = 1 << width
            last = None
            full = False
            continue
        elif code == _EOF:
            return bytes(out)
        elif code < hi or (full and code == hi):
            entry = table[code]
        elif code == hi and last is not None:
            # The KwKwK case: the entry being defined by this very code.
            entry = last + last[:1]
        else:
            raise WireError(f"lzw: invalid code {code}")

        if len(out) + len(entry) > max_output:
            raise WireError(f"lzw: output exceeds {max_output} bytes")
        out += entry
        if last is not None:
            table[hi] = last + entry[:1]
        last = entry
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                # Table full: stop adding entries until the next clear (as Go
                # does); entry 4095 was just defined and stays usable.
                last = None
                hi -= 1
                full = True
            else:
                width += 1
                overflow <<= 1
