# -*- test-case-name: tests.unit.gossip.test_keyring -*-
"""
memberlist's keyring: real serf 0.9.4 ciphertexts, the stream AAD rule,
key rotation, version 0 padding, and junk that must only ever raise
``WireError``.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from itertools import count

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.keyring import (
    MAX_STREAM_BYTES,
    NO_KEY_TEXT,
    NOT_ENCRYPTED_TEXT,
    DecryptError,
    InvalidKey,
    Keyring,
    KeyringError,
    decode_key,
    encrypted_length,
    generate_key,
)
from tests.pcap import ENCRYPTED_POOL, ENCRYPTED_POOL_KEY, read

POOL_KEY = base64.b64decode(ENCRYPTED_POOL_KEY)
KEY16, KEY24, KEY32 = bytes(range(16)), bytes(range(24)), bytes(range(32))
FAST = settings(max_examples=150, deadline=None)

keys = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


def pool_keyring() -> Keyring:
    return Keyring.from_base64([ENCRYPTED_POOL_KEY])


def counter_nonces() -> Callable[[int], bytes]:
    """Deterministic, distinct nonces: 00..01, 00..02, ..."""
    numbers = count(1)
    return lambda n: next(numbers).to_bytes(n, "big")


class CapturedTrafficTests(SynchronousTestCase):
    """Everything serf sent in encrypted-pool.pcap opens with the pool key."""

    def setUp(self) -> None:
        self.datagrams, self.streams = read(ENCRYPTED_POOL)
        self.keyring = pool_keyring()

    def test_every_udp_datagram_decrypts(self) -> None:
        self.assertEqual(len(self.datagrams), 31)
        crc_checked = 0
        for datagram in self.datagrams:
            self.assertEqual(datagram.payload[0], 1)  # version 1, no type byte
            plain = self.keyring.decrypt_packet(datagram.payload)
            self.assertEqual(len(plain), len(datagram.payload) - 29)
            self.assertIn(plain[0], range(14))
            if plain[0] == 12:  # a CRC over the rest proves the plaintext is whole
                self.assertEqual(struct.unpack(">I", plain[1:5])[0], zlib.crc32(plain[5:]))
                crc_checked += 1
        self.assertEqual(crc_checked, 9)

    def test_udp_needs_no_associated_data(self) -> None:
        payload = self.datagrams[0].payload
        with self.assertRaises(InvalidTag):
            AESGCM(POOL_KEY).decrypt(payload[1:13], payload[13:], payload[:1])

    def test_tcp_streams(self) -> None:
        """
        Six stream directions: two good exchanges (request and reply
        decrypt), a join sealed with another key and a plaintext join, each
        answered by an encrypted (err) reply.
        """
        self.assertEqual(len(self.streams), 6)
        opened, refused = [], []
        for stream in self.streams:
            try:
                result = self.keyring.decrypt_stream(stream.data)
            except DecryptError as e:
                refused.append((stream.data[0], str(e)))
                continue
            assert result is not None
            plain, used = result
            self.assertEqual(used, len(stream.data))
            self.assertEqual(stream.data[0], 0x0A)
            self.assertEqual(int.from_bytes(stream.data[1:5], "big"), len(stream.data) - 5)
            self.assertIn(plain[0], (0x09, 0x0D))  # compressed message (or err)
            opened.append(plain)
        self.assertEqual(len(opened), 4)
        self.assertEqual(refused, [(0x0A, NO_KEY_TEXT), (0x09, NOT_ENCRYPTED_TEXT)])
        self.assertTrue(all(p.startswith(b"\x09\x82\xa4Algo\x00\xa3Buf") for p in opened))

    def test_tcp_header_is_associated_data(self) -> None:
        data = self.streams[0].data
        aes = AESGCM(POOL_KEY)
        aes.decrypt(data[6:18], data[18:], data[:5])
        with self.assertRaises(InvalidTag):
            aes.decrypt(data[6:18], data[18:], None)

    def test_stream_read_incrementally(self) -> None:
        data = self.streams[1].data
        for end in range(len(data)):
            self.assertIsNone(self.keyring.decrypt_stream(data[:end]))
        result = self.keyring.decrypt_stream(data + b"\x0a\x00")
        assert result is not None
        self.assertEqual(result[1], len(data))

    def test_wrong_key(self) -> None:
        other = Keyring(keys=[KEY32])
        for datagram in self.datagrams[:5]:
            e = self.assertRaises(DecryptError, other.decrypt_packet, datagram.payload)
            self.assertEqual(str(e), NO_KEY_TEXT)
        e = self.assertRaises(DecryptError, other.decrypt_stream, self.streams[0].data)
        self.assertEqual(str(e), NO_KEY_TEXT)

    def test_a_secondary_key_still_reads(self) -> None:
        keyring = Keyring(keys=[KEY16, KEY24, POOL_KEY])
        self.assertEqual(keyring.decrypt_packet(self.datagrams[0].payload)[0], 12)


class FlippedBitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.keyring = Keyring(keys=[KEY32])

    @FAST
    @given(st.binary(max_size=100), st.data())
    def test_packet_bit_flip(self, plain: bytes, data: st.DataObject) -> None:
        """Any flipped bit in the nonce, ciphertext or tag fails authentication."""
        sealed = bytearray(self.keyring.encrypt_packet(plain))
        bit = data.draw(st.integers(8, len(sealed) * 8 - 1))
        sealed[bit // 8] ^= 1 << (bit % 8)
        e = self.assertRaises(DecryptError, self.keyring.decrypt_packet, bytes(sealed))
        self.assertEqual(str(e), NO_KEY_TEXT)

    @FAST
    @given(st.binary(max_size=100), st.integers(0, 7))
    def test_packet_version_byte_flip(self, plain: bytes, bit: int) -> None:
        """
        memberlist does not authenticate a UDP packet's version byte (no
        associated data), so a flip to version 0 can still open: then the
        PKCS#7 rule strips or refuses the tail.  Never more than was sealed.
        """
        sealed = bytearray(self.keyring.encrypt_packet(plain))
        sealed[0] ^= 1 << bit
        try:
            opened = self.keyring.decrypt_packet(bytes(sealed))
        except DecryptError:
            return
        self.assertEqual(sealed[0], 0)
        self.assertTrue(plain.startswith(opened) and len(opened) < len(plain))

    @FAST
    @given(st.binary(max_size=100), st.data())
    def test_stream_bit_flip_after_header(self, plain: bytes, data: st.DataObject) -> None:
        sealed = bytearray(self.keyring.encrypt_stream(plain))
        bit = data.draw(st.integers(6 * 8, len(sealed) * 8 - 1))
        sealed[bit // 8] ^= 1 << (bit % 8)
        e = self.assertRaises(DecryptError, self.keyring.decrypt_stream, bytes(sealed))
        self.assertEqual(str(e), NO_KEY_TEXT)

    def test_version_byte_flips(self) -> None:
        sealed = self.keyring.encrypt_packet(b"hello")
        e = self.assertRaises(DecryptError, self.keyring.decrypt_packet, b"\x03" + sealed[1:])
        self.assertEqual(str(e), "Unsupported encryption version 3")
        # Version 0 needs room for at least one block of padding.
        e = self.assertRaises(DecryptError, self.keyring.decrypt_packet, b"\x00" + sealed[1:])
        self.assertEqual(str(e), "Payload is too small to decrypt: 34")


class FramingTests(SynchronousTestCase):
    def test_packet_layout_with_pinned_nonce(self) -> None:
        keyring = Keyring(keys=[KEY16], random_bytes=lambda n: b"\x24" * n)
        sealed = keyring.encrypt_packet(b"\x00ping")
        self.assertEqual(sealed[:13], b"\x01" + b"\x24" * 12)
        self.assertEqual(sealed[13:], AESGCM(KEY16).encrypt(b"\x24" * 12, b"\x00ping", None))
        self.assertEqual(len(sealed), encrypted_length(1, 5))

    def test_stream_layout(self) -> None:
        keyring = Keyring(keys=[KEY24], random_bytes=counter_nonces())
        first, second = keyring.encrypt_stream(b"x" * 300), keyring.encrypt_stream(b"")
        self.assertEqual(first[:5], b"\x0a" + (1 + 12 + 300 + 16).to_bytes(4, "big"))
        self.assertEqual(first[5], 1)
        self.assertEqual(first[6:18], (1).to_bytes(12, "big"))
        self.assertEqual(second[1:5], (29).to_bytes(4, "big"))
        # Two messages back to back are read one at a time.
        data = first + second
        plain, used = keyring.decrypt_stream(data) or (b"", 0)
        self.assertEqual((plain, used), (b"x" * 300, len(first)))
        self.assertEqual(keyring.decrypt_stream(data[used:]), (b"", len(second)))

    def test_stream_length_limit(self) -> None:
        keyring = Keyring(keys=[KEY16])
        header = b"\x0a" + MAX_STREAM_BYTES.to_bytes(4, "big")
        self.assertIsNone(keyring.decrypt_stream(header))  # allowed, just not here yet
        too_big = b"\x0a" + (MAX_STREAM_BYTES + 1).to_bytes(4, "big")
        e = self.assertRaises(DecryptError, keyring.decrypt_stream, too_big)
        self.assertEqual(str(e), f"Remote node state is larger than limit ({MAX_STREAM_BYTES + 1})")
        self.assertRaises(ValueError, keyring.encrypt_stream, bytes(MAX_STREAM_BYTES))

    def test_plaintext_stream_refused(self) -> None:
        keyring = Keyring(keys=[KEY16])
        e = self.assertRaises(DecryptError, keyring.decrypt_stream, b"\x06\x83")
        self.assertEqual(str(e), NOT_ENCRYPTED_TEXT)
        self.assertIsInstance(e, WireError)
        self.assertIsNone(keyring.decrypt_stream(b""))
        self.assertIsNone(keyring.decrypt_stream(b"\x0a\x00\x00"))

    def test_short_and_empty_packets(self) -> None:
        keyring = Keyring(keys=[KEY16])
        e = self.assertRaises(DecryptError, keyring.decrypt_packet, b"")
        self.assertEqual(str(e), "Cannot decrypt empty payload")
        e = self.assertRaises(DecryptError, keyring.decrypt_packet, b"\x01" + bytes(27))
        self.assertEqual(str(e), "Payload is too small to decrypt: 28")


class VersionZeroTests(SynchronousTestCase):
    """memberlist protocol 1's format: PKCS#7 padding inside the seal."""

    def test_reads_padding_sealed_independently(self) -> None:
        keyring = Keyring(keys=[KEY32])
        nonce = b"\x07" * 12
        for size in range(0, 34):
            plain = bytes(range(size))
            pad = 16 - size % 16
            sealed = (
                b"\x00" + nonce + AESGCM(KEY32).encrypt(nonce, plain + bytes([pad]) * pad, None)
            )
            self.assertEqual(len(sealed), encrypted_length(0, size))
            self.assertEqual(keyring.decrypt_packet(sealed), plain)

    def test_writes_version_zero_on_request(self) -> None:
        keyring = Keyring(keys=[KEY16])
        sealed = keyring.encrypt_packet(b"a" * 16, version=0)
        self.assertEqual(sealed[0], 0)
        self.assertEqual(len(sealed), 1 + 12 + 32 + 16)  # a whole block of padding
        self.assertEqual(keyring.decrypt_packet(sealed), b"a" * 16)
        stream = keyring.encrypt_stream(b"abc", version=0)
        self.assertEqual(int.from_bytes(stream[1:5], "big"), encrypted_length(0, 3))
        self.assertEqual(keyring.decrypt_stream(stream), (b"abc", len(stream)))
        self.assertRaises(ValueError, keyring.encrypt_packet, b"", version=2)

    def test_bad_padding(self) -> None:
        keyring = Keyring(keys=[KEY16])
        nonce = bytes(12)
        for last in (0, 17):
            block = bytes(15) + bytes([last])
            sealed = b"\x00" + nonce + AESGCM(KEY16).encrypt(nonce, block, None)
            self.assertRaises(DecryptError, keyring.decrypt_packet, sealed)


