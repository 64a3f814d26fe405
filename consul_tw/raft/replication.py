# -*- test-case-name: tests.unit.raft.test_replication -*-
"""
The leader's side of log replication: AppendEntries, InstallSnapshot,
commit, and the quorum-contact bookkeeping behind the leader lease.

Replication is pipelined: after sending entries to a follower the leader
assumes they will arrive and moves ``next_index`` past them, so a steady
stream of writes is never held up by a round trip; a refusal moves it back
to the follower's hint.  Each message carries a fresh ``seq``; answers echo
it, which tells the leader *when* a quorum last confirmed its leadership.
"""

from __future__ import annotations

from consul_tw.raft.core import LeaderData, Progress, RaftCore, fire_eventually
from consul_tw.raft.effects import Send
from consul_tw.raft.messages import AppendEntries, InstallSnapshot, Server
from consul_tw.raft.quorum import commit_index, votes_needed

#: hashicorp/raft's MaxAppendEntries: entries per AppendEntries message.
MAX_APPEND_ENTRIES = 64
#: Bytes of snapshot per InstallSnapshot chunk (well under the 8 MiB frame limit).
SNAPSHOT_CHUNK = 1024 * 1024


def next_seq(core: RaftCore, data: LeaderData) -> int:
    data.seq += 1
    data.sent_at[data.seq] = core.clock.seconds()
    return data.seq


def send_to(core: RaftCore, data: LeaderData, peer: Server, *, seq: int | None = None) -> None:
    """Send a peer what it lacks: entries (at most 64), a snapshot chunk, or a heartbeat."""
    state = data.progress.setdefault(peer.id, Progress(next_index=core.log.last_index + 1))
    if seq is None:
        seq = next_seq(core, data)
    if state.next_index < core.log.first_index or state.snapshot is not None:
        now = core.clock.seconds()
        # One chunk in flight at a time: heartbeats resend it only if its
        # answer is overdue, not a megabyte every heartbeat interval.
        if (
            state.chunk_sent_at is None
            or now - state.chunk_sent_at >= core.timings.heartbeat_timeout / 2
        ):
            state.chunk_sent_at = now
            _send_snapshot_chunk(core, peer, state, seq)
        return
    prev = state.next_index - 1
    last = min(core.log.last_index, prev + MAX_APPEND_ENTRIES)
    entries = tuple(core.log.slice(state.next_index, last)) if last > prev else ()
    core.outbox.append(
        Send(
            peer.id,
            AppendEntries(
                term=core.term,
                leader_id=core.node_id,
                leader_address=core.address,
                prev_log_index=prev,
                prev_log_term=core.log.term_at(prev) or 0,
                entries=entries,
                leader_commit=core.commit_index,
                seq=seq,
            ),
            peer.address,
        )
    )
    if entries:
        state.next_index = last + 1


def broadcast(core: RaftCore, data: LeaderData) -> int:
    """One round to every peer, all under one seq (a quorum answering it confirms us)."""
    seq = next_seq(core, data)
    for peer in core.peers:
        send_to(core, data, peer, seq=seq)
    for peer, _ in list(data.departing.values()):
        send_to(core, data, peer, seq=seq)
    data.dirty = False
    return seq


def find_peer(core: RaftCore, data: LeaderData, peer_id: str) -> Server | None:
    """A voter, or a server just removed that still gets its removal entry."""
    for peer in core.peers:
        if peer.id == peer_id:
            return peer
    departing = data.departing.get(peer_id)
    return departing[0] if departing else None


def forget_departed(data: LeaderData, peer_id: str) -> bool:
    """Stop replicating to a removed server once it holds the entry removing it."""
    departing = data.departing.get(peer_id)
    progress = data.progress.get(peer_id)
    if departing is None or progress is None or progress.match_index < departing[1]:
        return False
    del data.departing[peer_id]
    del data.progress[peer_id]
    return True


