"""
Raft storage: the in-memory stores, the SQLite log/stable store and the snapshot files.

The ILogStore/IStableStore contract runs against both implementations; the
rest is about what only a durable store has to get right: what survives a
close or a crash, and what happens when the bytes on disk are damaged.
Log lines are captured as a user would see them, through HclogObserver.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

from consul_tw._logging import HcLogger, HclogObserver
from consul_tw.raft.messages import EntryType, LogEntry, Server
from consul_tw.raft.storage.interfaces import ILogStore, IStableStore, SnapshotMeta
from consul_tw.raft.storage.memory import MemoryLogStore, MemoryStableStore
from consul_tw.raft.storage.snapshots import TEMP_SUFFIX, FileSnapshotStore
from consul_tw.raft.storage.sqlite import SqliteRaftStore, StorageError

LOGGER = HcLogger("agent.server.raft")
SERVERS = (Server(id="n1", address="10.0.0.1:8300"), Server(id="n2", address="10.0.0.2:8300"))


def entry(index: int, term: int = 1, data: bytes | None = None) -> LogEntry:
    return LogEntry(index=index, term=term, data=data if data is not None else b"cmd%d" % index)


def run(first: int, last: int, term: int = 1) -> list[LogEntry]:
    return [entry(i, term) for i in range(first, last + 1)]


def all_types() -> list[LogEntry]:
    return [
        LogEntry(index=1, term=1, type=EntryType.CONFIGURATION, servers=SERVERS),
        LogEntry(index=2, term=2, type=EntryType.NOOP),
        LogEntry(index=3, term=2, type=EntryType.COMMAND, data=b"\x00\xff binary \x80"),
        LogEntry(index=4, term=2, type=EntryType.COMMAND, data=b""),
        LogEntry(index=5, term=3, type=EntryType.CONFIGURATION, servers=SERVERS[:1]),
        LogEntry(index=6, term=3, data=bytes(range(256)) * 64),
    ]


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """hclog lines at ERROR and above, rendered as the agent would print them."""
    out = io.StringIO()
    observer = HclogObserver(out, level="ERROR", buffer_until_banner=False)
    globalLogPublisher.addObserver(observer)
    yield out
    globalLogPublisher.removeObserver(observer)


def error_lines(out: io.StringIO) -> list[str]:
    return [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to a closed store's file, to damage it as a disk would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


# -- the contract, for both implementations -----------------------------------


@attrs.define
class Stores:
    log: ILogStore
    stable: IStableStore


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "memory":
        yield Stores(MemoryLogStore(), MemoryStableStore())
        return
    store = SqliteRaftStore.open(tmp_path / "raft" / "raft.db", LOGGER)
    yield Stores(store, store)
    store.close()


def test_contract_empty(stores: Stores) -> None:
    assert tuple(stores.log.entries()) == ()
    assert stores.stable.load_hard_state() == (0, None)


def test_contract_append_all_types(stores: Stores) -> None:
    stores.log.append(all_types()[:2])
    stores.log.append(all_types()[2:])
    stores.log.sync()
    assert list(stores.log.entries()) == all_types()


def test_contract_gap_is_refused(stores: Stores) -> None:
    stores.log.append(run(1, 3))
    with pytest.raises(ValueError, match="log gap"):
        stores.log.append([entry(5)])
    assert [e.index for e in stores.log.entries()] == [1, 2, 3]


def test_contract_truncate_after(stores: Stores) -> None:
    stores.log.append(run(1, 5))
    stores.log.truncate_after(3)
    stores.log.append(run(4, 6, term=2))
    stores.log.truncate_after(10)
    assert list(stores.log.entries()) == run(1, 3) + run(4, 6, term=2)
    stores.log.truncate_after(0)
    assert tuple(stores.log.entries()) == ()


def test_contract_delete_through(stores: Stores) -> None:
    stores.log.append(run(1, 5))
    stores.log.delete_through(2)
    stores.log.delete_through(1)
    assert list(stores.log.entries()) == run(3, 5)
    stores.log.append(run(6, 7))
    stores.log.delete_through(9)
    assert tuple(stores.log.entries()) == ()
    # Behind a snapshot, an empty log may continue at any index.
    stores.log.append(run(10, 11))
    assert list(stores.log.entries()) == run(10, 11)


def test_contract_hard_state(stores: Stores) -> None:
    stores.stable.save_hard_state(3, "n2")
    stores.stable.save_hard_state(4, None)
    stores.stable.sync()
    assert stores.stable.load_hard_state() == (4, None)


# -- SqliteRaftStore: durability ----------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "raft" / "raft.db"


def reopen(store: SqliteRaftStore) -> SqliteRaftStore:
    store.close()
    return SqliteRaftStore.open(store.path, LOGGER)


def test_round_trip_across_reopen(db: Path) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    store.save_hard_state(7, "n2")
    store.append(all_types())
    store.sync()
    store = reopen(store)
    assert store.load_hard_state() == (7, "n2")
    assert list(store.entries()) == all_types()
    assert list(store.entries()) == all_types()  # read again after the hand-over
    assert (store.first_index(), store.last_index()) == (1, 6)
    store.close()


def test_unsynced_writes_do_not_survive(db: Path) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    store.save_hard_state(2, "n1")
    store.append(run(1, 3))
    store.sync()
    store.save_hard_state(3, "n3")
    store.append(run(4, 5))
    store.truncate_after(1)
    store.delete_through(1)
    assert store.pending
    store = reopen(store)  # close without sync: as a crash
    assert store.load_hard_state() == (2, "n1")
    assert list(store.entries()) == run(1, 3)
    store.close()


def test_unsynced_writes_do_not_survive_process_death(db: Path) -> None:
    """A real crash: the child dies with os._exit while a transaction is open."""
    child = textwrap.dedent(
        f"""
        import os
        from consul_tw.raft.messages import LogEntry
        from consul_tw.raft.storage.sqlite import SqliteRaftStore
        store = SqliteRaftStore.open({str(db)!r})
        store.save_hard_state(2, "n1")
        store.append([LogEntry(index=i, term=1) for i in (1, 2, 3)])
        store.sync()
        store.save_hard_state(3, "n3")
        store.append([LogEntry(index=i, term=3) for i in (4, 5)])
        os._exit(0)
        """
    )
    root = str(Path(__file__).parents[3])
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", child], check=True, cwd=root, env=env)
    store = SqliteRaftStore.open(db, LOGGER)
    assert store.load_hard_state() == (2, "n1")
    assert list(store.entries()) == [LogEntry(index=i, term=1) for i in (1, 2, 3)]
    store.close()


def test_a_batch_is_one_transaction(db: Path) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    store.save_hard_state(2, "n1")
    store.truncate_after(0)
    store.append(run(1, 64))
    store.delete_through(0)
    store.sync()
    store.sync()  # nothing pending: nothing done
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert not store.pending
    store.close()


def test_truncation_and_compaction_survive_reopen(db: Path) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    store.append(run(1, 10))
    store.sync()
    store.truncate_after(8)
    store.delete_through(4)
    store.sync()
    store = reopen(store)
    assert list(store.entries()) == run(5, 8)
    assert (store.first_index(), store.last_index()) == (5, 8)
    store.append(run(9, 9, term=2))
    store.sync()
    store = reopen(store)
    assert [e.index for e in store.entries()] == [5, 6, 7, 8, 9]
    store.close()


def test_second_opener_is_refused(db: Path) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    with pytest.raises(StorageError, match="in use by another process"):
        SqliteRaftStore.open(db, LOGGER)
    store.close()
    SqliteRaftStore.open(db, LOGGER).close()


def test_closed_store_refuses_use(db: Path) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    store.close()
    store.close()
    with pytest.raises(StorageError, match="unusable: closed"):
        store.append(run(1, 1))


def test_index_zero_is_refused(db: Path) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    with pytest.raises(ValueError, match="start at 1"):
        store.append([entry(0)])
    assert not store.pending
    store.close()


def test_failed_write_makes_the_store_unusable(db: Path) -> None:
    """After an I/O error nothing more is trusted: every later call fails, until reopened."""
    store = SqliteRaftStore.open(db, LOGGER)
    store.append(run(1, 2))
    store.sync()
    store._conn.close()  # the next statement fails as a dying disk would make it
    with pytest.raises(StorageError, match="write failed"):
        store.append(run(3, 3))
    with pytest.raises(StorageError, match="unusable: write failed"):
        store.sync()
    store.close()
    store = SqliteRaftStore.open(db, LOGGER)
    assert list(store.entries()) == run(1, 2)
    store.close()


# -- SqliteRaftStore: damage ----------------------------------------------------------


def stored(db: Path, entries: list[LogEntry], hard_state: tuple[int, str] = (3, "n1")) -> None:
    store = SqliteRaftStore.open(db, LOGGER)
    store.save_hard_state(*hard_state)
    store.append(entries)
    store.sync()
    store.close()


def stored_indexes(db: Path) -> list[int]:
    with raw(db) as conn:
        return [i for (i,) in conn.execute("SELECT idx FROM log ORDER BY idx")]


def test_flipped_data_cuts_the_log_there(db: Path, log_lines: io.StringIO) -> None:
    stored(db, run(1, 10))
    with raw(db) as conn:
        (data,) = conn.execute("SELECT data FROM log WHERE idx = 5").fetchone()
        conn.execute("UPDATE log SET data = ? WHERE idx = 5", (bytes([data[0] ^ 0x01]) + data[1:],))
    store = SqliteRaftStore.open(db, LOGGER)
    assert list(store.entries()) == run(1, 4)
    assert store.load_hard_state() == (3, "n1")
    assert error_lines(log_lines) == [
        "[ERROR] agent.server.raft: log entry failed verification, truncating log:"
        ' index=5 reason="checksum mismatch" kept_through=4 dropped=6'
    ]
    store.close()
    # The cut was durable: the damaged rows are gone, and nothing more is reported.
    assert stored_indexes(db) == [1, 2, 3, 4]
    store = SqliteRaftStore.open(db, LOGGER)
    assert list(store.entries()) == run(1, 4)
    assert len(error_lines(log_lines)) == 1
    store.close()


@pytest.mark.parametrize(
    "damage",
    [
        # An intact row of another index: caught only because the index is in the checksum.
        "UPDATE log SET (term, type, data, servers, crc) ="
        " (SELECT term, type, data, servers, crc FROM log WHERE idx = 5) WHERE idx = 6",
        "UPDATE log SET term = term + 1 WHERE idx = 6",
        "UPDATE log SET type = 'noop' WHERE idx = 6",
        "UPDATE log SET crc = crc + 1 WHERE idx = 6",
        "UPDATE log SET type = CAST(x'ff' AS TEXT) WHERE idx = 6",
        "UPDATE log SET data = 42 WHERE idx = 6",
        "UPDATE log SET servers = x'91' WHERE idx = 6",
    ],
)
def test_any_altered_column_is_caught(db: Path, log_lines: io.StringIO, damage: str) -> None:
    stored(db, run(1, 8))
    with raw(db) as conn:
        conn.execute(damage)
    store = SqliteRaftStore.open(db, LOGGER)
    assert list(store.entries()) == run(1, 5)
    assert "index=6" in error_lines(log_lines)[0]
    store.close()


def test_missing_index_cuts_at_the_gap(db: Path, log_lines: io.StringIO) -> None:
    stored(db, run(1, 10))
    with raw(db) as conn:
        conn.execute("DELETE FROM log WHERE idx = 7")
    store = SqliteRaftStore.open(db, LOGGER)
    assert list(store.entries()) == run(1, 6)
    assert store.last_index() == 6
    [line] = error_lines(log_lines)
    assert 'index=7 reason="missing (next stored index is 8)"' in line
    store.close()
    assert stored_indexes(db) == [1, 2, 3, 4, 5, 6]


def test_damaged_first_row_empties_the_log(db: Path, log_lines: io.StringIO) -> None:
    stored(db, run(1, 3))
    with raw(db) as conn:
        conn.execute("UPDATE log SET data = x'00' WHERE idx = 1")
    store = SqliteRaftStore.open(db, LOGGER)
    assert tuple(store.entries()) == ()
    assert (store.first_index(), store.last_index()) == (0, 0)
    store.append(run(1, 1, term=5))  # and the leader can fill it again
    store.sync()
    store.close()
    assert stored_indexes(db) == [1]


def test_garbage_file_is_a_storage_error(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(StorageError, match="not a usable SQLite database") as caught:
        SqliteRaftStore.open(db, LOGGER)
    assert "\n" not in str(caught.value)


def test_other_programs_database_is_refused(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        conn.execute("CREATE TABLE photos (name TEXT)")
    with pytest.raises(StorageError, match="another program"):
        SqliteRaftStore.open(db, LOGGER)


def test_damaged_hard_state_refuses_to_start(db: Path) -> None:
    stored(db, run(1, 2), hard_state=(4, "n2"))
    with raw(db) as conn:
        conn.execute("UPDATE hard_state SET voted_for = 'n3'")
    with pytest.raises(StorageError, match="hard state .* failed its checksum"):
        SqliteRaftStore.open(db, LOGGER)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    damage=st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)),
        min_size=1,
        max_size=4,
    )
)
def test_random_file_damage_never_yields_bad_entries(damage: list[tuple[float, int]]) -> None:
    """XOR bytes anywhere in the file: a StorageError or a verified prefix, never wrong data."""
    original = [entry(i, 1 + i // 20, data=os.urandom(1 + i % 50)) for i in range(1, 120)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "raft.db"
        stored(db, original)
        blob = bytearray(db.read_bytes())
        for where, mask in damage:
            blob[int(where * len(blob))] ^= mask
        db.write_bytes(bytes(blob))
        try:
            store = SqliteRaftStore.open(db, LOGGER)
        except StorageError:
            return
        try:
            got = list(store.entries())
        except StorageError:
            return
        finally:
            store.close()
        assert got == original[: len(got)]


# -- SqliteRaftStore against the in-memory model -----------------------------------

OPERATIONS = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 6), st.integers(0, 2)),
    st.tuples(st.just("truncate_after"), st.integers(0, 40)),
    st.tuples(st.just("delete_through"), st.integers(0, 40)),
    st.tuples(st.just("hard_state"), st.integers(0, 9), st.sampled_from([None, "n1", "n2"])),
    st.just(("sync",)),
    st.just(("reopen",)),
    st.just(("crash",)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(OPERATIONS, max_size=30), data=st.data())
def test_matches_the_memory_store(
    operations: list[tuple[object, ...]], data: st.DataObject
) -> None:
    """
    The SQLite store behaves as MemoryLogStore/MemoryStableStore; after a
    clean reopen it holds what the model holds, after a crash what the model
    held at the last ``sync()``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteRaftStore.open(Path(tmp) / "raft.db", LOGGER)
        model = Model()
        try:
            for operation in operations:
                store = model.apply(store, operation, data)
                assert (store.first_index(), store.last_index()) == model.bounds()
                if operation[0] in ("reopen", "crash"):
                    assert list(store.entries()) == list(model.log.entries())
                    assert store.load_hard_state() == model.stable.load_hard_state()
            assert list(store.entries()) == list(model.log.entries())
        finally:
            store.close()


