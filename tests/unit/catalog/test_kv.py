"""
The KV store: table semantics (Consul's ``state/kvs.go``), the KVS command
codec, the FSM's answers, the named KVS reads with blocking, and snapshots
of the whole state store.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.catalog.commands import (
    KV_OPS,
    KVS,
    CheckSpec,
    Command,
    CommandDecodeError,
    Deregister,
    NodeSpec,
    Register,
    ServiceSpec,
    TombstoneReap,
    decode_command,
    encode_command,
)
from consul_tw.catalog.fsm import CatalogFSM
from consul_tw.catalog.kv import DirEntry, entry_record
from consul_tw.catalog.reads import READS, Reader, ReadOptions, ReadResult
from consul_tw.catalog.snapshot import SnapshotError
from consul_tw.catalog.store import (
    CHECKS,
    KV_TABLE,
    NODES,
    SERVICES,
    TOMBSTONES,
    KVSError,
    RegistrationError,
    StateStore,
)
from consul_tw.catalog.watch import WatchSet


def kv(op: str, key: str, value: bytes = b"", **extra: Any) -> KVS:
    return KVS(op=op, key=key, value=value, **extra)


class Store:
    """A store driven through the FSM, the way Raft drives it."""

    def __init__(self) -> None:
        self.store = StateStore()
        self.fsm = CatalogFSM(self.store)
        self.index = 0

    def apply(self, command: Command) -> bool:
        self.index += 1
        return self.fsm.apply(self.index, encode_command(command))


# -- the table -----------------------------------------------------------------------


class SetAndGetTests(SynchronousTestCase):
    def test_set_creates_then_modifies(self) -> None:
        s = Store()
        self.assertTrue(s.apply(kv("set", "a", b"1", flags=42)))
        s.apply(kv("set", "a", b"2"))
        index, entry = s.store.kv_get("a")
        self.assertEqual(
            entry,
            DirEntry(key="a", value=b"2", flags=0, create_index=1, modify_index=2),
        )
        self.assertEqual(index, 2)
        self.assertEqual(s.store.max_index(KV_TABLE), 2)

    def test_identical_write_changes_nothing(self) -> None:
        """Consul's DirEntry.Equal: same value and flags keep the indexes."""
        s = Store()
        s.apply(kv("set", "a", b"1", flags=3))
        heard: list[int] = []
        s.store.listeners.append(lambda: heard.append(1))
        self.assertTrue(s.apply(kv("set", "a", b"1", flags=3)))
        self.assertEqual(
            s.store.kv_get("a")[1],
            DirEntry(key="a", value=b"1", flags=3, create_index=1, modify_index=1),
        )
        self.assertEqual((s.store.max_index(KV_TABLE), heard), (1, []))

    def test_keys_are_case_sensitive_and_kept_in_byte_order(self) -> None:
        s = Store()
        for key in ["b", "B", "a/é", "a/z", "a/", "a"]:
            s.apply(kv("set", key))
        _, entries = s.store.kv_list("")
        self.assertEqual([e.key for e in entries], ["B", "a", "a/", "a/z", "a/é", "b"])
        self.assertIsNone(s.store.kv_get("A")[1])

    def test_kv_writes_leave_catalog_indexes_alone(self) -> None:
        s = Store()
        s.apply(kv("set", "a"))
        self.assertEqual([s.store.max_index(t) for t in (NODES, SERVICES, CHECKS)], [0, 0, 0])
        self.assertEqual(s.store.max_index(), 1)


