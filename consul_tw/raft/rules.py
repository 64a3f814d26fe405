# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
Raft's rules that several transitions share: a follower accepting entries
or a snapshot, and a leader giving up leadership.

They mutate the core and queue effects; which state may apply them is the
machine's business (:mod:`consul_tw.raft.machine`).
"""

from __future__ import annotations

from twisted.python.failure import Failure

from consul_tw.raft.core import (
    FollowerData,
    LeaderData,
    NotLeader,
    RaftCore,
    cancel_timer,
    fire_eventually,
)
from consul_tw.raft.effects import (
    AppendToLog,
    InstallSnapshotData,
    LeadershipChanged,
    Send,
    TruncateLog,
)
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    LogEntry,
    Server,
)
from consul_tw.raft.storage.interfaces import SnapshotMeta

#: The largest snapshot a follower accepts (a bound on memory for untrusted input).
MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024


def heard_from_leader(core: RaftCore, leader_id: str, leader_address: str) -> None:
    core.leader = Server(id=leader_id, address=leader_address)
    core.last_contact = core.clock.seconds()


def accept_entries(core: RaftCore, msg: AppendEntries) -> None:
    """A follower's half of AppendEntries: consistency check, conflict truncation, commit."""
    heard_from_leader(core, msg.leader_id, msg.leader_address)

    def reply(success: bool, match_index: int) -> None:
        core.outbox.append(
            Send(
                msg.leader_id,
                AppendEntriesResponse(
                    term=core.term,
                    peer_id=core.node_id,
                    success=success,
                    match_index=match_index,
                    seq=msg.seq,
                ),
                msg.leader_address,
            )
        )

    if any(e.index != msg.prev_log_index + 1 + i for i, e in enumerate(msg.entries)):
        # Not a leader's message: entries must follow prev_log_index without gaps.
        core.logger.warn(
            "refusing AppendEntries with non-contiguous entries", leader=msg.leader_address
        )
        reply(False, min(core.log.last_index, msg.prev_log_index))
        return
    prev_term = core.log.term_at(msg.prev_log_index)
    if msg.prev_log_index < core.log.snapshot_index:
        # Everything up to our snapshot is committed and identical everywhere:
        # skip the part of the message we compacted away.
        prev_term = msg.prev_log_term
    if prev_term != msg.prev_log_term:
        reply(False, min(core.log.last_index, msg.prev_log_index - 1))
        return
    new: list[LogEntry] = []
    for entry in msg.entries:
        if entry.index <= core.log.snapshot_index:
            continue
        existing = core.log.term_at(entry.index)
        if existing is not None and existing != entry.term:
            if entry.index <= core.commit_index:
                core.logger.error("leader tried to overwrite a committed entry", index=entry.index)
                reply(False, core.commit_index)
                return
            core.log.truncate_after(entry.index - 1)
            core.outbox.append(TruncateLog(entry.index - 1))
            existing = None
        if existing is None:
            core.log.append(entry)
            new.append(entry)
    if new:
        core.outbox.append(AppendToLog(tuple(new)))
    last_new = msg.prev_log_index + len(msg.entries)
    core.advance_commit(min(msg.leader_commit, last_new))
    reply(True, last_new)


def accept_snapshot_chunk(core: RaftCore, data: FollowerData, msg: InstallSnapshot) -> None:
    """
    A follower's half of InstallSnapshot: gather the chunks in order; on the
    last one, replace the log's prefix (or all of it) with the snapshot and
    ask the driver to store it and restore the FSM from it.
    """
    heard_from_leader(core, msg.leader_id, msg.leader_address)
    key = (msg.last_index, msg.last_term)
    if msg.offset == 0:
        data.incoming_snapshot, data.snapshot_chunks = key, bytearray()
    ok = (
        data.incoming_snapshot == key
        and msg.offset == len(data.snapshot_chunks)
        and len(data.snapshot_chunks) + len(msg.data) <= MAX_SNAPSHOT_BYTES
    )
    if ok:
        data.snapshot_chunks += msg.data
    received = len(data.snapshot_chunks) if data.incoming_snapshot == key else 0
    if ok and msg.done:
        blob = bytes(data.snapshot_chunks)
        data.incoming_snapshot, data.snapshot_chunks = None, bytearray()
        if msg.last_index > core.commit_index:
            meta = SnapshotMeta(
                index=msg.last_index,
                term=msg.last_term,
                servers=msg.servers,
                configuration_index=msg.configuration_index,
                size=len(blob),
            )
            core.log.compact_through(
                msg.last_index, msg.last_term, msg.servers, msg.configuration_index
            )
            core.outbox.append(InstallSnapshotData(meta, blob))
            core.commit_index = max(core.commit_index, msg.last_index)
            core.applied_index = max(core.applied_index, msg.last_index)
            core.persisted_index = max(core.persisted_index, core.log.last_index)
        core.logger.info("installed remote snapshot", index=msg.last_index)
    core.outbox.append(
        Send(
            msg.leader_id,
            InstallSnapshotResponse(
                term=core.term,
                peer_id=core.node_id,
                success=ok,
                last_index=msg.last_index,
                offset=received,
                seq=msg.seq,
            ),
            msg.leader_address,
        )
    )


def leave_leadership(core: RaftCore, data: LeaderData, reason: Exception) -> None:
    """Stop leader timers and fail everything waiting on this leadership."""
    for loop in (data.heartbeat, data.lease_check):
        if loop.running:
            loop.stop()
    cancel_timer(data.commit_timer)
    core.outbox.append(LeadershipChanged(False))
    pending, data.pending = data.pending, {}
    for waiting in pending.values():
        fire_eventually(core, waiting, Failure(reason))
    reads, data.reads = data.reads, []
    for read in reads:
        fire_eventually(core, read.deferred, Failure(NotLeader("leadership lost")))
    if data.transfer is not None:
        transfer, data.transfer = data.transfer, None
        cancel_timer(transfer.timer)
        # Losing leadership is what a transfer asked for.
        fire_eventually(core, transfer.deferred, None)