@attrs.define
class Model:
    """The in-memory stores, plus a copy of them as of the last sync (what a crash keeps)."""

    log: MemoryLogStore = attrs.field(factory=MemoryLogStore)
    stable: MemoryStableStore = attrs.field(factory=MemoryStableStore)
    durable: tuple[tuple[LogEntry, ...], tuple[int, str | None]] = ((), (0, None))
    floor: int = 0

    def bounds(self) -> tuple[int, int]:
        entries = self.log.entries()
        return (entries[0].index, entries[-1].index) if entries else (0, 0)

    def apply(
        self, store: SqliteRaftStore, operation: tuple[object, ...], data: st.DataObject
    ) -> SqliteRaftStore:
        match operation:
            case ("append", int(count), int(bump)):
                new = self.new_entries(count, bump, data)
                self.log.append(new)
                store.append(new)
            case ("truncate_after", int(index)):
                self.log.truncate_after(index)
                store.truncate_after(index)
            case ("delete_through", int(index)):
                self.floor = max(self.floor, index)
                self.log.delete_through(index)
                store.delete_through(index)
            case ("hard_state", int(term), str() | None as vote):
                self.stable.save_hard_state(term, vote)
                store.save_hard_state(term, vote)
            case ("sync",) | ("reopen",):
                store.sync()
                self.durable = (tuple(self.log.entries()), self.stable.load_hard_state())
                if operation[0] == "reopen":
                    store = reopen(store)
            case ("crash",):
                entries, hard_state = self.durable
                self.log = MemoryLogStore(list(entries))
                self.stable = MemoryStableStore(*hard_state)
                store = reopen(store)
            case _:
                raise AssertionError(operation)
        return store

    def new_entries(self, count: int, bump: int, data: st.DataObject) -> list[LogEntry]:
        """``count`` entries after the last (or after the compaction floor), of random types."""
        entries = self.log.entries()
        first = entries[-1].index + 1 if entries else self.floor + 1
        term = (entries[-1].term if entries else 1) + bump
        new = []
        for index in range(first, first + count):
            kind = data.draw(st.sampled_from(list(EntryType)))
            payload = data.draw(st.binary(max_size=16)) if kind is EntryType.COMMAND else b""
            servers = SERVERS if kind is EntryType.CONFIGURATION else ()
            new.append(LogEntry(index=index, term=term, type=kind, data=payload, servers=servers))
        return new


