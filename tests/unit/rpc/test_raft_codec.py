"""
The Raft codec: every message round-trips exactly through real frames, the
wire layout is the documented one, and whatever a peer may send that is not
a well-formed message -- random values, each field given a wrong type,
missing or extra keys, oversize lists -- raises FrameError naming the field,
never anything else.
"""

from __future__ import annotations

import enum
import typing
from copy import deepcopy
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    LogEntry,
    Message,
    RequestVote,
    RequestVoteResponse,
    Server,
    TimeoutNow,
)
from consul_tw.rpc.framing import FrameError, decode_frames, encode_frame
from consul_tw.rpc.raft_codec import (
    MAX_ENTRIES,
    MAX_SERVERS,
    MAX_TEXT,
    MESSAGE_TYPES,
    decode_message,
    encode_message,
)

FAST = settings(max_examples=200, deadline=None)
U64 = 2**64 - 1

# -- strategies, built from the records' type hints (independently of the codec) ----

uints = st.one_of(st.integers(0, 3), st.integers(0, U64))
texts = st.text(max_size=40)
servers = st.builds(Server, id=texts, address=texts)
entries = st.builds(
    LogEntry,
    index=uints,
    term=uints,
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=64),
    servers=st.lists(servers, max_size=3).map(tuple),
)
_BY_HINT: dict[Any, st.SearchStrategy[Any]] = {
    int: uints,
    bool: st.booleans(),
    str: texts,
    bytes: st.binary(max_size=128),
    tuple[LogEntry, ...]: st.lists(entries, max_size=4).map(tuple),
    tuple[Server, ...]: st.lists(servers, max_size=4).map(tuple),
}


def records(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: _BY_HINT[hints[f.name]] for f in attrs.fields(cls)})


MESSAGE_CLASSES: tuple[type[Any], ...] = typing.get_args(Message)
messages = st.one_of([records(cls) for cls in MESSAGE_CLASSES])

wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64)
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.integers(0, 10), children, max_size=4)
    ),
    max_leaves=10,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64)
    | st.text(max_size=5)
    | st.sampled_from(["command", "noop", "configuration"])
    | st.binary(max_size=5)
)
# Plausible field values: scalars, and arrays of maps with LogEntry/Server keys.
field_values = scalars | st.lists(
    st.dictionaries(
        st.sampled_from(["index", "term", "type", "data", "servers", "id", "address"]),
        scalars | st.lists(st.dictionaries(st.sampled_from(["id", "address"]), scalars)),
        max_size=6,
    ),
    max_size=2,
)


def through_the_wire(message: Any) -> Any:
    """Encode, frame, unframe, decode: what a peer's channel sees."""
    (value,) = decode_frames(encode_frame(encode_message(message)))
    return decode_message(value)


# -- one full sample of each message, every nested list non-empty -----------------

CONFIG = (Server(id="a1", address="10.0.0.1:8300"), Server(id="b2", address="10.0.0.2:8300"))
SAMPLES: dict[str, Any] = {
    "RequestVote": RequestVote(
        term=5,
        candidate_id="a1",
        candidate_address="10.0.0.1:8300",
        last_log_index=9,
        last_log_term=4,
        pre_vote=True,
        transfer=True,
    ),
    "RequestVoteResponse": RequestVoteResponse(term=5, voter_id="b2", granted=True, pre_vote=True),
    "AppendEntries": AppendEntries(
        term=7,
        leader_id="a1",
        leader_address="10.0.0.1:8300",
        prev_log_index=41,
        prev_log_term=7,
        entries=(
            LogEntry(index=42, term=7, data=b"\x00\xff"),
            LogEntry(index=43, term=7, type=EntryType.CONFIGURATION, servers=CONFIG),
        ),
        leader_commit=41,
        seq=12,
    ),
    "AppendEntriesResponse": AppendEntriesResponse(
        term=7, peer_id="b2", success=False, match_index=40, seq=12
    ),
    "InstallSnapshot": InstallSnapshot(
        term=7,
        leader_id="a1",
        leader_address="10.0.0.1:8300",
        last_index=100,
        last_term=6,
        servers=CONFIG,
        configuration_index=3,
        offset=0,
        data=b"snapshot",
        done=True,
        seq=13,
    ),
    "InstallSnapshotResponse": InstallSnapshotResponse(
        term=7, peer_id="b2", success=True, last_index=100, offset=8, seq=13
    ),
    "TimeoutNow": TimeoutNow(term=7, leader_id="a1", leader_address="10.0.0.1:8300"),
}

# Values of the wrong kind for each kind of field (True is not an integer here).
WRONG: dict[str, list[Any]] = {
    "uint": [-1, -(2**63), 2**64, True, False, 1.0, "1", b"1", None, [], {}],
    "bool": [0, 1, "true", b"", None, 1.5, [], {}],
    "text": [b"x", 1, True, None, 1.5, [], {}, "x" * (MAX_TEXT + 1)],
    "bytes": ["x", 1, True, None, [], {}, bytearray(b"x")],
    "enum": ["COMMAND", "bogus", "", 1, True, None, b"command", []],
    "array": [None, "x", b"x", 1, {}, [None], [1], [[]], [{}], [{"bogus": 1}]],
}


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "uint"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, enum.Enum):
        return "enum"
    assert isinstance(value, tuple), value
    return "array"


