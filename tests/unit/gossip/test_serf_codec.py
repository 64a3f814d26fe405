# -*- test-case-name: tests.unit.gossip.test_serf_codec -*-
"""
Serf's wire encoding against real serf 0.9.4 bytes (user messages, ack
coordinates and node meta from the captures; the push/pull state example of
the wire reference), hypothesis round trips of every record, and junk that
must only ever raise ``WireError``.

The push/pull user state inside the captured TCP streams is LZW-compressed;
reading it needs memberlist's codec and is left to its integration tests.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.keyring import Keyring
from consul_tw.gossip.serf.codec import (
    META_MAX_SIZE,
    TagsTooLarge,
    decode_conflict_response,
    decode_coordinate,
    decode_filter,
    decode_key_request,
    decode_key_response,
    decode_serf,
    decode_tags,
    encode_conflict_response,
    encode_coordinate,
    encode_filter,
    encode_key_request,
    encode_key_response,
    encode_serf,
    encode_tags,
)
from consul_tw.gossip.serf.messages import (
    EVENT_BUFFER_SIZE,
    ConflictMember,
    Coordinate,
    JoinIntent,
    KeyResponse,
    LeaveIntent,
    NodeFilter,
    PushPullState,
    Query,
    QueryFlag,
    QueryResponse,
    Relay,
    TagFilter,
    UserEvent,
    UserEventCollection,
    UserEventEntry,
)
from tests.pcap import ENCRYPTED_POOL, ENCRYPTED_POOL_KEY, PLAIN_POOL, read

FAST = settings(max_examples=150, deadline=None)


# -- capture helpers (test-only; memberlist's real codec lives elsewhere) --


def parts(message: bytes) -> Iterator[bytes]:
    """The messages in a UDP packet, through CRC (12) and compound (7) framing."""
    if message[0] == 12:
        yield from parts(message[5:])
    elif message[0] == 7:
        n = message[1]
        lengths = struct.unpack(f">{n}H", message[2 : 2 + 2 * n])
        offset = 2 + 2 * n
        for length in lengths:
            yield from parts(message[offset : offset + length])
            offset += length
    else:
        yield message


def captured_parts() -> Iterator[bytes]:
    """Every uncompressed message serf sent over UDP in both captures."""
    keyring = Keyring.from_base64([ENCRYPTED_POOL_KEY])
    for datagram in read(PLAIN_POOL)[0]:
        yield from parts(datagram.payload)
    for datagram in read(ENCRYPTED_POOL)[0]:
        yield from parts(keyring.decrypt_packet(datagram.payload))


def go_keys(data: bytes, skip: int = 1) -> list[bytes]:
    return list(msgpack.unpackb(data[skip:], raw=True))


# -- strategies ------------------------------------------------------------

u8, u16, u32, u64 = (st.integers(0, 2**b - 1) for b in (8, 16, 32, 64))
names = st.text(max_size=40)
blobs = st.binary(max_size=80)
opt_blobs = st.none() | blobs
addrs = st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16)
floats = st.floats(allow_nan=False)

event_slots = st.none() | st.builds(
    UserEventCollection,
    ltime=u64,
    events=st.lists(
        st.builds(UserEventEntry, name=names, payload=opt_blobs), min_size=1, max_size=3
    ),
)
push_pulls = st.builds(
    PushPullState,
    ltime=u64,
    status_ltimes=st.dictionaries(names, u64, max_size=5),
    left_members=st.lists(names, max_size=4),
    event_ltime=u64,
    events=st.lists(event_slots, max_size=20) | st.just([None] * EVENT_BUFFER_SIZE),
    query_ltime=u64,
)
queries = st.builds(
    Query,
    ltime=u64,
    id=u32,
    addr=addrs,
    port=u16,
    source_node=names,
    name=names,
    filters=st.lists(blobs, min_size=1, max_size=3) | st.just(()),
    flags=u32,
    relay_factor=u8,
    timeout_ns=st.integers(-(2**63), 2**63 - 1),
    payload=opt_blobs,
)
plain_messages = st.one_of(
    st.builds(LeaveIntent, ltime=u64, node=names, prune=st.booleans()),
    st.builds(JoinIntent, ltime=u64, node=names),
    push_pulls,
    st.builds(UserEvent, ltime=u64, name=names, payload=opt_blobs, cc=st.booleans()),
    queries,
    st.builds(QueryResponse, ltime=u64, id=u32, from_node=names, flags=u32, payload=opt_blobs),
)
relays = st.builds(
    Relay,
    dest_addr=addrs,
    dest_port=u16,
    dest_zone=names,
    dest_name=names,
    inner=plain_messages.map(encode_serf),
)
messages = plain_messages | relays
tag_maps = st.dictionaries(names, names, max_size=6)
GO_FIELDS = [
    name.encode()
    for name in "Addr CC DestAddr DestName Events Expr Filters Flags From ID IP Key Keys LTime"
    " LeftMembers Message Name Node Payload Port PrimaryKey Prune QueryLTime RelayFactor Result"
    " SourceNode Status StatusLTimes Tag Tags Timeout Vec Error Height Zone".split()
]
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | floats
    | st.binary(max_size=20)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(GO_FIELDS) | inner.filter(lambda v: isinstance(v, (bytes, int, str))),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


class CapturedTests(SynchronousTestCase):
    """Real serf 0.9.4 bytes decode and re-encode byte for byte."""

    def setUp(self) -> None:
        self.parts = list(captured_parts())

    def test_user_messages(self) -> None:
        seen: dict[object, int] = {}
        for part in self.parts:
            if part[0] != 8:
                continue
            msg = decode_serf(part[1:])
            self.assertEqual(encode_serf(msg), part[1:])
            seen[msg] = seen.get(msg, 0) + 1
        self.assertEqual(
            seen,
            {
                JoinIntent(ltime=1, node="s2"): 8,
                LeaveIntent(ltime=2, node="s2", prune=False): 8,
                JoinIntent(ltime=5, node="s3"): 6,
                JoinIntent(ltime=1, node="e2"): 8,
            },
        )

    def test_ack_coordinates(self) -> None:
        decoded = 0
        for part in self.parts:
            if part[0] != 2:
                continue
            payload = msgpack.unpackb(part[1:], raw=True)[b"Payload"]
            coord = decode_coordinate(payload)
            assert coord is not None
            self.assertEqual(len(coord.vec), 8)
            self.assertEqual(
                encode_coordinate(coord.vec, coord.error, coord.adjustment, coord.height), payload
            )
            decoded += 1
        self.assertEqual(decoded, 85)

    def test_node_meta_tags(self) -> None:
        seen = []
        for part in self.parts:
            if part[0] == 4:
                meta = msgpack.unpackb(part[1:], raw=True)[b"Meta"]
                tags = decode_tags(meta)
                self.assertEqual(decode_tags(encode_tags(tags)), tags)
                if tags not in seen:
                    seen.append(tags)
        self.assertEqual(
            sorted(seen, key=len),
            [{}, {"role": "db"}, {"role": "web"}, {"role": "web", "dc": "dc1"}],
        )
        # Go's maps are unordered (serf sent role before dc); ours are sorted.
        self.assertEqual(encode_tags({"role": "db"}), b"\xff\x81\xa4role\xa2db")
        self.assertEqual(encode_tags({}), b"\xff\x80")


class PushPullTests(SynchronousTestCase):
    def test_reference_example(self) -> None:
        """
        The Serf state of the captured join (wire reference section 5.2).

        The reference prints the LTime key's header as ``a4``; a 5-letter
        fixstr is ``a5``, and the captured length (0x24a) agrees with that.
        """
        expected = (
            b"\x02\x86\xaaEventLTime\x01\xa6Events\xdc\x02\x00"
            + b"\xc0" * 512
            + b"\xa5LTime\x01\xabLeftMembers\x90\xaaQueryLTime\x01\xacStatusLTimes\x81\xa2s2\x00"
        )
        state = PushPullState(
            ltime=1, status_ltimes={"s2": 0}, event_ltime=1, events=[None] * 512, query_ltime=1
        )
        self.assertEqual(len(expected), 0x024A)  # the captured UserStateLen
        self.assertEqual(encode_serf(state), expected)
        self.assertEqual(decode_serf(expected), state)

    def test_event_ring_with_events(self) -> None:
        ring: list[UserEventCollection | None] = [None] * EVENT_BUFFER_SIZE
        ring[3] = UserEventCollection(
            ltime=3, events=[UserEventEntry(name="deploy", payload=b"v2")]
        )
        state = PushPullState(
            ltime=9, event_ltime=4, events=ring, query_ltime=2, left_members=["x"]
        )
        data = encode_serf(state)
        self.assertIn(b"\xa6Events\xdc\x02\x00\xc0\xc0\xc0\x82\xa6Events\x91\x82\xa4Name", data)
        self.assertEqual(decode_serf(data), state)

    def test_empty_and_nil(self) -> None:
        state = decode_serf(b"\x02\x81\xa5LTime\x07")
        self.assertEqual(state, PushPullState(ltime=7))
        self.assertEqual(
            decode_serf(b"\x02\x83\xa5LTime\x07\xa6Events\xc0\xabLeftMembers\xc0"), state
        )


class EncodingTests(SynchronousTestCase):
    """go-msgpack's choices: sorted Go field names, raw strings, nil slices."""

    def test_field_order(self) -> None:
        query = Query(ltime=1, id=2, addr=b"\x7f\0\0\1", port=7946, source_node="s1", name="q")
        self.assertEqual(
            go_keys(encode_serf(query)),
            [
                b"Addr",
                b"Filters",
                b"Flags",
                b"ID",
                b"LTime",
                b"Name",
                b"Payload",
                b"Port",
                b"RelayFactor",
                b"SourceNode",
                b"Timeout",
            ],
        )
        response = QueryResponse(ltime=1, id=2, from_node="s1")
        self.assertEqual(
            go_keys(encode_serf(response)), [b"Flags", b"From", b"ID", b"LTime", b"Payload"]
        )
        event = UserEvent(ltime=1, name="e")
        self.assertEqual(go_keys(encode_serf(event)), [b"CC", b"LTime", b"Name", b"Payload"])
        self.assertEqual(
            go_keys(encode_key_response(KeyResponse(result=True))),
            [b"Keys", b"Message", b"PrimaryKey", b"Result"],
        )

    def test_query_bytes(self) -> None:
        query = Query(
            ltime=5,
            id=0xDEADBEEF,
            addr=b"\x7f\0\0\1",
            port=17946,
            source_node="s1",
            name="_serf_ping",
            flags=QueryFlag.ACK,
            timeout_ns=5_000_000_000,
        )
        self.assertEqual(
            encode_serf(query),
            b"\x04\x8b\xa4Addr\xa4\x7f\x00\x00\x01\xa7Filters\xc0\xa5Flags\x01"
            b"\xa2ID\xce\xde\xad\xbe\xef\xa5LTime\x05\xa4Name\xaa_serf_ping\xa7Payload\xc0"
            b"\xa4Port\xcd\x46\x1a\xabRelayFactor\x00\xaaSourceNode\xa2s1"
            b"\xa7Timeout\xcf\x00\x00\x00\x01\x2a\x05\xf2\x00",
        )

    def test_ack_response_bytes(self) -> None:
        ack = QueryResponse(ltime=5, id=1, from_node="s2", flags=QueryFlag.ACK)
        self.assertEqual(
            encode_serf(ack),
            b"\x05\x85\xa5Flags\x01\xa4From\xa2s2\xa2ID\x01\xa5LTime\x05\xa7Payload\xc0",
        )

    def test_raw_strings_never_str8_or_bin(self) -> None:
        data = encode_serf(UserEvent(ltime=1, name="n" * 40, payload=b"\xff" * 40))
        self.assertIn(b"\xda\x00\x28" + b"n" * 40, data)
        self.assertIn(b"\xda\x00\x28" + b"\xff" * 40, data)
        self.assertEqual(encode_serf(UserEvent(ltime=1, name="", payload=b""))[-1:], b"\xa0")

    def test_relay_bytes(self) -> None:
        inner = encode_serf(JoinIntent(ltime=1, node="a"))
        relay = Relay(dest_addr=b"\x7f\0\0\1", dest_port=8301, dest_name="n1", inner=inner)
        self.assertEqual(
            encode_serf(relay),
            b"\x09\x82\xa8DestAddr\x83\xa2IP\xa4\x7f\x00\x00\x01\xa4Port\xcd\x20\x6d\xa4Zone\xa0"
            b"\xa8DestName\xa2n1" + inner,
        )
        self.assertEqual(decode_serf(encode_serf(relay)), relay)

    def test_lenient_decoding(self) -> None:
        """Any key order, unknown keys, missing keys, bin bytes, trailing bytes."""
        body = msgpack.packb({"Node": "s9", "Extra": [1, 2], "LTime": 3}, use_bin_type=True)
        self.assertEqual(decode_serf(b"\x01" + body + b"junk"), JoinIntent(ltime=3, node="s9"))
        body = msgpack.packb({"Payload": b"\x00\xff", "Name": "e"}, use_bin_type=True)
        self.assertEqual(
            decode_serf(b"\x03" + body), UserEvent(ltime=0, name="e", payload=b"\x00\xff")
        )

    def test_junk_messages(self) -> None:
        for junk in (
            b"",
            b"\x06\x80",
            b"\x07\x80",
            b"\x08\x80",
            b"\x0a\x80",
            b"\xff",
            b"\x01",
            b"\x01\x82\xa5LTime",
            b"\x01\x93\x01\x02\x03",
            b"\x01\x81\xa5LTime\xff",
            b"\x01\x81\xa5LTime\xa1x",
            b"\x01\x81\xa4Node\x05",
            b"\x01\x81\xa4Node\xa1\xff",
            b"\x02\x81\xa6Events\x91\x05",
            b"\x02\x81\xacStatusLTimes\x91\x00",
            b"\x04\x81\xa4Port\xce\x00\x01\x00\x00",
            b"\x09\x81\xa8DestAddr\x05",
        ):
            self.assertRaises(WireError, decode_serf, junk)
        self.assertRaises(TypeError, encode_serf, NodeFilter(names=["x"]))


