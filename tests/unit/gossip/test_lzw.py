"""
Go-compatible LZW (compress/lzw, LSB, 8-bit literals).

The expected bytes come from three independent sources: the reference
document's vectors, the 13 compressed buffers serf 0.9.4 put on the wire in
the plain-pool capture, and Go 1.19's own ``compress/lzw`` (the toolchain
serf 0.9.4 was built with), run once to record the digests below for inputs
long enough to fill and reset the code table, and to read the hand-made code
streams of the edge-case table.
"""

from __future__ import annotations

import functools
import hashlib

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.lzw import DEFAULT_MAX_OUTPUT, compress, decompress
from tests.pcap import PLAIN_POOL, read

FUZZ = settings(deadline=None, max_examples=200)

#: gossip-wire.md section 3.5.
DOC_VECTORS = [
    (b"", "00 03 02"),
    (b"a", "00 c3 04 04"),
    (b"abababab", "00 c3 88 11 48 50 4c 40"),
    (b"\x00" * 10, "00 01 08 1c 48 30 20"),
]

#: (length, mask, len(Go output), sha256(Go output)) for ``lcg_bytes(length, mask)``
#: compressed by Go 1.19's ``lzw.NewWriter(w, lzw.LSB, 8)``.  The random-looking
#: ones reset the table many times; the all-zero one grows codes to 12 bits.
GO_WRITER = [
    (5000, 0xFF, 6731, "9261b05ae311116bef32f2af45f01acd82dc9d256548a49680906b30d63ac423"),
    (20000, 0xFF, 27365, "51e35f374173538ac788fb7d8d8b75e54d330cfec8056fc60643781c66310ed2"),
    (100000, 0x03, 29870, "574e70d33372520d69cf41d6d21905d6308e6c4ead8016d4e30cf1822a7d6fb4"),
    (300000, 0x0F, 187877, "eb97d81e13bce580f1afb957940ea26a9d3864c12e9596839dd19a5651c8f4a2"),
    (1 << 20, 0x00, 1866, "142dea43e66e6da0eae56fc06c0aa26831b3256bd6f62263027c459100c56311"),
    (200000, 0x7F, 254074, "b64263a59cf1b60eb51ce851a5cf4cb8bb22da0d9dd30e108d111a02c0dfb054"),
]


def lcg_bytes(length: int, mask: int, seed: int = 42) -> bytes:
    """Deterministic test input, generated the same way in the Go program."""
    out = bytearray(length)
    x = seed
    for i in range(length):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = (x >> 16) & mask
    return bytes(out)


def pack_codes(codes: list[int]) -> bytes:
    """Codes packed LSB-first at the widths a Go reader expects (a test-side writer).

    It follows the reader's counter rather than Go's writer, so it can write
    streams Go's writer never makes: no leading clear, a full table.
    """
    bits = n_bits = 0
    out = bytearray()
    width, hi = 9, 257
    for code in codes:
        bits |= code << n_bits
        n_bits += width
        while n_bits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            n_bits -= 8
        if code == 256:
            width, hi = 9, 257
            continue
        if code == 257:
            break
        hi += 1
        if hi >= 1 << width:
            if width == 12:
                hi -= 1
            else:
                width += 1
    if n_bits:
        out.append(bits & 0xFF)
    return bytes(out)


#: Hand-made code streams and what Go 1.19's lzw.NewReader made of them
#: (None: Go returned an error).
GO_READER = [
    ("no leading clear (older Go writers)", [97, 98, 258, 260, 257], b"abababa"),
    ("full table keeps decoding", [97] * 4000 + [4095, 4094, 300, 97, 257], b"a" * 4007),
    ("code 4095 defined as the table fills", [97] * 3838 + [4095, 257], b"a" * 3840),
    ("code beyond the next free one", [97] * 3837 + [4095, 257], None),
    ("KwKwK right after a clear", [256, 258, 257], None),
    ("undefined code", [256, 97, 259, 257], None),
    ("KwKwK", [256, 97, 258, 257], b"aaa"),
    ("two clears", [256, 256, 97, 257], b"a"),
    ("no end code", [256, 97], None),
    ("bytes after the end code", [257], b""),
]