def paths(record: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every field of ``record``, nested ones included, with its kind."""
    found = []
    for field in attrs.fields(type(record)):
        value = getattr(record, field.name)
        path = (*prefix, field.name)
        found.append((path, kind(value)))
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                found.extend(paths(item, (*path, i)))
    return found


def replaced(wire: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copy = deepcopy(wire)
    target: Any = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def where(message_type: str, path: tuple[Any, ...]) -> str:
    text = message_type
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


class RoundTripTests(SynchronousTestCase):
    def test_every_message_type_is_carried(self) -> None:
        self.assertEqual(set(MESSAGE_TYPES), {cls.__name__ for cls in MESSAGE_CLASSES})
        self.assertEqual(set(SAMPLES), set(MESSAGE_TYPES))

    def test_samples(self) -> None:
        for sample in SAMPLES.values():
            self.assertEqual(through_the_wire(sample), sample)

    @FAST
    @given(messages)
    def test_round_trip(self, message: Any) -> None:
        decoded = through_the_wire(message)
        self.assertEqual(decoded, message)
        self.assertIs(type(decoded), type(message))

    def test_wire_layout(self) -> None:
        """The map documented in raft_channel: type name, fields by name, enums as values."""
        message = AppendEntries(
            term=7,
            leader_id="5e4f",
            leader_address="10.0.0.1:8300",
            prev_log_index=41,
            prev_log_term=7,
            entries=(LogEntry(index=42, term=7, data=b"..."),),
            leader_commit=41,
        )
        self.assertEqual(
            encode_message(message),
            {
                "type": "AppendEntries",
                "term": 7,
                "leader_id": "5e4f",
                "leader_address": "10.0.0.1:8300",
                "prev_log_index": 41,
                "prev_log_term": 7,
                "entries": [
                    {"index": 42, "term": 7, "type": "command", "data": b"...", "servers": []}
                ],
                "leader_commit": 41,
                "seq": 0,
            },
        )

    def test_defaulted_fields_may_be_left_out(self) -> None:
        wire = {
            "type": "AppendEntries",
            "term": 7,
            "leader_id": "a1",
            "leader_address": "10.0.0.1:8300",
            "prev_log_index": 0,
            "prev_log_term": 0,
            "entries": [{"index": 1, "term": 7}],
        }
        self.assertEqual(
            decode_message(wire),
            AppendEntries(
                term=7,
                leader_id="a1",
                leader_address="10.0.0.1:8300",
                prev_log_index=0,
                prev_log_term=0,
                entries=(LogEntry(index=1, term=7),),
            ),
        )

    def test_limits_are_inclusive(self) -> None:
        big = AppendEntries(
            term=U64,
            leader_id="x" * MAX_TEXT,
            leader_address="",
            prev_log_index=0,
            prev_log_term=0,
            entries=(LogEntry(index=1, term=1),) * MAX_ENTRIES,
        )
        self.assertEqual(through_the_wire(big), big)
        snapshot = attrs.evolve(SAMPLES["InstallSnapshot"], servers=CONFIG[:1] * MAX_SERVERS)
        self.assertEqual(through_the_wire(snapshot), snapshot)


class JunkTests(SynchronousTestCase):
    def assertRejected(self, value: Any, *fragments: str) -> str:
        with self.assertRaises(FrameError) as caught:
            decode_message(value)
        text = str(caught.exception)
        self.assertNotIn("\n", text)
        for fragment in fragments:
            self.assertIn(fragment, text)
        return text

    @settings(max_examples=300, deadline=None)
    @given(wire_values)
    def test_random_values(self, value: Any) -> None:
        try:
            decoded = decode_message(value)
        except FrameError:
            return
        self.assertIn(type(decoded), MESSAGE_CLASSES)  # junk that happens to be well formed

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(sorted(SAMPLES)), st.data())
    def test_random_field_values(self, name: str, data: st.DataObject) -> None:
        """The right keys with arbitrary values: FrameError or a well-typed message."""
        keys = [key for key in encode_message(SAMPLES[name]) if key != "type"]
        wire = {key: data.draw(field_values, label=key) for key in keys}
        wire["type"] = name
        try:
            decoded = decode_message(wire)
        except FrameError:
            return
        self.assertEqual(through_the_wire(decoded), decoded)

    def test_each_field_given_a_wrong_value(self) -> None:
        """Every field, nested ones included, with every wrong kind of value: the field is named."""
        checked = 0
        for name, sample in SAMPLES.items():
            wire = encode_message(sample)
            for path, field_kind in paths(sample):
                for bad in WRONG[field_kind]:
                    with self.subTest(field=where(name, path), value=bad):
                        self.assertRejected(replaced(wire, path, bad), where(name, path))
                        checked += 1
        self.assertGreater(checked, 400)

    def test_missing_required_fields(self) -> None:
        for name, sample in SAMPLES.items():
            wire = encode_message(sample)
            for field in attrs.fields(type(sample)):
                if field.default is attrs.NOTHING:
                    broken = {k: v for k, v in wire.items() if k != field.name}
                    self.assertRejected(broken, f"{name}: missing field {field.name}")
        entry = encode_message(SAMPLES["AppendEntries"])
        del entry["entries"][0]["index"]
        self.assertRejected(entry, "AppendEntries.entries[0]: missing field index")
        server = encode_message(SAMPLES["InstallSnapshot"])
        del server["servers"][1]["address"]
        self.assertRejected(server, "InstallSnapshot.servers[1]: missing field address")

    def test_extra_fields(self) -> None:
        wire = encode_message(SAMPLES["TimeoutNow"])
        self.assertRejected({**wire, "extra": 1}, "TimeoutNow: unexpected field extra")
        self.assertRejected({**wire, 1: 1}, "TimeoutNow: unexpected field 1")
        self.assertRejected({**wire, b"term": 1}, "unexpected field b'term'")
        nested = encode_message(SAMPLES["AppendEntries"])
        nested["entries"][1]["servers"][0]["port"] = 8300
        self.assertRejected(nested, "AppendEntries.entries[1].servers[0]: unexpected field port")

    def test_type(self) -> None:
        wire = encode_message(SAMPLES["TimeoutNow"])
        self.assertRejected({**wire, "type": "Shutdown"}, "unknown type Shutdown")
        self.assertRejected({**wire, "type": b"TimeoutNow"}, "type must be a string")
        self.assertRejected({**wire, "type": "LogEntry"}, "unknown type LogEntry")
        self.assertRejected({**wire, "type": "Server"}, "unknown type Server")
        self.assertRejected({k: v for k, v in wire.items() if k != "type"}, "type")
        self.assertRejected([wire], "expected a map, got array")
        self.assertRejected(None, "expected a map, got nil")
        self.assertRejected("TimeoutNow", "expected a map, got string")

    def test_oversize_lists(self) -> None:
        wire = encode_message(SAMPLES["AppendEntries"])
        wire["entries"] = [{"index": 1, "term": 1}] * (MAX_ENTRIES + 1)
        self.assertRejected(wire, "AppendEntries.entries", f"more than {MAX_ENTRIES}")
        wire = encode_message(SAMPLES["InstallSnapshot"])
        wire["servers"] = [{"id": "a", "address": "b"}] * (MAX_SERVERS + 1)
        self.assertRejected(wire, "InstallSnapshot.servers", f"more than {MAX_SERVERS}")


class EncodeChecksTests(SynchronousTestCase):
    """The sender refuses what its peer would refuse: one message lost, not the stream."""

    def test_not_a_message(self) -> None:
        for value in (object(), {"type": "TimeoutNow"}, LogEntry(index=1, term=1), None):
            with self.assertRaises(FrameError):
                encode_message(value)  # type: ignore[arg-type]

    def test_subclass_is_not_a_message(self) -> None:
        @attrs.frozen(kw_only=True)
        class Sneaky(TimeoutNow):
            pass

        with self.assertRaises(FrameError):
            encode_message(Sneaky(term=1, leader_id="a", leader_address="b"))

    def test_bad_field_values(self) -> None:
        cases: list[tuple[Any, str]] = [
            (attrs.evolve(SAMPLES["TimeoutNow"], term=-1), "TimeoutNow.term"),
            (attrs.evolve(SAMPLES["TimeoutNow"], term=True), "TimeoutNow.term"),
            (attrs.evolve(SAMPLES["RequestVote"], pre_vote=1), "RequestVote.pre_vote"),
            (attrs.evolve(SAMPLES["InstallSnapshot"], data="text"), "InstallSnapshot.data"),
            (
                attrs.evolve(
                    SAMPLES["AppendEntries"],
                    entries=(LogEntry(index=1, term=1, type="command"),),  # type: ignore[arg-type]
                ),
                "AppendEntries.entries[0].type",
            ),
            (
                attrs.evolve(SAMPLES["AppendEntries"], entries=(Server(id="a", address="b"),)),  # type: ignore[arg-type]
                "AppendEntries.entries[0]",
            ),
            (
                attrs.evolve(
                    SAMPLES["AppendEntries"],
                    entries=(LogEntry(index=1, term=1),) * (MAX_ENTRIES + 1),
                ),
                f"more than {MAX_ENTRIES}",
            ),
        ]
        for message, fragment in cases:
            with self.subTest(fragment=fragment), self.assertRaises(FrameError) as caught:
                encode_message(message)
            self.assertIn(fragment, str(caught.exception))
