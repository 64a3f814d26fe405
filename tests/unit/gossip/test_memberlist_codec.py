"""
The memberlist wire codec: single messages, UDP datagrams, TCP streams.

The strongest evidence is the serf 0.9.4 capture: every datagram and every
stream direction decodes, and re-encoding what was decoded gives back the
captured bytes exactly, compression and CRCs included.  Hypothesis then
covers what the capture does not hold (nack, indirect ping, err, stream
user messages, IPv6 addresses) with round trips, and feeds junk and mutated
captures to every decoder to show that nothing but WireError escapes.
"""

from __future__ import annotations

import base64
import functools
import random
import struct
import zlib
from collections.abc import Callable

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.gomsgpack import WireError, pack_struct
from consul_tw.gossip.memberlist import lzw
from consul_tw.gossip.memberlist.codec import (
    addr_from_text,
    addr_to_text,
    compress_message,
    decode_message,
    encode_message,
)
from consul_tw.gossip.memberlist.messages import (
    Ack,
    Alive,
    Dead,
    Err,
    IndirectPing,
    Message,
    MessageType,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
)
from consul_tw.gossip.memberlist.packet import (
    DecodedPacket,
    compound,
    decode_packet,
    encode_packet,
)
from consul_tw.gossip.memberlist.stream import (
    EncryptedStream,
    StreamReader,
    encode_stream,
)
from tests.pcap import ENCRYPTED_POOL, ENCRYPTED_POOL_KEY, PLAIN_POOL, Stream, read

FUZZ = settings(deadline=None, max_examples=200)
LOCALHOST = bytes([127, 0, 0, 1])

#: gossip-wire.md 4.1: a real ping from s2 to s1.
PING_61 = bytes.fromhex(
    "0085a44e6f6465a27331a55365714e6f01aa536f7572636541646472a47f000001"
    "aa536f757263654e6f6465a27332aa536f75726365506f7274cd461b"
)
#: gossip-wire.md 4.4: a real alive from s1 (tags role=web, dc=dc1).
ALIVE_76 = bytes.fromhex(
    "0486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461b2ff"
    "82a4726f6c65a3776562a26463a3646331a44e6f6465a27331a4506f7274cd46"
    "1aa356736ea6010502020505"
)


@functools.cache
def capture() -> tuple[list[bytes], list[Stream]]:
    datagrams, streams = read(PLAIN_POOL)
    return [d.payload for d in datagrams], streams


