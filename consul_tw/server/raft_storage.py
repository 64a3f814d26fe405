# -*- test-case-name: tests.unit.test_build -*-
"""
Where a server keeps its Raft state.

``--dev`` keeps everything in memory, as ``consul agent -dev`` does.  Every
other server keeps term, vote and log in ``<data-dir>/raft/raft.db``
(SQLite, WAL, fsync before anything is acknowledged) and snapshots under
``<data-dir>/raft/snapshots`` -- the same layout Consul uses with BoltDB.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

from consul_tw._logging import HcLogger
from consul_tw.config import AgentConfig
from consul_tw.raft.storage.interfaces import ILogStore, ISnapshotStore, IStableStore
from consul_tw.raft.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from consul_tw.raft.storage.snapshots import FileSnapshotStore
from consul_tw.raft.storage.sqlite import SqliteRaftStore, StorageError

__all__ = ["RaftStorage", "StorageError", "open_raft_storage"]


@attrs.frozen
class RaftStorage:
    log: ILogStore
    stable: IStableStore
    snapshots: ISnapshotStore
    close: Callable[[], None] = lambda: None


def open_raft_storage(config: AgentConfig, logger: HcLogger) -> RaftStorage:
    """In memory for ``--dev``; SQLite and snapshot files under the data dir otherwise."""
    if config.dev or config.data_dir is None:
        log = MemoryLogStore()
        return RaftStorage(log, MemoryStableStore(), MemorySnapshotStore())
    raft_dir = os.path.join(config.data_dir, "raft")
    try:
        os.makedirs(raft_dir, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create {raft_dir}: {e.strerror}") from None
    store = SqliteRaftStore.open(os.path.join(raft_dir, "raft.db"), logger)
    snapshots = FileSnapshotStore.open(os.path.join(raft_dir, "snapshots"), logger)
    return RaftStorage(store, store, snapshots, store.close)