# -- FileSnapshotStore -------------------------------------------------------------------


def meta(index: int, term: int = 2) -> SnapshotMeta:
    return SnapshotMeta(index=index, term=term, servers=SERVERS, configuration_index=1)


@pytest.fixture
def snapshots(tmp_path: Path) -> FileSnapshotStore:
    clock = iter(range(1_000_000, 2_000_000))
    return FileSnapshotStore.open(tmp_path / "raft" / "snapshots", LOGGER, now=lambda: next(clock))


def snap_files(store: FileSnapshotStore) -> list[str]:
    return sorted(p.name for p in store.directory.iterdir())


def test_snapshot_round_trip(snapshots: FileSnapshotStore) -> None:
    assert snapshots.latest() is None
    snapshots.save(meta(10), b"state at 10")
    reopened = FileSnapshotStore.open(snapshots.directory, LOGGER)
    assert reopened.latest() == (attrs.evolve(meta(10), size=11), b"state at 10")
    snapshots.save(meta(20, term=3), b"")
    assert reopened.latest() == (attrs.evolve(meta(20, term=3), size=0), b"")


def test_snapshot_retention_keeps_two(snapshots: FileSnapshotStore) -> None:
    for index in (10, 20, 30, 40):
        snapshots.save(meta(index), b"state %d" % index)
    names = snap_files(snapshots)
    assert [name.split("-")[1] for name in names] == ["30", "40"]
    latest = snapshots.latest()
    assert latest is not None and latest[0].index == 40