@functools.cache
def encrypted_capture() -> tuple[list[bytes], list[bytes]]:
    """The encrypted pool's datagrams and streams, opened (gossip-wire.md 6.2, 6.3).

    Decrypted here with AES-GCM directly rather than through keyring.py,
    so these tests check the codec alone.  Streams that do not open are the
    capture's plaintext join (kept as it is) and its wrong-key join (left out).
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(base64.b64decode(ENCRYPTED_POOL_KEY))
    datagrams, streams = read(ENCRYPTED_POOL)
    packets = [aead.decrypt(d.payload[1:13], d.payload[13:], None) for d in datagrams]
    plain = []
    for stream in streams:
        data = stream.data
        if data[0] != 10:
            plain.append(data)
            continue
        try:
            plain.append(aead.decrypt(data[6:18], data[18:], data[:5]))
        except Exception:  # the join sealed with another key
            continue
    return packets, plain


def reencode(packet: DecodedPacket) -> bytes:
    return encode_packet(
        [encode_message(m) for m in packet.messages], crc=packet.crc, compress=packet.compressed
    )


def feed_in_chunks(data: bytes, rng: random.Random, reader: StreamReader) -> Message | None:
    """Feed ``data`` in random chunks of 1-16 bytes; what the last one returned.

    Feeding on after the message is complete raises, so a message that
    ends before the data does fails the round trips.
    """
    msg, start = None, 0
    while start < len(data):
        step = rng.randint(1, 16)
        msg = reader.feed(data[start : start + step])
        start += step
    return msg


def wire_errors_only(function: Callable[..., object], *args: object) -> object:
    """Call ``function``; WireError is an answer, any other exception fails the test."""
    try:
        return function(*args)
    except WireError:
        return None


class DocumentTests(SynchronousTestCase):
    def test_ping(self) -> None:
        ping = Ping(seq_no=1, node="s1", source_addr=LOCALHOST, source_port=17947, source_node="s2")
        self.assertEqual(len(PING_61), 61)
        self.assertEqual(decode_message(PING_61), ping)
        self.assertEqual(encode_message(ping), PING_61)

    def test_alive(self) -> None:
        meta = bytes.fromhex("ff82a4726f6c65a3776562a26463a3646331")
        alive = Alive(
            incarnation=1,
            node="s1",
            addr=LOCALHOST,
            port=17946,
            meta=meta,
            vsn=bytes([1, 5, 2, 2, 5, 5]),
        )
        self.assertEqual(len(ALIVE_76), 76)
        self.assertEqual(decode_message(ALIVE_76), alive)
        self.assertEqual(encode_message(alive), ALIVE_76)

    def test_crc_compound(self) -> None:
        """``0c 1e da 71 f5 | 07 02 00 4c 00 44 | <alive s1> <alive s2>``"""
        datagram = capture()[0][0]
        self.assertEqual(datagram[:11], bytes.fromhex("0c1eda71f5 0702004c0044"))
        packet = decode_packet(datagram)
        self.assertEqual([m.node for m in packet.messages], ["s1", "s2"])  # type: ignore[union-attr]
        self.assertEqual((packet.crc, packet.compressed, packet.compound), (True, False, True))
        self.assertEqual(encode_message(packet.messages[0]), ALIVE_76)
        self.assertEqual(encode_packet([ALIVE_76, datagram[87:]], crc=True), datagram)

    def test_join_request(self) -> None:
        """Section 5.2: s2's join, ``09 82 a4 "Algo" 00 a3 "Buf" da 00 cf <207 LZW bytes>``."""
        data = capture()[1][0].data
        self.assertEqual(data[:15], bytes.fromhex("0982a4416c676f00a3427566da00cf"))
        self.assertEqual(len(data), 15 + 207)
        plain = lzw.decompress(data[15:])
        self.assertTrue(plain.startswith(bytes.fromhex("0683a44a6f696ec3a54e6f64657301")))
        msg = StreamReader().feed(data)
        assert isinstance(msg, PushPull)
        self.assertTrue(msg.join)
        self.assertEqual([(n.name, n.meta[1:]) for n in msg.nodes], [("s2", b"\x81\xa4role\xa2db")])
        self.assertEqual(len(msg.user_state), 0x24A)
        self.assertEqual(encode_stream(msg, compress=False), plain)

    def test_err_reply(self) -> None:
        """Section 3.5: "a 54-byte err reply became 62" (the LZW buffer)."""
        err = Err(error="No installed keys could decrypt the message")
        plain = encode_stream(err, compress=False)
        self.assertEqual(len(plain), 54)
        self.assertEqual(len(lzw.compress(plain)), 62)
        self.assertEqual(StreamReader().feed(encode_stream(err)), err)