class PayloadTests(SynchronousTestCase):
    def test_tags(self) -> None:
        self.assertEqual(decode_tags(b"\xff\x80"), {})
        self.assertEqual(decode_tags(b"web"), {"role": "web"})
        self.assertEqual(decode_tags(b""), {"role": ""})
        self.assertEqual(decode_tags(b"\xfe\x80"), {"role": "\ufffd\ufffd"})
        big = {"k": "v" * (META_MAX_SIZE - 7)}  # ff 81 a1 "k" da <len16>
        self.assertEqual(len(encode_tags(big)), META_MAX_SIZE)
        e = self.assertRaises(TagsTooLarge, encode_tags, {"k": "v" * (META_MAX_SIZE - 6)})
        self.assertEqual(str(e), "Encoded length of tags exceeds limit of 512 bytes")
        for junk in (b"\xff", b"\xff\x91\xa1x", b"\xff\x81\x01\xa1x", b"\xff\x81\xa1x\xa1\xff"):
            self.assertRaises(WireError, decode_tags, junk)

    def test_filters(self) -> None:
        self.assertEqual(encode_filter(NodeFilter(names=["a", "b"])), b"\x00\x92\xa1a\xa1b")
        self.assertEqual(
            encode_filter(TagFilter(tag="role", expr="^web$")),
            b"\x01\x82\xa4Expr\xa5^web$\xa3Tag\xa4role",
        )
        for junk in (b"", b"\x02\x90", b"\x00\x80", b"\x01\x90", b"\x00"):
            self.assertRaises(WireError, decode_filter, junk)

    def test_key_queries(self) -> None:
        key = bytes(range(16))
        self.assertEqual(encode_key_request(key), b"\x07\x81\xa3Key\xb0" + key)
        self.assertEqual(decode_key_request(encode_key_request(key)), key)
        installed = KeyResponse(result=True)
        self.assertEqual(
            encode_key_response(installed),
            b"\x08\x84\xa4Keys\xc0\xa7Message\xa0\xaaPrimaryKey\xa0\xa6Result\xc3",
        )
        listed = KeyResponse(
            result=True,
            keys=[base64.b64encode(key).decode()],
            primary_key=base64.b64encode(key).decode(),
        )
        self.assertEqual(decode_key_response(encode_key_response(listed)), listed)
        for junk in (b"", b"\x08\x81\xa3Key\xa0", b"\x07\x81\xa3Key\x05"):
            self.assertRaises(WireError, decode_key_request, junk)
        for junk in (b"", b"\x07\x80", b"\x08\x81\xa6Result\x01", b"\x08\x81\xa4Keys\x91\x01"):
            self.assertRaises(WireError, decode_key_response, junk)

    def test_conflict_response(self) -> None:
        self.assertEqual(encode_conflict_response(None), b"\x06\xc0")
        self.assertIsNone(decode_conflict_response(b"\x06\xc0"))
        member = ConflictMember(
            name="n1",
            addr=b"\x7f\0\0\1",
            port=8301,
            tags={"role": "node"},
            status=1,
            protocol_min=1,
            protocol_max=5,
            protocol_cur=2,
            delegate_min=2,
            delegate_max=5,
            delegate_cur=4,
        )
        data = encode_conflict_response(member)
        self.assertEqual(
            go_keys(data),
            [
                b"Addr",
                b"DelegateCur",
                b"DelegateMax",
                b"DelegateMin",
                b"Name",
                b"Port",
                b"ProtocolCur",
                b"ProtocolMax",
                b"ProtocolMin",
                b"Status",
                b"Tags",
            ],
        )
        self.assertEqual(decode_conflict_response(data), member)
        for junk in (b"", b"\x08\xc0", b"\x06", b"\x06\x81\xabProtocolMax\xcd\x01\x00"):
            self.assertRaises(WireError, decode_conflict_response, junk)

    def test_coordinates(self) -> None:
        for none in (None, b"", b"\x02\x80", b"\x00"):
            self.assertIsNone(decode_coordinate(none))
        data = encode_coordinate([0, 1, 2], 1, 0, 1e-5)
        self.assertEqual(go_keys(data), [b"Adjustment", b"Error", b"Height", b"Vec"])
        self.assertEqual(data.count(b"\xcb"), 6)  # every number a float64, ints included
        self.assertEqual(
            decode_coordinate(data),
            Coordinate(vec=(0.0, 1.0, 2.0), error=1.0, adjustment=0.0, height=1e-5),
        )
        for junk in (b"\x01", b"\x01\x90", b"\x01\x81\xa3Vec\xa1x", b"\x01\x81\xa5Error\xc3"):
            self.assertRaises(WireError, decode_coordinate, junk)