@functools.cache
def captured_buffers() -> list[bytes]:
    """Every LZW ``Buf`` serf sent in the plain-pool capture (UDP and TCP)."""
    datagrams, streams = read(PLAIN_POOL)
    messages = [d.payload for d in datagrams if d.payload[0] == 9] + [s.data for s in streams]
    return [msgpack.unpackb(m[1:], raw=True)[b"Buf"] for m in messages]


def bomb(cycles: int) -> bytes:
    """Codes whose expansions grow by one byte each: ~7.4 MB out per ~5.5 KB in."""
    return pack_codes(([256, 0] + list(range(258, 4095))) * cycles + [257])


class VectorTests(SynchronousTestCase):
    def test_document_vectors(self) -> None:
        for data, hex_bytes in DOC_VECTORS:
            self.assertEqual(compress(data), bytes.fromhex(hex_bytes), data)
            self.assertEqual(decompress(bytes.fromhex(hex_bytes)), data)

    def test_serf_buffers(self) -> None:
        """Our writer reproduces all 13 buffers serf compressed, byte for byte."""
        buffers = captured_buffers()
        self.assertEqual(len(buffers), 13)
        for buf in buffers:
            self.assertEqual(compress(decompress(buf)), buf)

    def test_go_writer(self) -> None:
        for length, mask, size, digest in GO_WRITER:
            data = lcg_bytes(length, mask)
            out = compress(data)
            self.assertEqual((len(out), hashlib.sha256(out).hexdigest()), (size, digest), mask)
            self.assertEqual(decompress(out), data)

    def test_go_reader(self) -> None:
        for name, codes, expected in GO_READER:
            data = pack_codes(codes) + (b"garbage" if codes == [257] else b"")
            if expected is None:
                self.assertRaises(WireError, decompress, data)
            else:
                self.assertEqual(decompress(data), expected, name)

    def test_truncated(self) -> None:
        self.assertRaises(WireError, decompress, b"")
        good = compress(b"hello, world")
        for end in range(len(good)):
            self.assertRaises(WireError, decompress, good[:end])


class BoundTests(SynchronousTestCase):
    def test_bomb_is_bounded(self) -> None:
        one = bomb(1)
        self.assertLess(len(one), 6000)
        expanded = decompress(one, max_output=8 * 1024 * 1024)
        self.assertEqual(len(expanded), sum(range(1, 3839)))
        self.assertRaises(WireError, decompress, one, max_output=len(expanded) - 1)
        self.assertRaises(WireError, decompress, one, max_output=1024 * 1024)

    def test_default_bound(self) -> None:
        """Ten cycles would expand to ~74 MB; the default stops at 32 MiB."""
        self.assertEqual(DEFAULT_MAX_OUTPUT, 32 * 1024 * 1024)
        self.assertRaises(WireError, decompress, bomb(10))

    def test_exact_bound(self) -> None:
        data = b"x" * 1000
        self.assertEqual(decompress(compress(data), max_output=1000), data)
        self.assertRaises(WireError, decompress, compress(data), max_output=999)


GO_MADE = compress(lcg_bytes(20000, 0x0F))


def _repeated(chunk: bytes, times: int) -> bytes:
    return chunk * times


class PropertyTests(SynchronousTestCase):
    @FUZZ
    @given(st.binary(max_size=3000))
    def test_round_trip(self, data: bytes) -> None:
        self.assertEqual(decompress(compress(data)), data)

    @FUZZ
    @given(st.builds(_repeated, st.binary(min_size=1, max_size=40), st.integers(1, 3000)))
    def test_round_trip_repetitive(self, data: bytes) -> None:
        """Long expansions, 12-bit codes and table resets."""
        self.assertEqual(decompress(compress(data)), data)

    @FUZZ
    @given(st.binary(max_size=500), st.integers(0, 5000))
    def test_junk_raises_wire_error_only(self, data: bytes, bound: int) -> None:
        try:
            out = decompress(data, max_output=bound)
        except WireError:
            return
        self.assertLessEqual(len(out), bound)

    @FUZZ
    @given(st.data())
    def test_mutated_streams(self, data: st.DataObject) -> None:
        buffers = [*captured_buffers(), GO_MADE]
        buf = bytearray(data.draw(st.sampled_from(buffers)))
        for _ in range(data.draw(st.integers(1, 4))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        buf = buf[: data.draw(st.integers(0, len(buf)))]
        try:
            decompress(bytes(buf), max_output=100_000)
        except WireError:
            pass