class CaptureTests(SynchronousTestCase):
    def test_every_datagram(self) -> None:
        datagrams, _ = capture()
        self.assertEqual(len(datagrams), 188)
        seen: set[str] = set()
        for datagram in datagrams:
            packet = decode_packet(datagram)
            self.assertEqual(packet.dropped, 0)
            seen.update(type(m).__name__ for m in packet.messages)
            seen.update(k for k in ("crc", "compressed", "compound") if getattr(packet, k))
            self.assertEqual(reencode(packet), datagram)
            # serf compresses every datagram it may and keeps the smaller form:
            parts = [encode_message(m) for m in packet.messages]
            self.assertEqual(encode_packet(parts, crc=packet.crc, compress=True), datagram)
        self.assertEqual(
            seen,
            {"Ping", "Ack", "Alive", "Suspect", "Dead", "User"} | {"crc", "compressed", "compound"},
        )

    def test_every_stream(self) -> None:
        _, streams = capture()
        self.assertEqual(len(streams), 10)
        rng = random.Random(1)
        joins = []
        for stream in streams:
            for _ in range(5):
                reader = StreamReader()
                msg = feed_in_chunks(stream.data, rng, reader)
                assert isinstance(msg, PushPull)
                self.assertTrue(reader.compressed)
                self.assertEqual(reader.unused, b"")
                self.assertEqual(encode_stream(msg), stream.data)
                self.assertEqual(msg.user_state[:1], b"\x02")  # Serf's push/pull message type
            joins.append(isinstance(msg, PushPull) and msg.join)
        self.assertEqual(joins.count(True), 4)

    def test_encrypted_pool(self) -> None:
        """The second capture: its datagrams, joins and serf's two err replies."""
        packets, streams = encrypted_capture()
        self.assertEqual(len(packets), 31)
        for datagram in packets:
            packet = decode_packet(datagram)
            self.assertEqual(reencode(packet), datagram)
        self.assertEqual(len(streams), 5)
        found = []
        for data in streams:
            reader = StreamReader()
            msg = feed_in_chunks(data, random.Random(2), reader)
            assert msg is not None
            self.assertEqual(encode_stream(msg, compress=reader.compressed), data)
            found.append(msg.error if isinstance(msg, Err) else type(msg).__name__)
        self.assertEqual(
            found,
            [
                "PushPull",
                "PushPull",
                "No installed keys could decrypt the message",
                "PushPull",
                "Encryption is configured but remote state is not encrypted",
            ],
        )


# -- strategies --------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
names = st.text(max_size=20)
addrs = st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16)
metas = st.binary(max_size=512)
vsns = st.binary(min_size=6, max_size=6)
sources = {
    "source_addr": st.none() | addrs,
    "source_port": st.none() | st.integers(1, 0xFFFF),
    "source_node": st.none() | st.text(min_size=1, max_size=20),
}
pings = st.builds(Ping, seq_no=u32, node=names, **sources)
indirect_pings = st.builds(
    IndirectPing, seq_no=u32, target=addrs, port=u16, node=names, nack=st.booleans(), **sources
)
acks = st.builds(Ack, seq_no=u32, payload=st.none() | st.binary(max_size=100))
nacks = st.builds(Nack, seq_no=u32)
suspects = st.builds(Suspect, incarnation=u32, node=names, from_node=names)
deads = st.builds(Dead, incarnation=u32, node=names, from_node=names)
alives = st.builds(Alive, incarnation=u32, node=names, addr=addrs, port=u16, meta=metas, vsn=vsns)
errs = st.builds(Err, error=st.text(max_size=100))
users = st.builds(User, payload=st.binary(max_size=300))
node_states = st.builds(
    PushNodeState,
    name=names,
    addr=addrs,
    port=u16,
    meta=metas,
    incarnation=u32,
    state=st.sampled_from(NodeState),
    vsn=vsns,
)
push_pulls = st.builds(
    PushPull,
    join=st.booleans(),
    nodes=st.lists(node_states, max_size=5),
    user_state=st.binary(max_size=2000),
)
packet_messages = pings | indirect_pings | acks | nacks | suspects | deads | alives | users
stream_messages = pings | acks | errs | users | push_pulls