class PropertyTests(SynchronousTestCase):
    @FAST
    @given(messages)
    def test_message_round_trip(self, msg: Any) -> None:
        data = encode_serf(msg)
        self.assertEqual(decode_serf(data), msg)
        self.assertEqual(encode_serf(decode_serf(data)), data)

    @FAST
    @given(tag_maps)
    def test_tags_round_trip(self, tags: dict[str, str]) -> None:
        try:
            meta = encode_tags(tags)
        except TagsTooLarge:
            return
        self.assertEqual(decode_tags(meta), tags)

    @FAST
    @given(
        st.lists(names, max_size=5).map(lambda n: NodeFilter(names=n))
        | st.builds(TagFilter, tag=names, expr=names)
    )
    def test_filter_round_trip(self, flt: Any) -> None:
        self.assertEqual(decode_filter(encode_filter(flt)), flt)

    @FAST
    @given(
        blobs,
        st.builds(
            KeyResponse,
            result=st.booleans(),
            message=names,
            keys=st.lists(names, max_size=4),
            primary_key=names,
        ),
    )
    def test_key_payload_round_trip(self, key: bytes, resp: KeyResponse) -> None:
        self.assertEqual(decode_key_request(encode_key_request(key)), key)
        self.assertEqual(decode_key_response(encode_key_response(resp)), resp)

    @FAST
    @given(
        st.none()
        | st.builds(
            ConflictMember,
            name=names,
            addr=addrs,
            port=u16,
            tags=tag_maps,
            status=st.integers(0, 4),
            protocol_min=u8,
            protocol_max=u8,
            protocol_cur=u8,
            delegate_min=u8,
            delegate_max=u8,
            delegate_cur=u8,
        )
    )
    def test_conflict_round_trip(self, member: ConflictMember | None) -> None:
        self.assertEqual(decode_conflict_response(encode_conflict_response(member)), member)

    @FAST
    @given(st.lists(floats, max_size=8), floats, floats, floats)
    def test_coordinate_round_trip(
        self, vec: list[float], error: float, adj: float, h: float
    ) -> None:
        coord = decode_coordinate(encode_coordinate(vec, error, adj, h))
        self.assertEqual(coord, Coordinate(vec=vec, error=error, adjustment=adj, height=h))

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=120))
    def test_random_bytes_only_raise_wire_error(self, junk: bytes) -> None:
        self._only_wire_errors(junk)

    @settings(max_examples=500, deadline=None)
    @given(st.integers(0, 255), msgpack_values, st.binary(max_size=4))
    def test_structured_junk_only_raises_wire_error(
        self, kind: int, value: Any, tail: bytes
    ) -> None:
        """Well-formed msgpack of the wrong shape, behind every type byte."""
        self._only_wire_errors(bytes([kind]) + msgpack.packb(value, use_bin_type=True) + tail)
        self._only_wire_errors(bytes([kind]) + msgpack.packb(value, use_bin_type=False))

    @settings(max_examples=300, deadline=None)
    @given(messages, st.data())
    def test_damaged_messages_only_raise_wire_error(self, msg: Any, data: st.DataObject) -> None:
        """Real encodings, truncated or with one byte changed."""
        encoded = encode_serf(msg)
        cut = data.draw(st.integers(0, len(encoded) - 1))
        self._only_wire_errors(encoded[:cut])
        damaged = bytearray(encoded)
        damaged[cut] = data.draw(st.integers(0, 255))
        self._only_wire_errors(bytes(damaged))

    def _only_wire_errors(self, data: bytes) -> None:
        for decoder in (
            decode_serf,
            decode_tags,
            decode_filter,
            decode_key_request,
            decode_key_response,
            decode_conflict_response,
            decode_coordinate,
        ):
            try:
                decoder(data)
            except WireError:
                pass
