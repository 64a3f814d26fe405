"""
The server-RPC wire format: frames, their limits, the RPC message shapes,
and a fuzz check that junk only ever raises FrameError.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.rpc.framing import (
    MAX_FRAME_SIZE,
    FrameDecoder,
    FrameError,
    Request,
    Response,
    decode_body,
    decode_frames,
    encode_frame,
    request_from_wire,
    response_from_wire,
)

FAST = settings(max_examples=300, deadline=None)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text() | st.integers(0, 10), children, max_size=4)
    ),
    max_leaves=20,
)


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


class FrameTests(SynchronousTestCase):
    def test_layout(self) -> None:
        """A 4-byte big-endian length, then one msgpack value (str as str, bytes as bin)."""
        frame = encode_frame({"a": b"\x00", "b": "é"})
        self.assertEqual(frame[:4], struct.pack(">I", len(frame) - 4))
        self.assertEqual(frame[4:], b"\x82\xa1a\xc4\x01\x00\xa1b\xa2\xc3\xa9")

    def test_round_trip_several_frames(self) -> None:
        items: list[Any] = [None, 0, -1, 2**64 - 1, 1.5, "text", b"bytes", [1, [2]], {1: "x"}]
        data = b"".join(encode_frame(v) for v in items)
        self.assertEqual(decode_frames(data), items)

    def test_byte_at_a_time(self) -> None:
        data = encode_frame({"id": 1}) + encode_frame("two")
        decoder = FrameDecoder()
        seen: list[Any] = []
        for i in range(len(data)):
            decoder.feed(data[i : i + 1])
            seen.extend(decoder.frames())
        self.assertEqual(seen, [{"id": 1}, "two"])
        self.assertEqual(decoder.buffered, 0)

    def test_partial_frame_is_held_back(self) -> None:
        data = encode_frame("abc")
        decoder = FrameDecoder()
        decoder.feed(data[:-1])
        self.assertEqual(list(decoder.frames()), [])
        self.assertEqual(decoder.buffered, len(data) - 1)
        decoder.feed(data[-1:])
        self.assertEqual(list(decoder.frames()), ["abc"])

    def test_frames_before_junk_are_delivered(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(encode_frame(1) + raw_frame(b"\xc1") + encode_frame(2))
        frames = decoder.frames()
        self.assertEqual(next(frames), 1)
        with self.assertRaises(FrameError):
            next(frames)

    def test_failed_decoder_stays_failed(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(raw_frame(b"\xc1"))
        self.assertRaises(FrameError, list, decoder.frames())
        decoder.feed(encode_frame(1))
        self.assertRaises(FrameError, list, decoder.frames())

    def test_oversize_length_refused_before_the_body(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(struct.pack(">I", MAX_FRAME_SIZE + 1))
        with self.assertRaises(FrameError) as caught:
            list(decoder.frames())
        self.assertEqual(
            str(caught.exception), f"frame too large: {MAX_FRAME_SIZE + 1} bytes (limit 8388608)"
        )

    def test_largest_frame_accepted(self) -> None:
        body = msgpack.packb(b"x" * (MAX_FRAME_SIZE - 5))
        self.assertEqual(len(body), MAX_FRAME_SIZE)
        self.assertEqual(decode_frames(raw_frame(body)), [b"x" * (MAX_FRAME_SIZE - 5)])

    def test_encode_refuses_oversize(self) -> None:
        with self.assertRaises(FrameError) as caught:
            encode_frame(b"x" * MAX_FRAME_SIZE)
        self.assertIn("frame too large", str(caught.exception))

    def test_encode_refuses_unencodable(self) -> None:
        with self.assertRaises(FrameError) as caught:
            encode_frame({"x": object()})
        self.assertTrue(str(caught.exception).startswith("can't encode: "))

    def test_malformed_bodies(self) -> None:
        cases = {
            b"": "empty frame",
            b"\xc1": "malformed msgpack: FormatError",
            b"\x92\x01": "malformed msgpack: Unpack failed: incomplete input",
            b"\x01\x02": "malformed msgpack: unpack(b) received extra data.",
            b"\xa2\xff\xfe": "malformed msgpack: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
            b"\xd4\x05\x00": "malformed msgpack: extension type 5 not allowed",
            b"\x81\x91\x01\x02": "malformed msgpack: unhashable type: 'list'",
            b"\x91" * 5000 + b"\x01": "malformed msgpack: StackError",
        }
        for body, text in cases.items():
            with self.assertRaises(FrameError, msg=repr(body)) as caught:
                decode_frames(raw_frame(body))
            self.assertEqual(str(caught.exception), text)

    def test_truncated_stream(self) -> None:
        with self.assertRaises(FrameError) as caught:
            decode_frames(encode_frame("abc")[:-1])
        self.assertEqual(str(caught.exception), "truncated frame: 7 bytes left over")

    def test_messages_are_one_short_line(self) -> None:
        error = FrameError("first\nsecond\tthird  " + "x" * 500)
        self.assertNotIn("\n", str(error))
        self.assertTrue(str(error).startswith("first second third x"))
        self.assertEqual(len(str(error)), 200)


class MessageTests(SynchronousTestCase):
    def test_request(self) -> None:
        wire = Request(7, "Catalog.Register", {"Node": "a"}).to_wire()
        self.assertEqual(wire, {"id": 7, "method": "Catalog.Register", "args": {"Node": "a"}})
        self.assertEqual(request_from_wire(wire), Request(7, "Catalog.Register", {"Node": "a"}))
        self.assertEqual(request_from_wire({"id": 1, "method": "M", "x": 1}), Request(1, "M"))

    def test_response(self) -> None:
        self.assertEqual(Response(3, result=[1]).to_wire(), {"id": 3, "result": [1], "error": None})
        self.assertEqual(response_from_wire({"id": 3, "result": [1]}), Response(3, [1]))
        self.assertEqual(
            response_from_wire({"id": 3, "result": 1, "error": "boom"}), Response(3, None, "boom")
        )

    def test_bad_requests(self) -> None:
        cases: list[tuple[Any, str]] = [
            ([1], "request must be a map, got list"),
            ({"method": "M"}, "request id must be an unsigned 64-bit integer"),
            ({"id": -1, "method": "M"}, "request id must be an unsigned 64-bit integer"),
            ({"id": True, "method": "M"}, "request id must be an unsigned 64-bit integer"),
            ({"id": "1", "method": "M"}, "request id must be an unsigned 64-bit integer"),
            ({"id": 1}, "request method must be a non-empty string"),
            ({"id": 1, "method": b"M"}, "request method must be a non-empty string"),
            ({"id": 1, "method": ""}, "request method must be a non-empty string"),
        ]
        for value, text in cases:
            with self.assertRaises(FrameError, msg=repr(value)) as caught:
                request_from_wire(value)
            self.assertEqual(str(caught.exception), text)

    def test_bad_responses(self) -> None:
        self.assertRaises(FrameError, response_from_wire, None)
        self.assertRaises(FrameError, response_from_wire, {"id": 2**64})
        self.assertRaises(FrameError, response_from_wire, {"id": 1, "error": 5})


class FuzzTests(SynchronousTestCase):
    @FAST
    @given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=20))
    def test_random_bytes_only_raise_frame_error(self, data: bytes, cuts: list[int]) -> None:
        decoder = FrameDecoder(max_size=256)
        position = 0
        try:
            for size in [*cuts, len(data)]:
                decoder.feed(data[position : position + size])
                position += size
                for value in decoder.frames():
                    request_from_wire(value)
        except FrameError as e:
            self.assertNotIn("\n", str(e))

    @FAST
    @given(st.lists(st.binary(max_size=40), max_size=6), st.binary(max_size=20))
    def test_framed_random_bodies_only_raise_frame_error(
        self, bodies: list[bytes], tail: bytes
    ) -> None:
        decoder = FrameDecoder()
        decoder.feed(b"".join(raw_frame(b) for b in bodies) + tail)
        try:
            for value in decoder.frames():
                request_from_wire(value)
        except FrameError as e:
            self.assertNotIn("\n", str(e))

    @FAST
    @given(st.binary(max_size=300))
    def test_random_bodies_only_raise_frame_error(self, body: bytes) -> None:
        try:
            response_from_wire(decode_body(body))
        except FrameError as e:
            self.assertNotIn("\n", str(e))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(values, max_size=5), st.integers(1, 64))
    def test_round_trip_in_any_chunking(self, items: list[Any], chunk: int) -> None:
        data = b"".join(encode_frame(v) for v in items)
        decoder = FrameDecoder()
        seen: list[Any] = []
        for i in range(0, len(data), chunk):
            decoder.feed(data[i : i + chunk])
            seen.extend(decoder.frames())
        self.assertEqual(seen, items)
