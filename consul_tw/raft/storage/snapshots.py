# -*- test-case-name: tests.unit.raft.test_storage -*-
"""
FSM snapshots as files under ``<data-dir>/raft/snapshots/``.

A save is atomic: the snapshot is written to a temporary file in the same
directory, fsynced, renamed into place and the directory fsynced.  A crash
at any point leaves either the complete new file or none at all (plus,
perhaps, a temporary file, which is ignored and removed later); a rename
within one directory is atomic on POSIX file systems, and the directory
fsync makes the rename itself durable.

Each file is self-describing and self-checking::

    magic (8 bytes) | header length (4, big-endian) | header (msgpack) | data | sha256 (32)

The header holds the :class:`SnapshotMeta` (servers as ``[id, address]``
pairs) and the data's size; the digest covers everything before it.  So a
file cut short by a full disk, or damaged later, is recognised, reported
and skipped, and :meth:`FileSnapshotStore.latest` falls back to the next
older snapshot -- which is why more than one is retained.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import msgpack

from consul_tw._logging import HcLogger
from consul_tw.raft.messages import Server
from consul_tw.raft.storage.interfaces import SnapshotMeta
from consul_tw.raft.storage.sqlite import StorageError

MAGIC = b"CTWSNAP1"
SUFFIX = ".snap"
TEMP_SUFFIX = ".tmp"
_LENGTH = struct.Struct(">I")
_DIGEST_SIZE = hashlib.sha256().digest_size
_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)\.snap$")


class _Damaged(Exception):
    """A snapshot file failed verification; the message is the reason."""


def _snapshot_name(meta: SnapshotMeta, millis: int) -> str:
    """``<term>-<index>-<millis>.snap``, as hashicorp/raft names its snapshot directories."""
    return f"{meta.term}-{meta.index}-{millis}{SUFFIX}"


def _order(path: Path) -> tuple[int, int, int] | None:
    """Sort key (index, term, millis) of a snapshot file name; None for other files."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    term, index, millis = (int(part) for part in match.groups())
    return index, term, millis


def _encode_header(meta: SnapshotMeta) -> bytes:
    return msgpack.packb(
        {
            "index": meta.index,
            "term": meta.term,
            "servers": [[s.id, s.address] for s in meta.servers],
            "configuration_index": meta.configuration_index,
            "size": meta.size,
        },
        use_bin_type=True,
    )


def _decode_header(header: bytes) -> SnapshotMeta:
    fields: dict[str, Any] = msgpack.unpackb(header, raw=False)
    return SnapshotMeta(
        index=int(fields["index"]),
        term=int(fields["term"]),
        servers=tuple(Server(id=str(i), address=str(a)) for i, a in fields["servers"]),
        configuration_index=int(fields["configuration_index"]),
        size=int(fields["size"]),
    )


def _parse_snapshot(blob: bytes) -> tuple[SnapshotMeta, bytes]:
    """Verify a whole snapshot file and split it; :class:`_Damaged` if it is not intact."""
    view = memoryview(blob)
    fixed = len(MAGIC) + _LENGTH.size
    if len(blob) < fixed + _DIGEST_SIZE:
        raise _Damaged(f"too short ({len(blob)} bytes)")
    if view[: len(MAGIC)] != MAGIC:
        raise _Damaged("bad magic")
    (header_length,) = _LENGTH.unpack_from(blob, len(MAGIC))
    body_end = len(blob) - _DIGEST_SIZE
    if fixed + header_length > body_end:
        raise _Damaged("truncated header")
    if hashlib.sha256(view[:body_end]).digest() != view[body_end:]:
        raise _Damaged("checksum mismatch")
    try:
        meta = _decode_header(bytes(view[fixed : fixed + header_length]))
    except Exception as e:  # intact bytes, but not our header: a buggy writer
        raise _Damaged(f"undecodable header: {e}") from None
    data = bytes(view[fixed + header_length : body_end])
    if len(data) != meta.size:
        raise _Damaged(f"size {len(data)} differs from the header's {meta.size}")
    return meta, data


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@attrs.define(eq=False)
class FileSnapshotStore:
    """
    Snapshot files in one directory, the newest ``retain`` kept.  "Newest"
    is by index (then term, then time): snapshots are of committed state,
    so a higher index is always later state.
    """

    directory: Path
    _logger: HcLogger
    retain: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    #: Wall clock (seconds) for the file name's millisecond stamp.
    _now: Callable[[], float] = time.time

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        logger: HcLogger | None = None,
        retain: int = 2,
        now: Callable[[], float] = time.time,
    ) -> FileSnapshotStore:
        """
        Create the directory if needed and remove temporary files a crash left
        behind; :class:`~consul_tw.raft.storage.sqlite.StorageError` if it is unusable.
        """
        path = Path(directory)
        logger = logger if logger is not None else HcLogger("agent.server.raft")
        store = cls(path, logger, retain, now)
        try:
            path.mkdir(parents=True, exist_ok=True)
            store._remove_temp_files()
        except OSError as e:
            raise StorageError(f"cannot use snapshot directory {path}: {e.strerror}") from None
        return store

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        """Write atomically and durably (temp file, fsync, rename, directory fsync), then prune."""
        meta = attrs.evolve(meta, size=len(data))
        final = self.directory / _snapshot_name(meta, int(self._now() * 1000))
        temp = final.with_name(final.name + TEMP_SUFFIX)
        try:
            self._write_file(temp, meta, data)
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        _fsync_directory(self.directory)
        self._prune()

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        """The newest intact snapshot; each damaged one met on the way is logged and skipped."""
        for path in self.snapshot_paths():
            try:
                meta, data = _parse_snapshot(path.read_bytes())
                self._check_name(path, meta)
            except _Damaged as e:
                self._logger.error(
                    "snapshot is damaged, trying an older one", path=str(path), reason=str(e)
                )
                continue
            return meta, data
        return None

    def snapshot_paths(self) -> list[Path]:
        """Snapshot files, newest first (unverified)."""
        found = [(key, path) for path in self.directory.iterdir() if (key := _order(path))]
        return [path for _, path in sorted(found, reverse=True)]

    # -- internals -----------------------------------------------------------------

    def _write_file(self, temp: Path, meta: SnapshotMeta, data: bytes) -> None:
        header = _encode_header(meta)
        digest = hashlib.sha256()
        with open(temp, "wb") as f:
            for part in (MAGIC, _LENGTH.pack(len(header)), header, data):
                digest.update(part)
                f.write(part)
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def _check_name(path: Path, meta: SnapshotMeta) -> None:
        key = _order(path)
        if key is None or key[:2] != (meta.index, meta.term):
            raise _Damaged(f"header says index {meta.index} term {meta.term}, unlike its name")

    def _prune(self) -> None:
        for path in self.snapshot_paths()[self.retain :]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._remove_temp_files()

    def _remove_temp_files(self) -> None:
        for path in self.directory.glob("*" + TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
