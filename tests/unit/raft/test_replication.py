"""The leader's bookkeeping: lease contact, the send-time record, snapshot cadence."""

from __future__ import annotations

import random

from twisted.internet.task import Clock, LoopingCall

from consul_tw._logging import HcLogger
from consul_tw.raft.core import LeaderData, Progress, RaftCore
from consul_tw.raft.log import RaftLog
from consul_tw.raft.messages import EntryType, LogEntry, Server
from consul_tw.raft.node import RaftNode, SnapshotPolicy
from consul_tw.raft.replication import SENT_AT_LIMIT, next_seq, quorum_contact, record_ack
from consul_tw.raft.storage.memory import MemoryLogStore, MemorySnapshotStore, MemoryStableStore
from consul_tw.raft.timings import RaftTimings


def servers(*ids: str) -> tuple[Server, ...]:
    return tuple(Server(id=i, address=f"{i}:8300") for i in ids)


def leader(clock: Clock, voters: tuple[Server, ...]) -> tuple[RaftCore, LeaderData]:
    log = RaftLog.from_entries(
        [LogEntry(index=1, term=1, type=EntryType.CONFIGURATION, servers=voters)]
    )
    core = RaftCore(
        node_id="L",
        address="L:8300",
        timings=RaftTimings.dev(),
        clock=clock,
        rng=random.Random(0),
        log=log,
        logger=HcLogger("t"),
        term=2,
    )
    data = LeaderData(
        heartbeat=LoopingCall(lambda: None),
        lease_check=LoopingCall(lambda: None),
        progress={s.id: Progress(next_index=2) for s in voters if s.id != "L"},
        pending={},
        noop_index=2,
        started_at=0.0,
    )
    return core, data


def test_a_leader_outside_the_configuration_does_not_vouch_for_itself() -> None:
    clock = Clock()
    core, data = leader(clock, servers("A", "B", "C"))  # L is removing itself
    clock.advance(10)
    data.progress["A"].acked_at = 10.0
    # Only A answered lately: of A, B and C that is no majority.
    assert quorum_contact(core, data) == 0.0
    data.progress["B"].acked_at = 9.5
    assert quorum_contact(core, data) == 9.5


def test_the_send_time_record_stays_bounded_with_a_dead_voter() -> None:
    clock = Clock()
    core, data = leader(clock, servers("L", "A", "B"))
    for _ in range(10 * SENT_AT_LIMIT):
        seq = next_seq(core, data)
        clock.advance(0.01)
        record_ack(core, data, data.progress["A"], seq)  # B is dead: never answers
    assert len(data.sent_at) <= SENT_AT_LIMIT + 1
    assert data.progress["A"].acked_seq == data.seq


def test_snapshots_follow_the_threshold_even_with_more_trailing_logs() -> None:
    class Counting(MemorySnapshotStore):
        saves = 0

        def save(self, meta, data):  # type: ignore[no-untyped-def]
            Counting.saves += 1
            super().save(meta, data)

    class FSM:
        def apply(self, index: int, data: bytes) -> object:
            return index

        def snapshot(self) -> bytes:
            return b"state"

        def restore(self, data: bytes) -> None:
            pass

    clock = Clock()
    node = RaftNode.create(
        node_id="n1",
        address="n1:8300",
        timings=RaftTimings.dev(),
        clock=clock,
        fsm=FSM(),
        log_store=MemoryLogStore(),
        stable_store=MemoryStableStore(),
        snapshot_store=Counting(),
        snapshot_policy=SnapshotPolicy(threshold=10, trailing_logs=20),
        logger=HcLogger("t"),
        rng=random.Random(1),
    )
    node.bootstrap(servers("n1"))
    node.start()
    clock.advance(1)
    for i in range(40):
        node.apply(f"w{i}".encode())
        clock.advance(0.001)
    # 42 entries applied, a snapshot every 10: four, not one per write.
    assert Counting.saves == 4
    node.stop()