class CasTests(SynchronousTestCase):
    def test_cas_zero_creates_only_if_absent(self) -> None:
        s = Store()
        self.assertTrue(s.apply(kv("cas", "a", b"1", cas=0)))
        self.assertFalse(s.apply(kv("cas", "a", b"2", cas=0)))
        self.assertEqual(s.store.kv_get("a")[1].value, b"1")  # type: ignore[union-attr]

    def test_cas_needs_the_current_modify_index(self) -> None:
        s = Store()
        s.apply(kv("set", "a", b"1"))
        self.assertFalse(s.apply(kv("cas", "a", b"2", cas=7)))
        self.assertTrue(s.apply(kv("cas", "a", b"3", cas=1)))
        self.assertEqual(s.store.kv_get("a")[1].modify_index, 3)  # type: ignore[union-attr]

    def test_cas_on_a_missing_key_with_an_index_fails(self) -> None:
        s = Store()
        self.assertFalse(s.apply(kv("cas", "nope", b"x", cas=5)))
        self.assertEqual(s.store.max_index(), 0)

    def test_delete_cas(self) -> None:
        s = Store()
        s.apply(kv("set", "a"))
        self.assertFalse(s.apply(kv("delete-cas", "a", cas=9)))
        self.assertIsNotNone(s.store.kv_get("a")[1])
        self.assertTrue(s.apply(kv("delete-cas", "a", cas=1)))
        self.assertIsNone(s.store.kv_get("a")[1])

    def test_delete_cas_of_a_missing_key_succeeds(self) -> None:
        """Consul's kvsDeleteCASTxn answers ``entry == nil`` when nothing is there."""
        self.assertTrue(Store().apply(kv("delete-cas", "gone", cas=3)))


class DeleteAndTombstoneTests(SynchronousTestCase):
    def test_delete_always_answers_true(self) -> None:
        s = Store()
        self.assertTrue(s.apply(kv("delete", "never-there")))
        self.assertEqual(s.store.max_index(), 0, "deleting nothing changes nothing")

    def test_delete_leaves_a_tombstone_so_the_index_never_goes_back(self) -> None:
        s = Store()
        s.apply(kv("set", "app/a"))  # 1
        s.apply(kv("set", "other"))  # 2
        s.apply(kv("set", "app/b"))  # 3
        self.assertEqual(s.store.kv_list("app/")[0], 3)
        s.apply(kv("delete", "app/b"))  # 4
        index, entries = s.store.kv_list("app/")
        self.assertEqual(([e.key for e in entries], index), (["app/a"], 4))
        self.assertEqual(s.store.max_index(KV_TABLE, TOMBSTONES), 4)
        self.assertEqual(s.store.kv_get("app/b"), (4, None))

    def test_missing_prefix_reports_the_table_index(self) -> None:
        s = Store()
        self.assertEqual(s.store.kv_list("x/"), (0, []))
        s.apply(kv("set", "a"))
        s.apply(kv("set", "b"))
        self.assertEqual(s.store.kv_list("x/"), (2, []))
        self.assertEqual(s.store.kv_keys("x/"), (2, []))
        self.assertEqual(s.store.kv_get("x"), (2, None))

    def test_empty_prefix_reports_the_table_index(self) -> None:
        s = Store()
        s.apply(kv("set", "a"))
        s.apply(kv("set", "b"))
        s.apply(kv("delete", "b"))
        self.assertEqual(s.store.kv_list("")[0], 3)

    def test_delete_tree_leaves_one_tombstone_at_the_prefix(self) -> None:
        s = Store()
        for key in ("t/a", "t/b/c", "u"):
            s.apply(kv("set", key))
        self.assertTrue(s.apply(kv("delete-tree", "t/")))  # 4
        self.assertEqual([e.key for e in s.store.kv_list("")[1]], ["u"])
        self.assertEqual(s.store.kv_list("t/"), (4, []))
        self.assertEqual(s.store.max_index(TOMBSTONES), 4)
        self.assertTrue(s.apply(kv("delete-tree", "nothing/")))
        self.assertEqual(s.store.max_index(), 4)

    def test_delete_tree_of_everything_needs_no_tombstone(self) -> None:
        s = Store()
        s.apply(kv("set", "a"))
        s.apply(kv("delete-tree", ""))
        self.assertEqual(
            (s.store.kv_list(""), s.store.max_index(KV_TABLE), s.store.max_index(TOMBSTONES)),
            ((2, []), 2, 0),
        )

    def test_reaping_keeps_table_indexes(self) -> None:
        s = Store()
        s.apply(kv("set", "a/x"))  # 1
        s.apply(kv("delete", "a/x"))  # 2
        s.apply(kv("set", "b"))  # 3
        s.apply(kv("delete", "b"))  # 4
        self.assertTrue(s.apply(TombstoneReap(reap_index=2)))  # 5, reaps a/x only
        self.assertEqual(s.store.kv_list("b")[0], 4)
        self.assertEqual(s.store.kv_list("a/")[0], 4, "falls back to the table index")
        s.store.reap_tombstones(10)
        self.assertEqual(s.store.kv_list("b")[0], 4)
        self.assertEqual(s.store.max_index(TOMBSTONES), 4)


class KeysTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Store()
        for key in ["web/a", "web/b/c", "web/b/d", "web/bz", "web/", "x/y/z"]:
            self.s.apply(kv("set", key))

    def test_without_separator_every_key(self) -> None:
        self.assertEqual(
            self.s.store.kv_keys("web/"), (5, ["web/", "web/a", "web/b/c", "web/b/d", "web/bz"])
        )

    def test_separator_collapses_below_the_prefix(self) -> None:
        self.assertEqual(
            self.s.store.kv_keys("web/", "/")[1], ["web/", "web/a", "web/b/", "web/bz"]
        )
        self.assertEqual(self.s.store.kv_keys("", "/")[1], ["web/", "x/"])
        self.assertEqual(self.s.store.kv_keys("web/b", "/")[1], ["web/b/", "web/bz"])

    def test_index_is_the_newest_key_under_the_prefix(self) -> None:
        self.assertEqual(self.s.store.kv_keys("web/b/")[0], 3)
        self.assertEqual(self.s.store.kv_keys("", "/")[0], 6)


class LockTests(SynchronousTestCase):
    """Sessions do not exist yet: locks answer as Consul does for an unknown session."""

    def test_acquire_with_an_unknown_session_is_an_error(self) -> None:
        s = Store()
        with self.assertRaises(KVSError) as caught:
            s.apply(kv("lock", "k", b"v", session="adf4238a"))
        self.assertEqual(str(caught.exception), 'invalid session "adf4238a"')
        self.assertIsInstance(caught.exception, RegistrationError, "answered as a 500")
        self.assertIsNone(s.store.kv_get("k")[1])

    def test_lock_and_unlock_without_a_session(self) -> None:
        s = Store()
        for op in ("lock", "unlock"):
            with self.assertRaises(KVSError) as caught:
                s.apply(kv(op, "k"))
            self.assertEqual(str(caught.exception), "missing session")

    def test_release_of_a_key_not_held_is_false(self) -> None:
        s = Store()
        s.apply(kv("set", "k", b"v"))
        self.assertFalse(s.apply(kv("unlock", "k", session="adf4238a")))
        self.assertFalse(s.apply(kv("unlock", "nope", session="adf4238a")))
        self.assertEqual(s.store.max_index(), 1)


# -- the command codec -----------------------------------------------------------------

uint64 = st.integers(min_value=0, max_value=2**64 - 1)
kvs_commands = st.builds(
    KVS,
    op=st.sampled_from(KV_OPS),
    key=st.text(max_size=20),
    value=st.binary(max_size=64),
    flags=uint64,
    cas=uint64,
    session=st.text(max_size=10),
)


class CodecTests(SynchronousTestCase):
    @given(kvs_commands)
    def test_kvs_round_trip(self, command: KVS) -> None:
        self.assertEqual(decode_command(encode_command(command)), command)

    @given(uint64)
    def test_reap_round_trip(self, index: int) -> None:
        command = TombstoneReap(reap_index=index)
        self.assertEqual(decode_command(encode_command(command)), command)

    def test_junk_fields_are_refused(self) -> None:
        good = {"op": "set", "key": "k", "value": b"v", "flags": 0, "cas": 0, "session": ""}
        bad_fields: list[dict[str, Any]] = [
            {**good, "op": "explode"},
            {**good, "key": 5},
            {**good, "value": "text, not bytes"},
            {**good, "flags": -1},
            {**good, "flags": 1.5},
            {**good, "cas": True},
            {**good, "session": None},
            {**good, "extra": 1},
            {k: v for k, v in good.items() if k != "cas"},
        ]
        for fields in bad_fields:
            raw = msgpack.packb(["kvs", 1, fields], use_bin_type=True)
            self.assertRaises(CommandDecodeError, decode_command, raw)
        for raw in (
            msgpack.packb(["kvs", 1, ["op"]]),
            msgpack.packb(["tombstone-reap", 1, {"reap_index": "1"}]),
            msgpack.packb(["tombstone-reap", 1, {}]),
        ):
            self.assertRaises(CommandDecodeError, decode_command, raw)

    @given(
        st.dictionaries(
            st.sampled_from(["op", "key", "value", "flags", "cas", "session", "x"]),
            st.none()
            | st.integers(-(2**63), 2**64 - 1)
            | st.text(max_size=4)
            | st.binary(max_size=4),
        )
    )
    def test_random_kvs_fields_decode_or_are_refused(self, fields: dict[str, Any]) -> None:
        try:
            command = decode_command(msgpack.packb(["kvs", 1, fields], use_bin_type=True))
        except CommandDecodeError:
            return
        self.assertIsInstance(command, KVS)
        self.assertEqual(decode_command(encode_command(command)), command)