def _send_snapshot_chunk(core: RaftCore, peer: Server, state: Progress, seq: int) -> None:
    if state.snapshot is None:
        state.snapshot = core.load_snapshot()
        state.snapshot_offset = 0
        if state.snapshot is None:  # nothing to send: cannot happen once compacted
            core.logger.error("peer needs a snapshot but none is stored", peer=peer.address)
            return
        core.logger.info(
            "starting to send snapshot", peer=peer.address, index=state.snapshot[0].index
        )
    meta, blob = state.snapshot
    chunk = blob[state.snapshot_offset : state.snapshot_offset + SNAPSHOT_CHUNK]
    core.outbox.append(
        Send(
            peer.id,
            InstallSnapshot(
                term=core.term,
                leader_id=core.node_id,
                leader_address=core.address,
                last_index=meta.index,
                last_term=meta.term,
                servers=meta.servers,
                configuration_index=meta.configuration_index,
                offset=state.snapshot_offset,
                data=chunk,
                done=state.snapshot_offset + len(chunk) >= len(blob),
                seq=seq,
            ),
            peer.address,
        )
    )


def record_ack(core: RaftCore, data: LeaderData, state: Progress, seq: int) -> None:
    """A follower answered ``seq`` (whatever it said): it still follows us."""
    if seq > state.acked_seq and seq in data.sent_at:
        state.acked_seq = seq
        state.acked_at = data.sent_at[seq]
    _forget_old_seqs(data)


#: How many send times the leader remembers: answers to older messages no
#: longer move a follower's lease contact (a conservative loss).
SENT_AT_LIMIT = 1024


def _forget_old_seqs(data: LeaderData) -> None:
    """
    Bound the send-time record.  A dead voter never answers, so pruning only
    below the slowest follower's answer would let it grow with uptime.
    """
    if len(data.sent_at) > SENT_AT_LIMIT:
        for seq in sorted(data.sent_at)[: len(data.sent_at) - SENT_AT_LIMIT // 2]:
            del data.sent_at[seq]


def quorum_seq(core: RaftCore, data: LeaderData) -> int:
    """The newest seq that a quorum (counting ourselves) has answered."""
    acked = [data.seq if core.is_voter else 0] + [
        data.progress[p.id].acked_seq if p.id in data.progress else 0 for p in core.peers
    ]
    return _quorum_value(acked, len(core.voters))


def quorum_contact(core: RaftCore, data: LeaderData) -> float:
    """
    When a quorum last confirmed our leadership: the send time of the
    newest message a quorum answered (our own clock, so no clock drift
    between servers enters the lease).
    """
    now = core.clock.seconds()
    # A leader removing itself is no longer part of any quorum: only the
    # voters' answers count, or it could keep a lease the new majority ignores.
    times = [now] if core.is_voter else []
    times += [
        data.progress[p.id].acked_at if p.id in data.progress else data.started_at
        for p in core.peers
    ]
    return _quorum_value(times, len(core.voters))


def _quorum_value(values: list, voters: int):  # type: ignore[no-untyped-def,type-arg]
    voters = max(voters, 1)
    values = sorted(values, reverse=True) + [0] * max(0, voters - len(values))
    return values[votes_needed(voters) - 1]


def lease_expires(core: RaftCore, data: LeaderData) -> float:
    """
    Until when default reads may skip the quorum round.  Never again this
    term once a leadership transfer sent TimeoutNow: the target's election
    bypasses leader stickiness, so a new leader may exist before our lease
    would have run out.
    """
    if data.lease_revoked:
        return 0.0
    return quorum_contact(core, data) + core.timings.leader_lease_timeout


def leader_commit(core: RaftCore, data: LeaderData) -> None:
    """Commit what a majority stores, but only entries of the current term (Raft §5.4.2)."""
    if not core.is_voter:
        matches = [data.progress[p.id].match_index for p in core.peers if p.id in data.progress]
    else:
        matches = [core.persisted_index] + [
            data.progress[p.id].match_index for p in core.peers if p.id in data.progress
        ]
    candidate = commit_index(matches + [0] * (len(core.voters) - len(matches)))
    if candidate > core.commit_index and core.log.term_at(candidate) == core.term:
        core.advance_commit(candidate)
        release_reads(core, data)


def release_reads(core: RaftCore, data: LeaderData) -> None:
    """Fire every read barrier whose quorum round is confirmed and index applied."""
    if not data.reads:
        return
    confirmed = quorum_seq(core, data)
    ready = [r for r in data.reads if r.seq <= confirmed and r.index <= core.applied_index]
    if ready:
        data.reads = [r for r in data.reads if r not in ready]
        for waiter in ready:
            fire_eventually(core, waiter.deferred, waiter.index)