class RoundTripTests(SynchronousTestCase):
    @FUZZ
    @given(packet_messages | errs)
    def test_message(self, msg: Message) -> None:
        self.assertEqual(decode_message(encode_message(msg)), msg)

    @FUZZ
    @given(st.lists(packet_messages, min_size=1, max_size=8), st.booleans(), st.booleans())
    def test_packet(self, msgs: list[Message], crc: bool, compress: bool) -> None:
        datagram = encode_packet([encode_message(m) for m in msgs], crc=crc, compress=compress)
        packet = decode_packet(datagram)
        self.assertEqual(packet.messages, tuple(msgs))
        self.assertEqual((packet.crc, packet.compound, packet.dropped), (crc, len(msgs) > 1, 0))
        self.assertEqual(reencode(packet), datagram)

    @FUZZ
    @given(stream_messages, st.booleans(), st.randoms(use_true_random=False))
    def test_stream(self, msg: Message, compress: bool, rng: random.Random) -> None:
        data = encode_stream(msg, compress=compress)
        reader = StreamReader()
        self.assertEqual(feed_in_chunks(data, rng, reader), msg)
        self.assertEqual(reader.compressed, compress)

    @FUZZ
    @given(
        # Parts are encoded single messages: never themselves compound (type 7).
        st.lists(
            st.binary(min_size=1, max_size=300).filter(lambda b: b[0] != MessageType.COMPOUND),
            min_size=1,
            max_size=300,
        ),
        st.integers(100, 1400),
    )
    def test_compound_split(self, parts: list[bytes], limit: int) -> None:
        packets = compound(parts, limit)
        unpacked: list[bytes] = []
        for packet in packets:
            if packet[0] == 7 and len(packet) <= limit:
                count = packet[1]
                lengths = struct.unpack(f"!{count}H", packet[2 : 2 + 2 * count])
                offset = 2 + 2 * count
                for length in lengths:
                    unpacked.append(packet[offset : offset + length])
                    offset += length
            else:
                self.assertTrue(len(packet) <= limit or packet in parts)
                unpacked.append(packet)
        self.assertEqual(unpacked, parts)


class ValidationTests(SynchronousTestCase):
    def alive_with(self, **fields: object) -> bytes:
        base = {
            "Addr": LOCALHOST,
            "Incarnation": 1,
            "Meta": b"",
            "Node": "n",
            "Port": 1,
            "Vsn": bytes(6),
        }
        return b"\x04" + pack_struct({**base, **fields})

    def test_addresses(self) -> None:
        self.assertEqual(decode_message(self.alive_with(Addr=bytes(16))).addr, bytes(16))  # type: ignore[union-attr]
        for bad in (b"", bytes(5), None):
            self.assertRaises(WireError, decode_message, self.alive_with(Addr=bad))
        mapped = bytes(10) + b"\xff\xff" + LOCALHOST
        self.assertEqual(addr_to_text(mapped), "127.0.0.1")
        self.assertEqual(addr_to_text(LOCALHOST), "127.0.0.1")
        self.assertEqual(addr_to_text(addr_from_text("2001:db8::1")), "2001:db8::1")
        self.assertEqual(addr_from_text("127.0.0.1"), LOCALHOST)
        self.assertRaises(ValueError, addr_to_text, bytes(5))

    def test_vsn(self) -> None:
        for bad in (bytes(5), bytes(7), [1, 5, 2, 2, 5], None):
            self.assertRaises(WireError, decode_message, self.alive_with(Vsn=bad))
        alive = decode_message(self.alive_with(Vsn=[1, 5, 2, 2, 5, 4]))
        assert isinstance(alive, Alive)
        self.assertEqual(alive.vsn, bytes([1, 5, 2, 2, 5, 4]))

    def test_go_decoder_leniency(self) -> None:
        """Keys in any order, unknown keys skipped, trailing bytes ignored, as Go does."""
        body = msgpack.packb({"Vsn": bytes(6), "Extra": [1, 2], "Addr": LOCALHOST, "Node": "n"})
        self.assertEqual(decode_message(b"\x04" + body + b"junk").node, "n")  # type: ignore[union-attr]

    def test_bad_fields(self) -> None:
        for junk in (
            self.alive_with(Incarnation=1 << 32),
            self.alive_with(Port=-1),
            self.alive_with(Node=b"\xff"),
            b"\x00" + msgpack.packb([1, 2]),
            b"\x02\x81",
            b"\x06\x80",
            b"\x0e\x80",
        ):
            self.assertRaises(WireError, decode_message, junk)

    def test_encode_refuses(self) -> None:
        alive = Alive(incarnation=1, node="n", addr=LOCALHOST, port=1, meta=bytes(513))
        self.assertRaises(ValueError, encode_message, alive)
        self.assertRaises(ValueError, encode_message, Nack(seq_no=1 << 32))
        self.assertRaises(ValueError, encode_stream, Nack(seq_no=1))
        self.assertRaises(ValueError, encode_packet, [])
        self.assertRaises(ValueError, encode_packet, [b"\x08"] * 256)