class KeyringTests(SynchronousTestCase):
    def test_key_sizes(self) -> None:
        for key in (KEY16, KEY24, KEY32):
            keyring = Keyring(keys=[key])
            self.assertEqual(keyring.decrypt_packet(keyring.encrypt_packet(b"hi")), b"hi")
        for size in (0, 1, 15, 17, 31, 33, 64):
            e = self.assertRaises(InvalidKey, Keyring, keys=[bytes(size)])
            self.assertNotIn("\n", str(e))

    def test_from_base64(self) -> None:
        b16, b32 = base64.b64encode(KEY16).decode(), base64.b64encode(KEY32).decode()
        keyring = Keyring.from_base64([b32, b16, b32])
        self.assertEqual(keyring.keys, (KEY32, KEY16))
        self.assertEqual(keyring.keys_base64(), [b32, b16])
        self.assertEqual(keyring.primary_base64(), b32)
        for bad in ("not base64!", "AAAA", b32[:-1], "", "é"):
            e = self.assertRaises(InvalidKey, Keyring.from_base64, [bad])
            self.assertNotIn("\n", str(e))
            self.assertNotIsInstance(e, KeyError)
        self.assertRaises(InvalidKey, Keyring.from_base64, [])

    def test_rotation(self) -> None:
        """Install everywhere, use everywhere, remove: no message is ever unreadable."""
        old, new = Keyring(keys=[KEY16]), Keyring(keys=[KEY16])
        old.install(KEY32)
        self.assertEqual(old.keys, (KEY16, KEY32))
        self.assertEqual(new.decrypt_packet(old.encrypt_packet(b"a")), b"a")  # primary still KEY16
        old.use(base64.b64encode(KEY32).decode())
        self.assertEqual(old.keys, (KEY32, KEY16))
        e = self.assertRaises(DecryptError, new.decrypt_packet, old.encrypt_packet(b"b"))
        self.assertEqual(str(e), NO_KEY_TEXT)
        self.assertEqual(old.decrypt_packet(new.encrypt_packet(b"c")), b"c")  # secondary reads
        old.remove(KEY16)
        self.assertEqual(old.keys, (KEY32,))
        self.assertRaises(DecryptError, old.decrypt_packet, new.encrypt_packet(b"d"))

    def test_rotation_refusals(self) -> None:
        keyring = Keyring(keys=[KEY16, KEY24])
        e = self.assertRaises(KeyringError, keyring.remove, KEY16)
        self.assertEqual(str(e), "Removing the primary key is not allowed")
        e = self.assertRaises(KeyringError, keyring.use, KEY32)
        self.assertEqual(str(e), "Requested key is not in the keyring")
        keyring.remove(KEY32)  # not installed: a no-op, as in memberlist
        keyring.install(KEY24)  # already installed: a no-op
        self.assertEqual(keyring.keys, (KEY16, KEY24))
        self.assertRaises(InvalidKey, keyring.install, b"short")
        self.assertRaises(InvalidKey, keyring.use, "%%%")

    def test_use_keeps_the_order_of_the_others(self) -> None:
        keyring = Keyring(keys=[KEY16, KEY24, KEY32])
        keyring.use(KEY32)
        self.assertEqual(keyring.keys, (KEY32, KEY16, KEY24))

    def test_repr_hides_keys(self) -> None:
        keyring = Keyring(keys=[KEY16])
        self.assertEqual(repr(keyring), "<Keyring with 1 key(s)>")

    def test_generate_key(self) -> None:
        self.assertEqual(generate_key(lambda n: bytes(range(n))), base64.b64encode(KEY32).decode())
        key = generate_key()
        self.assertEqual(len(key), 44)
        self.assertEqual(len(decode_key(key)), 32)
        self.assertNotEqual(generate_key(), key)