def test_snapshot_temp_file_is_ignored_and_cleaned(snapshots: FileSnapshotStore) -> None:
    snapshots.save(meta(10), b"good")
    stray = snapshots.directory / ("2-99-1.snap" + TEMP_SUFFIX)
    stray.write_bytes(b"half a snapshot")
    latest = snapshots.latest()
    assert latest is not None and latest[0].index == 10
    FileSnapshotStore.open(snapshots.directory, LOGGER)
    assert not stray.exists()
    stray.write_bytes(b"half a snapshot")
    snapshots.save(meta(20), b"newer")
    assert not stray.exists()
    assert len(snap_files(snapshots)) == 2


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b[:-1], id="digest-cut"),
        pytest.param(lambda b: b[:20] + bytes([b[20] ^ 0x40]) + b[21:], id="header-bit"),
        pytest.param(lambda b: b[:-40] + bytes([b[-40] ^ 0x01]) + b[-39:], id="data-bit"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_damaged_newest_snapshot_falls_back(
    snapshots: FileSnapshotStore, log_lines: io.StringIO, damage: Callable[[bytes], bytes]
) -> None:
    snapshots.save(meta(10), b"older state " * 10)
    snapshots.save(meta(20), b"newer state " * 10)
    newest = snapshots.snapshot_paths()[0]
    newest.write_bytes(damage(newest.read_bytes()))
    assert snapshots.latest() == (attrs.evolve(meta(10), size=120), b"older state " * 10)
    [line] = error_lines(log_lines)
    assert line.startswith("[ERROR] agent.server.raft: snapshot is damaged, trying an older one:")
    assert newest.name in line


def test_unusable_snapshot_directory(tmp_path: Path) -> None:
    (tmp_path / "snapshots").write_bytes(b"a file, not a directory")
    with pytest.raises(StorageError, match="cannot use snapshot directory"):
        FileSnapshotStore.open(tmp_path / "snapshots", LOGGER)


def test_renamed_snapshot_is_not_trusted(
    snapshots: FileSnapshotStore, log_lines: io.StringIO
) -> None:
    snapshots.save(meta(10), b"state")
    [path] = snapshots.snapshot_paths()
    path.rename(path.with_name("2-50-1.snap"))
    assert snapshots.latest() is None
    assert "unlike its name" in error_lines(log_lines)[0]


def test_failed_snapshot_save_leaves_nothing(
    snapshots: FileSnapshotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots.save(meta(10), b"good")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        snapshots.save(meta(20), b"never")
    monkeypatch.undo()
    assert len(snap_files(snapshots)) == 1
    latest = snapshots.latest()
    assert latest is not None and latest[1] == b"good"