class PacketTests(SynchronousTestCase):
    def test_crc_mismatch(self) -> None:
        datagram = bytearray(capture()[0][0])
        datagram[-1] ^= 1
        self.assertRaises(WireError, decode_packet, bytes(datagram))

    def test_truncated_compound_keeps_the_rest(self) -> None:
        parts = [encode_message(Nack(seq_no=n)) for n in range(4)]
        datagram = encode_packet(parts)
        packet = decode_packet(datagram[:-1])
        self.assertEqual(packet.messages, (Nack(seq_no=0), Nack(seq_no=1), Nack(seq_no=2)))
        self.assertEqual(packet.dropped, 1)
        self.assertRaises(WireError, decode_packet, datagram[:5])  # lengths cut off

    def test_bad_parts_are_counted(self) -> None:
        parts = [b"\x0b\x81", encode_message(Nack(seq_no=7)), b"", b"\x06\x80", b"\x0c" + bytes(5)]
        self.assertEqual(
            decode_packet(encode_packet(parts)), DecodedPacket((Nack(seq_no=7),), 4, compound=True)
        )

    def test_nesting(self) -> None:
        inner = encode_packet([encode_message(Nack(seq_no=1)), b"\x08hi"])
        outer = encode_packet([compress_message(inner), encode_message(Ack(seq_no=2))], crc=True)
        packet = decode_packet(outer)
        self.assertEqual(packet.messages, (Nack(seq_no=1), User(payload=b"hi"), Ack(seq_no=2)))
        # Parts nested too deep are dropped (both at the first level past the
        # limit), however deep it goes (no RecursionError) ...
        deep = b"\x08x"
        for _ in range(2000):
            deep = encode_packet([deep, b"\x08y"])
        packet = decode_packet(deep)
        self.assertEqual((set(packet.messages), packet.dropped), ({User(payload=b"y")}, 2))
        # ... and so is a whole datagram that is nothing but nesting.
        for _ in range(10):
            deep = compress_message(deep)
        self.assertRaises(WireError, decode_packet, deep)

    def test_bomb(self) -> None:
        bomb = compress_message(b"\x08" + bytes(3_000_000))
        self.assertLess(len(bomb), 10_000)
        self.assertRaises(WireError, decode_packet, bomb)
        self.assertEqual(len(decode_packet(bomb, max_decompressed=4_000_000).messages), 1)

    def test_not_in_datagrams(self) -> None:
        for data in (b"", b"\x0a\x00", b"\x0d\x80", b"\x0c\x00\x00\x00\x00"):
            self.assertRaises(WireError, decode_packet, data)