class PropertyTests(SynchronousTestCase):
    @FAST
    @given(st.lists(keys, min_size=1, max_size=3), st.binary(max_size=600), st.sampled_from([0, 1]))
    def test_round_trip(self, ring: list[bytes], plain: bytes, version: int) -> None:
        keyring = Keyring(keys=ring)
        reader = Keyring(keys=list(reversed(ring)))  # the primary may be any key of the reader
        packet = keyring.encrypt_packet(plain, version=version)
        self.assertEqual(len(packet), encrypted_length(version, len(plain)))
        self.assertEqual(reader.decrypt_packet(packet), plain)
        stream = keyring.encrypt_stream(plain, version=version)
        self.assertEqual(reader.decrypt_stream(stream), (plain, len(stream)))

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=200))
    def test_junk_only_raises_wire_error(self, junk: bytes) -> None:
        keyring = Keyring(keys=[KEY16, KEY32])
        for attempt in (keyring.decrypt_packet, keyring.decrypt_stream):
            try:
                attempt(junk)
            except WireError:
                pass

    @FAST
    @given(st.binary(max_size=200), st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2, 255]))
    def test_framed_junk_only_raises_wire_error(self, body: bytes, length: int, vsn: int) -> None:
        keyring = Keyring(keys=[KEY24])
        for data in (
            b"\x0a" + length.to_bytes(4, "big") + bytes([vsn]) + body,
            b"\x0a" + (len(body) + 1).to_bytes(4, "big") + bytes([vsn]) + body,
        ):
            try:
                keyring.decrypt_stream(data)
            except WireError:
                pass
