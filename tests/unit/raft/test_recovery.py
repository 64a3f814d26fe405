"""
A server restarted on its data dir recovers from snapshot + log, with the
real stores: SQLite for term, vote and log, snapshot files beside it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from twisted.internet.task import Clock

from consul_tw._logging import HcLogger
from consul_tw.raft.messages import Server
from consul_tw.raft.node import RaftNode, SnapshotPolicy
from consul_tw.raft.storage.snapshots import FileSnapshotStore
from consul_tw.raft.storage.sqlite import SqliteRaftStore
from consul_tw.raft.timings import RaftTimings

ME = Server(id="n1", address="n1:8300")


class ListFSM:
    def __init__(self) -> None:
        self.applied: list[bytes] = []
        self.restored_from: int | None = None

    def apply(self, index: int, data: bytes) -> object:
        self.applied.append(data)
        return index

    def snapshot(self) -> bytes:
        return json.dumps([d.decode() for d in self.applied]).encode()

    def restore(self, data: bytes) -> None:
        self.applied = [d.encode() for d in json.loads(data)]
        self.restored_from = len(self.applied)


def boot(tmp: Path, clock: Clock, fsm: ListFSM) -> tuple[RaftNode, SqliteRaftStore]:
    logger = HcLogger("agent.server.raft")
    store = SqliteRaftStore.open(tmp / "raft.db", logger)
    node = RaftNode.create(
        node_id="n1",
        address=ME.address,
        timings=RaftTimings.dev(),
        clock=clock,
        fsm=fsm,
        log_store=store,
        stable_store=store,
        snapshot_store=FileSnapshotStore.open(tmp / "snapshots", logger),
        snapshot_policy=SnapshotPolicy(threshold=10, trailing_logs=3),
        logger=logger,
        rng=random.Random(1),
        group_commit=True,
    )
    return node, store


def test_restart_restores_snapshot_then_replays_the_log(tmp_path: Path) -> None:
    clock = Clock()
    fsm = ListFSM()
    node, store = boot(tmp_path, clock, fsm)
    node.bootstrap((ME,))
    node.start()
    clock.advance(1)
    assert node.describe().state == "Leader"
    for i in range(25):
        node.apply(f"w{i}".encode())
        clock.advance(0.01)
    assert fsm.applied == [f"w{i}".encode() for i in range(25)]
    status = node.describe()
    assert status.snapshot_index > 0, "snapshots were taken"
    node.stop()
    store.close()

    again = ListFSM()
    node, store = boot(tmp_path, Clock(), again)
    restored = node.describe()
    # The snapshot is loaded at once; the rest of the log waits for a commit.
    assert again.restored_from is not None and again.restored_from < 25
    assert restored.last_log_index == status.last_log_index
    assert store.first_index() > 1, "the log was compacted behind the snapshot"
    clock2 = node.core.clock
    node.start()
    assert isinstance(clock2, Clock)
    clock2.advance(1)
    assert node.describe().state == "Leader"
    assert again.applied == [f"w{i}".encode() for i in range(25)]
    node.stop()
    store.close()