# -- the named reads -------------------------------------------------------------------


class ReadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Store()
        self.clock = Clock()
        self.watches = WatchSet(self.clock)
        self.s.store.listeners.append(self.watches.notify)
        self.reader = Reader(
            store=self.s.store,
            known_leader=lambda: True,
            last_contact_ms=lambda: 0,
            wait_for_change=self.watches.wait,
            seconds=self.clock.seconds,
            rng=random.Random(1),
        )

    def read(self, name: str, args: dict[str, Any], index: int = 0) -> Deferred[ReadResult]:
        return self.reader.read(name, args, ReadOptions(index=index, wait=10.0))

    def test_get_answers_entries_with_the_entry_index(self) -> None:
        self.s.apply(kv("set", "a", b"\x00\xff", flags=7))
        self.s.apply(kv("set", "b"))
        result = self.successResultOf(self.read("KVS.Get", {"key": "a"}))
        self.assertEqual(result.index, 1)
        self.assertEqual(
            result.value,
            [
                {
                    "LockIndex": 0,
                    "Key": "a",
                    "Flags": 7,
                    "Value": b"\x00\xff",
                    "CreateIndex": 1,
                    "ModifyIndex": 1,
                }
            ],
        )
        missing = self.successResultOf(self.read("KVS.Get", {"key": "zz"}))
        self.assertEqual((missing.value, missing.index), ([], 2))

    def test_reads_survive_the_rpc_encoding(self) -> None:
        """Forwarded reads go through msgpack: values stay bytes, the shape stays the same."""
        self.s.apply(kv("set", "k/1", b"one"))
        for name, args in (
            ("KVS.Get", {"key": "k/1"}),
            ("KVS.List", {"prefix": "k/"}),
            ("KVS.ListKeys", {"prefix": "", "separator": "/"}),
        ):
            result = self.successResultOf(self.read(name, args))
            wire = msgpack.unpackb(msgpack.packb(result.to_wire(), use_bin_type=True), raw=False)
            self.assertEqual(ReadResult.from_wire(wire), result)

    def test_empty_store_reports_index_one(self) -> None:
        self.assertEqual(self.successResultOf(self.read("KVS.List", {"prefix": ""})).index, 1)

    def test_blocking_get_ignores_other_keys(self) -> None:
        self.s.apply(kv("set", "watched", b"1"))  # 1
        pending = self.read("KVS.Get", {"key": "watched"}, index=1)
        self.s.apply(kv("set", "elsewhere"))  # 2: wakes the watch, the answer waits on
        self.clock.advance(0)
        self.assertNoResult(pending)
        self.s.apply(kv("set", "watched", b"2"))  # 3
        self.clock.advance(0)
        result = self.successResultOf(pending)
        self.assertEqual((result.index, result.value[0]["Value"]), (3, b"2"))

    def test_blocking_list_wakes_on_a_delete_under_the_prefix(self) -> None:
        self.s.apply(kv("set", "p/a"))  # 1
        self.s.apply(kv("set", "p/b"))  # 2
        pending = self.read("KVS.List", {"prefix": "p/"}, index=2)
        self.s.apply(kv("delete", "p/b"))  # 3
        self.clock.advance(0)
        result = self.successResultOf(pending)
        self.assertEqual((result.index, [e["Key"] for e in result.value]), (3, ["p/a"]))

    def test_blocking_read_times_out_with_the_same_index(self) -> None:
        self.s.apply(kv("set", "k"))
        pending = self.read("KVS.ListKeys", {"prefix": "k"}, index=1)
        self.clock.advance(10 + 10 / 16)
        self.assertEqual(self.successResultOf(pending).index, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_catalog_reads_keep_their_table_index(self) -> None:
        self.s.apply(kv("set", "k"))
        self.s.apply(Register(node=NodeSpec(id="", node="n", address="1.1.1.1", datacenter="d")))
        self.s.apply(kv("set", "k2"))
        result = self.successResultOf(self.read("Catalog.ListNodes", {}))
        self.assertEqual(result.index, 2)

    def test_entry_record_shows_a_held_session(self) -> None:
        entry = DirEntry(key="k", session="s", lock_index=1, create_index=2, modify_index=3)
        self.assertEqual(
            list(entry_record(entry)),
            ["LockIndex", "Key", "Flags", "Value", "Session", "CreateIndex", "ModifyIndex"],
        )


# -- snapshots ---------------------------------------------------------------------------


def every_read(store: StateStore) -> dict[str, Any]:
    """The value and index of every named read, over the names the store holds."""
    answers: dict[str, Any] = {}
    names = [n.node for n in store.nodes()] + ["nobody"]
    keys = [e.key for e in store.kv_list("")[1]] + ["", "a", "a/", "zz"]
    for name, (tables, produce) in READS.items():
        for args in (
            [{"node": n} for n in names]
            + [{"service": "web"}, {"service": "db"}, {}]
            + [{"key": k, "prefix": k, "separator": "/"} for k in keys]
        ):
            answers[f"{name} {sorted(args.items())}"] = (
                produce(store, args),
                store.max_index(*tables),
            )
    return answers


def node(name: str, **extra: Any) -> NodeSpec:
    return NodeSpec(id=f"id-{name}", node=name, address="10.0.0.1", datacenter="dc1", **extra)


def populated() -> Store:
    s = Store()
    s.apply(
        Register(
            node=node("Web1", tagged_addresses={"lan": "10.0.0.1"}, meta={"rack": "r1"}),
            service=ServiceSpec(id="web", service="web", tags=("v1", "primary"), port=80),
            checks=(
                CheckSpec(check_id="serfHealth", name="Serf", status="passing"),
                CheckSpec(check_id="web-http", name="HTTP", status="warning", service_id="web"),
            ),
        )
    )
    s.apply(Register(node=node("db1"), service=ServiceSpec(id="db", service="db", meta={"a": "b"})))
    s.apply(kv("set", "a/1", b"one", flags=5))
    s.apply(kv("set", "a/2", b""))
    s.apply(kv("set", "b", bytes(range(256))))
    s.apply(kv("delete", "a/2"))
    s.apply(Deregister(node="db1", service_id="db"))
    return s


class SnapshotTests(SynchronousTestCase):
    def test_restore_gives_identical_reads_and_indexes(self) -> None:
        original = populated().store
        copy = StateStore()
        copy.restore(original.snapshot())
        self.assertEqual(every_read(copy), every_read(original))
        self.assertEqual(
            [copy.max_index(t) for t in (NODES, SERVICES, CHECKS, KV_TABLE, TOMBSTONES)],
            [original.max_index(t) for t in (NODES, SERVICES, CHECKS, KV_TABLE, TOMBSTONES)],
        )
        self.assertEqual(copy.kv_list("a/"), original.kv_list("a/"))
        self.assertEqual(copy.snapshot(), original.snapshot())

    def test_restore_replaces_everything_and_tells_the_listeners(self) -> None:
        target = populated().store
        heard: list[int] = []
        target.listeners.append(lambda: heard.append(target.max_index()))
        target.restore(StateStore().snapshot())
        self.assertEqual((target.nodes(), target.kv_list("")), ([], (0, [])))
        self.assertEqual(heard, [0])
        self.assertEqual(len(target.listeners), 1)

    def test_junk_is_refused_and_changes_nothing(self) -> None:
        store = populated().store
        before = store.snapshot()
        good = msgpack.unpackb(before, raw=False)
        bad_bodies: list[Any] = [
            {**good, "version": 2},
            {**good, "format": "something-else"},
            {**good, "indexes": {"sessions": 1}},
            {**good, "indexes": {"kvs": -1}},
            {**good, "kvs": [{**good["kvs"][0], "value": "text"}]},
            {**good, "kvs": [{**good["kvs"][0], "flags": 1.5}]},
            {**good, "nodes": [{**good["nodes"][0], "meta": {"a": 1}}]},
            {**good, "nodes": [{**good["nodes"][0], "extra": 1}]},
            {**good, "services": [["web1", {**good["services"][0][1], "tags": "v1"}]]},
            {**good, "checks": [["web1"]]},
            {**good, "tombstones": [["a/2", "7"]]},
            {k: v for k, v in good.items() if k != "checks"},
            [1, 2, 3],
        ]
        for body in bad_bodies:
            data = msgpack.packb(body, use_bin_type=True)
            self.assertRaises(SnapshotError, store.restore, data)
        for data in (b"", b"\xc1", b"junk", before[:-3]):
            self.assertRaises(SnapshotError, store.restore, data)
        self.assertIsInstance(SnapshotError("x"), ValueError)
        self.assertEqual(store.snapshot(), before)

    def test_fsm_delegates(self) -> None:
        s = populated()
        fresh = CatalogFSM(StateStore())
        fresh.restore(s.fsm.snapshot())
        self.assertEqual(fresh.snapshot(), s.fsm.snapshot())


# Commands over a few names, so that sequences collide, overwrite and delete.
_names = st.sampled_from(["n1", "N1", "n2"])
_keys = st.sampled_from(["", "a", "a/", "a/b", "a/b/c", "b"])
_commands = st.one_of(
    st.builds(
        Register,
        node=st.builds(
            NodeSpec,
            id=st.sampled_from(["", "id-1"]),
            node=_names,
            address=st.sampled_from(["10.0.0.1", "10.0.0.2", ""]),
            datacenter=st.just("dc1"),
            meta=st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"])),
        ),
        service=st.none()
        | st.builds(
            ServiceSpec,
            id=st.sampled_from(["web", "db"]),
            service=st.sampled_from(["web", "db", ""]),
            tags=st.lists(st.sampled_from(["x", "y"]), max_size=2),
            port=st.integers(0, 3),
        ),
        checks=st.lists(
            st.builds(
                CheckSpec,
                check_id=st.sampled_from(["c1", "c2"]),
                name=st.just("C"),
                status=st.sampled_from(["passing", "critical"]),
                service_id=st.sampled_from(["", "web", "nope"]),
            ),
            max_size=2,
        ),
        skip_node_update=st.booleans(),
    ),
    st.builds(
        Deregister,
        node=_names,
        service_id=st.none() | st.sampled_from(["web", "db"]),
        check_id=st.none() | st.sampled_from(["c1", "c2"]),
    ),
    st.builds(
        KVS,
        op=st.sampled_from(KV_OPS),
        key=_keys,
        value=st.sampled_from([b"", b"x", b"y"]),
        flags=st.integers(0, 2),
        cas=st.integers(0, 8),
        session=st.sampled_from(["", "s1"]),
    ),
    st.builds(TombstoneReap, reap_index=st.integers(0, 12)),
)


def _apply(fsm: CatalogFSM, index: int, command: Command) -> object:
    try:
        return fsm.apply(index, encode_command(command))
    except RegistrationError as e:
        return type(e)


class SnapshotPropertyTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(_commands, max_size=25), st.data())
    def test_snapshot_then_the_rest_equals_applying_everything(
        self, commands: list[Command], data: st.DataObject
    ) -> None:
        split = data.draw(st.integers(0, len(commands)), label="split")
        a = CatalogFSM(StateStore())
        answers_a = [_apply(a, i, c) for i, c in enumerate(commands, start=1)]
        before = CatalogFSM(StateStore())
        for i, c in enumerate(commands[:split], start=1):
            _apply(before, i, c)
        b = CatalogFSM(StateStore())
        b.restore(before.snapshot())
        answers_b = [_apply(b, i, c) for i, c in enumerate(commands[split:], start=split + 1)]
        self.assertEqual(answers_b, answers_a[split:])
        self.assertEqual(b.snapshot(), a.snapshot())
        self.assertEqual(every_read(b.store), every_read(a.store))