class StreamTests(SynchronousTestCase):
    def test_encrypted(self) -> None:
        reader = StreamReader()
        self.assertIsNone(reader.feed(b""))
        error = self.assertRaises(EncryptedStream, reader.feed, b"\x0a\x00\x00\x00\xf4\x01")
        self.assertEqual(error.data, b"\x0a\x00\x00\x00\xf4\x01")
        self.assertIsInstance(error, WireError)
        self.assertRaises(WireError, reader.feed, b"more")

    def test_refused_types(self) -> None:
        for data in (
            encode_message(Nack(seq_no=1)),
            b"\x07",
            compress_message(compress_message(b"\x00\x80")),
        ):
            self.assertRaises(WireError, StreamReader().feed, data)

    def test_user_message(self) -> None:
        data = b"\x08" + pack_struct({"UserMsgLen": 3}) + b"abcdef"
        reader = StreamReader()
        self.assertEqual(reader.feed(data), User(payload=b"abc"))
        self.assertEqual(reader.unused, b"def")
        self.assertRaises(WireError, reader.feed, b"x")

    def test_size_limit(self) -> None:
        node = PushNodeState(
            name="n", addr=LOCALHOST, port=1, meta=bytes(200), incarnation=1, state=NodeState.ALIVE
        )
        nodes = [node] * 5
        huge = encode_stream(PushPull(join=False, nodes=nodes), compress=False)  # type: ignore[arg-type]
        self.assertGreater(len(huge), 1000)
        self.assertRaises(WireError, StreamReader(max_size=1000).feed, huge)
        reader = StreamReader(max_size=1000)
        self.assertIsNone(reader.feed(huge[:900]))
        self.assertRaises(WireError, reader.feed, huge[900:])
        self.assertIsInstance(StreamReader(max_size=len(huge)).feed(huge), PushPull)
        # A header announcing more than the limit fails at once, and so
        # does a compressed message expanding past it.
        self.assertRaises(
            WireError, StreamReader().feed, b"\x08" + pack_struct({"UserMsgLen": 1 << 40})
        )
        self.assertRaises(
            WireError,
            StreamReader(max_size=10_000).feed,
            encode_stream(User(payload=bytes(20_000))),
        )

    def test_truncated_compressed(self) -> None:
        data = compress_message(encode_stream(User(payload=b"abc"), compress=False)[:-1])
        self.assertRaises(WireError, StreamReader().feed, data)


def mutate(data: bytes, draw: st.DataObject) -> bytes:
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4), label="mutations")):
        kind = draw.draw(st.integers(0, 2))
        at = draw.draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == 0 and buf:
            buf[at] = draw.draw(st.integers(0, 255))
        elif kind == 1:
            buf[at:at] = draw.draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[at : at + draw.draw(st.integers(1, 8))]
    return bytes(buf)


def with_crc(data: bytes) -> bytes:
    return b"\x0c" + struct.pack("!I", zlib.crc32(data)) + data


class FuzzTests(SynchronousTestCase):
    @FUZZ
    @given(st.binary(max_size=400))
    def test_random_packets(self, data: bytes) -> None:
        wire_errors_only(decode_packet, data)
        wire_errors_only(decode_packet, with_crc(data))
        wire_errors_only(decode_packet, compress_message(data))
        wire_errors_only(decode_message, data)

    @FUZZ
    @given(st.data())
    def test_mutated_datagrams(self, draw: st.DataObject) -> None:
        datagram = draw.draw(st.sampled_from(capture()[0]))
        if datagram[0] == 12:  # mutate under the CRC so the damage gets read
            wire_errors_only(decode_packet, with_crc(mutate(datagram[5:], draw)))
        wire_errors_only(decode_packet, mutate(datagram, draw))

    @FUZZ
    @given(st.binary(max_size=400), st.randoms(use_true_random=False))
    def test_random_streams(self, data: bytes, rng: random.Random) -> None:
        for candidate in (data, compress_message(data), b"\x06" + data):
            wire_errors_only(feed_in_chunks, candidate, rng, StreamReader(max_size=100_000))

    @FUZZ
    @given(st.data(), st.randoms(use_true_random=False))
    def test_mutated_streams(self, draw: st.DataObject, rng: random.Random) -> None:
        stream = draw.draw(st.sampled_from(capture()[1])).data
        plain = lzw.decompress(msgpack.unpackb(stream[1:], raw=True)[b"Buf"])
        for candidate in (
            mutate(stream, draw),
            compress_message(mutate(plain, draw)),
            mutate(plain, draw),
        ):
            wire_errors_only(feed_in_chunks, candidate, rng, StreamReader(max_size=100_000))
