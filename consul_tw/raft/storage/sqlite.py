# -*- test-case-name: tests.unit.raft.test_storage -*-
"""
Durable Raft state: current term, vote and log in one SQLite database.

One file, ``<data-dir>/raft/raft.db``, holds both the hard state (the
:class:`~consul_tw.raft.storage.interfaces.IStableStore` half) and the log
(the :class:`~consul_tw.raft.storage.interfaces.ILogStore` half), so that a
batch of effects -- a new term, a vote, a truncation and fresh entries --
lands in *one* transaction and costs *one* fsync (group commit).  Writes open
a transaction lazily; :meth:`SqliteRaftStore.sync` commits it, and with
``journal_mode=WAL`` plus ``synchronous=FULL`` that commit returns only once
the WAL is on stable storage.  Nothing written since the last ``sync()``
survives a crash, which is exactly the promise the interface makes: the
driver releases no message or acknowledgement until ``sync()`` returns.

Every log row carries a CRC32 over its encoded columns *and its index and
term*.  SQLite protects its own structure, not our payload: a flipped bit
in a blob, or a cell that a damaged page hands back under the wrong rowid,
reads back without complaint.  Binding the index and term into the checksum
means a row proves "I am entry N of term T", not merely "my bytes agree
with each other", so a misplaced or resurrected row is caught too.  On load
the first row that fails verification, or the first missing index, ends
the log: it and everything after it are deleted (durably) and reported
once, and only the verified prefix is returned.  The leader re-replicates
what was cut, as it would for a follower that had simply fallen behind.

The hard state is checksummed as well, but damage there is fatal
(:class:`StorageError`): unlike a log suffix, a lost term or vote cannot be
re-learned from the leader, and starting without it could let this server
vote twice in one term -- two leaders.  Refusing to start is the safe answer.

The database is opened with ``locking_mode=EXCLUSIVE``: the lock is held
until :meth:`SqliteRaftStore.close`, so a second agent pointed at the same
data directory fails at once instead of interleaving writes into our log.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs
import msgpack

from consul_tw._logging import HcLogger
from consul_tw.raft.messages import EntryType, LogEntry, Server

#: ``PRAGMA user_version`` of the schema below; a newer file is refused.
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` ("ctwr"): marks the file as ours.
APPLICATION_ID = 0x63747772

_SCHEMA = """
CREATE TABLE hard_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    term INTEGER NOT NULL,
    voted_for TEXT,
    crc INTEGER NOT NULL
);
CREATE TABLE log (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    servers BLOB NOT NULL,
    crc INTEGER NOT NULL
);
"""

_INSERT_ENTRY = "INSERT INTO log (idx, term, type, data, servers, crc) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT_ENTRIES = "SELECT idx, term, type, data, servers, crc FROM log ORDER BY idx"
_NO_SERVERS = msgpack.packb([])


class StorageError(Exception):
    """
    Raft state on disk cannot be used (not a database, damaged hard state,
    locked by another process, failed write).  The message is one line,
    fit for the agent to print before exiting 1.
    """


class _Damaged(Exception):
    """A log row failed verification; the message is the reason."""


def _text(value: object) -> object:
    """
    A TEXT column as ``str``.  The connection reads TEXT as bytes
    (``text_factory=bytes``) so that a damaged, non-UTF-8 value becomes a
    damaged row we can name, not a UnicodeDecodeError from inside the cursor.
    """
    return value.decode() if isinstance(value, bytes) else value


def _checksum(*fields: object) -> int:
    """CRC32 of the msgpack encoding of ``fields`` (length-prefixed, so unambiguous)."""
    return zlib.crc32(msgpack.packb(list(fields), use_bin_type=True))


def _hard_state_checksum(term: int, voted_for: str | None) -> int:
    return _checksum("hard_state", term, voted_for)


def _encode_servers(servers: tuple[Server, ...]) -> bytes:
    if not servers:
        return _NO_SERVERS
    return msgpack.packb([[s.id, s.address] for s in servers], use_bin_type=True)


def _encode_entry(entry: LogEntry) -> tuple[int, int, str, bytes, bytes, int]:
    """The ``log`` row for ``entry``: its columns and the checksum over all of them."""
    servers = _encode_servers(entry.servers)
    kind = entry.type.value
    crc = _checksum(entry.index, entry.term, kind, entry.data, servers)
    return entry.index, entry.term, kind, entry.data, servers, crc


def _decode_entry(row: Sequence[Any]) -> LogEntry:
    """Verify one ``log`` row and rebuild its entry; :class:`_Damaged` if it is not intact."""
    try:
        index, term, kind, data, servers, crc = row
        kind = _text(kind)
    except ValueError:  # includes UnicodeDecodeError
        raise _Damaged("malformed row") from None
    if not (
        isinstance(index, int)
        and isinstance(term, int)
        and isinstance(kind, str)
        and isinstance(data, bytes)
        and isinstance(servers, bytes)
        and isinstance(crc, int)
    ):
        raise _Damaged("column of the wrong type")
    if _checksum(index, term, kind, data, servers) != crc:
        raise _Damaged("checksum mismatch")
    try:
        entry_type = EntryType(kind)
        members = tuple(
            Server(id=str(member_id), address=str(address))
            for member_id, address in msgpack.unpackb(servers, raw=False)
        )
    except Exception as e:  # checksummed but undecodable: written by a buggy build
        raise _Damaged(f"undecodable: {e}") from None
    return LogEntry(index=index, term=term, type=entry_type, data=data, servers=members)


@attrs.frozen
class _Scan:
    """The verified prefix of the stored log and, if it ended early, why."""

    entries: tuple[LogEntry, ...]
    damaged_index: int | None = None
    reason: str = ""


def _verified_prefix(rows: Iterable[Sequence[Any]]) -> _Scan:
    """
    Decode rows in index order up to the first damaged row or missing index.
    A read error from SQLite itself (a malformed page) ends the prefix too.
    """
    good: list[LogEntry] = []
    iterator = iter(rows)
    while True:
        expected = good[-1].index + 1 if good else None
        try:
            row = next(iterator)
        except StopIteration:
            return _Scan(tuple(good))
        except (sqlite3.Error, ValueError) as e:
            return _Scan(tuple(good), expected or 0, f"unreadable: {e}")
        index = row[0] if row and isinstance(row[0], int) else expected or 0
        if expected is not None and index != expected:
            return _Scan(tuple(good), expected, f"missing (next stored index is {index})")
        try:
            good.append(_decode_entry(row))
        except _Damaged as e:
            return _Scan(tuple(good), index, str(e))


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (a file fsync alone does not)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@attrs.define(eq=False)
class SqliteRaftStore:
    """
    Both Raft stores on one SQLite connection, kept open for the agent's life.

    Single-threaded: every call comes from the reactor thread (the connection
    is opened with ``check_same_thread=False`` only so that the thread that
    opens it need not be that one).  After any failed write the store refuses
    further use: a failed fsync leaves the page cache in an unknown state
    and the only safe reaction is to stop and restart from what is on disk.
    """

    path: Path
    _conn: sqlite3.Connection
    _logger: HcLogger
    _term: int = 0
    _voted_for: str | None = None
    #: First and last stored index, 0 when the log is empty.
    _first: int = 0
    _last: int = 0
    #: A transaction is open: writes are waiting for ``sync()``.
    _pending: bool = False
    #: The verified log read at open, handed over by the first ``entries()``.
    _loaded: tuple[LogEntry, ...] | None = None
    #: Why the store is unusable (closed, or a write failed); None while usable.
    _broken: str | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], logger: HcLogger | None = None) -> SqliteRaftStore:
        """
        Open (creating if needed) the database at ``path``, check the hard
        state, and verify the log, cutting a damaged tail.  Raises
        :class:`StorageError` when the file is unusable.
        """
        path = Path(path)
        logger = logger if logger is not None else HcLogger("agent.server.raft")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create {path.parent}: {e.strerror}") from None
        created = not path.exists()
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0.0)
        except sqlite3.Error as e:
            raise StorageError(f"cannot open raft database {path}: {e}") from None
        conn.text_factory = bytes
        try:
            _configure(conn, path)
            term, voted_for = _read_hard_state(conn, path)
            if created:
                _fsync_directory(path.parent)
        except OSError as e:
            conn.close()
            raise StorageError(f"cannot sync {path.parent}: {e.strerror}") from None
        except BaseException:
            conn.close()
            raise
        store = cls(path, conn, logger, term, voted_for)
        try:
            store._loaded = store._load()
        except BaseException:
            store.close()
            raise
        return store

    # -- IStableStore ------------------------------------------------------------

    def load_hard_state(self) -> tuple[int, str | None]:
        return self._term, self._voted_for

    def save_hard_state(self, term: int, voted_for: str | None) -> None:
        crc = _hard_state_checksum(term, voted_for)
        self._write(
            "INSERT OR REPLACE INTO hard_state (id, term, voted_for, crc) VALUES (1, ?, ?, ?)",
            (term, voted_for, crc),
        )
        self._term, self._voted_for = term, voted_for

    # -- ILogStore -----------------------------------------------------------------

    def entries(self) -> Sequence[LogEntry]:
        """
        Every verified entry in index order.  The first call after ``open``
        hands over the log verified there (and forgets it, so the store does
        not keep a second copy of the log); later calls read and verify again.
        """
        self._check_usable()
        loaded, self._loaded = self._loaded, None
        return loaded if loaded is not None else self._load()

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Insert ``entries`` (one ``executemany``); ValueError on a gap, before writing."""
        if not entries:
            return
        if entries[0].index < 1:
            raise ValueError(f"log indexes start at 1, got {entries[0].index}")
        expected = self._last + 1 if self._last else entries[0].index
        for entry in entries:
            if entry.index != expected:
                raise ValueError(f"log gap: got index {entry.index}, expected {expected}")
            expected += 1
        # Encode everything before touching the transaction: a bad entry must
        # not leave half a batch pending.
        rows = [_encode_entry(entry) for entry in entries]
        self._write_many(_INSERT_ENTRY, rows)
        if not self._last:
            self._first = entries[0].index
        self._last = entries[-1].index

    def truncate_after(self, index: int) -> None:
        if not self._last or index >= self._last:
            return
        self._write("DELETE FROM log WHERE idx > ?", (index,))
        if index < self._first:
            self._first = self._last = 0
        else:
            self._last = index

    def delete_through(self, index: int) -> None:
        if not self._last or index < self._first:
            return
        self._write("DELETE FROM log WHERE idx <= ?", (index,))
        if index >= self._last:
            self._first = self._last = 0
        else:
            self._first = index + 1

    @property
    def pending(self) -> bool:
        """Writes are waiting for ``sync()`` (a transaction is open)."""
        return self._pending

    def first_index(self) -> int:
        """Index of the first stored entry, 0 when the log is empty."""
        return self._first

    def last_index(self) -> int:
        """Index of the last stored entry, 0 when the log is empty."""
        return self._last

    # -- durability -------------------------------------------------------------------

    def sync(self) -> None:
        """Commit the open transaction: one fsync of the WAL for the whole batch."""
        self._check_usable()
        if not self._pending:
            return
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._fail("commit", e)
        self._pending = False

    def close(self) -> None:
        """
        Close the database.  This does not ``sync()``: writes since the last
        sync were never promised to anyone, and dropping them makes a close
        behave exactly as a crash does -- the case recovery must handle anyway.
        """
        if self._broken == "closed":
            return
        self._broken = "closed"
        self._loaded = None
        try:
            if self._pending:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
        finally:
            self._pending = False
            self._conn.close()

    # -- internals ----------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise StorageError(f"raft database {self.path} is unusable: {self._broken}")

    def _begin(self) -> None:
        self._check_usable()
        self._loaded = None
        if not self._pending:
            self._conn.execute("BEGIN IMMEDIATE")
            self._pending = True

    def _write(self, sql: str, params: Sequence[object]) -> sqlite3.Cursor:
        try:
            self._begin()
            return self._conn.execute(sql, params)
        except sqlite3.Error as e:
            self._fail("write", e)

    def _write_many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            self._begin()
            self._conn.executemany(sql, rows)
        except sqlite3.Error as e:
            self._fail("write", e)

    def _fail(self, action: str, error: sqlite3.Error) -> NoReturn:
        self._broken = f"{action} failed: {error}"
        self._pending = False
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")
        raise StorageError(f"raft database {self.path}: {self._broken}") from error

    def _load(self) -> tuple[LogEntry, ...]:
        """Read and verify the log; cut (durably) and report a damaged tail."""
        try:
            scan = _verified_prefix(self._conn.execute(_SELECT_ENTRIES))
        except (sqlite3.Error, ValueError) as e:
            raise StorageError(f"cannot read raft log from {self.path}: {e}") from None
        if scan.damaged_index is not None:
            self._cut_after(scan)
        entries = scan.entries
        self._first = entries[0].index if entries else 0
        self._last = entries[-1].index if entries else 0
        return entries

    def _cut_after(self, scan: _Scan) -> None:
        keep = scan.entries[-1].index if scan.entries else None
        if keep is None:
            cursor = self._write("DELETE FROM log", ())
        else:
            cursor = self._write("DELETE FROM log WHERE idx > ?", (keep,))
        dropped = cursor.rowcount
        self.sync()
        self._logger.error(
            "log entry failed verification, truncating log",
            index=scan.damaged_index,
            reason=scan.reason,
            kept_through=keep or 0,
            dropped=dropped,
        )


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    """Pragmas, the exclusive lock, and the schema (created on first use)."""
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if _text(mode) != "wal":
            raise StorageError(f"raft database {path}: cannot enable WAL (journal mode {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        # Zero deleted cells where it costs no extra I/O, so a truncated entry
        # cannot be resurrected, checksum intact, by a later damaged page.
        conn.execute("PRAGMA secure_delete=FAST")
        # Take the write lock now (held until close): a second agent fails here.
        conn.execute("BEGIN IMMEDIATE")
        _ensure_schema(conn, path)
        conn.execute("COMMIT")
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            raise StorageError(f"raft database {path} is in use by another process ({e})") from None
        raise StorageError(f"cannot open raft database {path}: {e}") from None
    except (sqlite3.Error, ValueError) as e:
        raise StorageError(f"raft database {path} is not a usable SQLite database: {e}") from None


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == 0 and app_id == 0:
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if tables:
            raise StorageError(f"{path} is an SQLite database of another program")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        return
    if app_id != APPLICATION_ID:
        raise StorageError(f"{path} is not a consul-tw raft database (application_id {app_id})")
    if version != SCHEMA_VERSION:
        raise StorageError(
            f"raft database {path} has schema version {version}, this build reads {SCHEMA_VERSION}"
        )


def _read_hard_state(conn: sqlite3.Connection, path: Path) -> tuple[int, str | None]:
    """The stored (term, vote); StorageError if the row is damaged (see the module docstring)."""
    try:
        row = conn.execute("SELECT term, voted_for, crc FROM hard_state WHERE id = 1").fetchone()
    except (sqlite3.Error, ValueError) as e:
        raise StorageError(f"cannot read raft hard state from {path}: {e}") from None
    if row is None:
        return 0, None
    term, voted_for, crc = row
    try:
        voted_for = _text(voted_for)
    except UnicodeDecodeError:
        pass  # left as bytes: fails the type check below
    intact = (
        isinstance(term, int)
        and (voted_for is None or isinstance(voted_for, str))
        and isinstance(crc, int)
        and _hard_state_checksum(term, voted_for) == crc
    )
    if not intact:
        raise StorageError(
            f"raft hard state in {path} failed its checksum"
            f" (term={term!r} voted_for={voted_for!r}); refusing to start:"
            " a lost vote could let this server vote twice in one term"
        )
    return term, voted_for
