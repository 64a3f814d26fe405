# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
The Raft machine's replication transitions: AppendEntries and
InstallSnapshot on both sides, commit, persistence and application, and
the leader's client requests (writes, read barriers, configuration
changes, leadership transfer).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from consul_tw.raft.core import (
    CandidateData,
    ConfigurationBusy,
    ConfigurationError,
    FollowerData,
    LeaderData,
    NotLeader,
    Progress,
    RaftCore,
    ReadWaiter,
    Transfer,
    TransferFailed,
    cancel_timer,
    fire_eventually,
)
from consul_tw.raft.effects import Send
from consul_tw.raft.inputs import RaftInputs
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    Server,
    TimeoutNow,
)
from consul_tw.raft.replication import (
    broadcast,
    find_peer,
    forget_departed,
    leader_commit,
    lease_expires,
    quorum_contact,
    record_ack,
    release_reads,
    send_to,
)
from consul_tw.raft.roles import keep_in_touch
from consul_tw.raft.rules import accept_entries, accept_snapshot_chunk
from consul_tw.raft.states import States


def add_leader_transitions(s: States) -> None:
    Follower, PreCandidate, Candidate, Leader = s.Follower, s.PreCandidate, s.Candidate, s.Leader
    Campaigning, NotLeading = s.campaigning, s.not_leading

    # -- replication -----------------------------------------------------------

    @Follower.upon(RaftInputs.append_entries_received).loop()
    def follow(inputs: RaftInputs, core: RaftCore, data: FollowerData, msg: AppendEntries) -> None:
        cancel_timer(data.timer)
        data.timer = core.follower_timer(inputs.election_timeout)
        accept_entries(core, msg)

    @Follower.upon(RaftInputs.install_snapshot_received).loop()
    def follow_snapshot(
        inputs: RaftInputs, core: RaftCore, data: FollowerData, msg: InstallSnapshot
    ) -> None:
        cancel_timer(data.timer)
        data.timer = core.follower_timer(inputs.election_timeout)
        accept_snapshot_chunk(core, data, msg)

    for state in Campaigning:

        @state.upon(RaftInputs.append_entries_received).to(Follower)
        def candidate_finds_leader(
            inputs: RaftInputs, core: RaftCore, data: CandidateData, msg: AppendEntries
        ) -> None:
            cancel_timer(data.timer)
            accept_entries(core, msg)

        @state.upon(RaftInputs.install_snapshot_received).to(Follower)
        def candidate_finds_leader_snapshot(
            inputs: RaftInputs, core: RaftCore, data: CandidateData, msg: InstallSnapshot
        ) -> None:
            # The snapshot's first chunk will come again to the follower we become.
            cancel_timer(data.timer)
            core.leader = Server(id=msg.leader_id, address=msg.leader_address)

    @Leader.upon(RaftInputs.append_entries_received, nodata=True).loop()
    @Leader.upon(RaftInputs.install_snapshot_received, nodata=True).loop()
    def rival_leader(inputs: RaftInputs, core: RaftCore, msg: Any) -> None:
        # Two leaders in one term cannot happen; refuse rather than corrupt the log.
        core.logger.error("two leaders in one term", term=msg.term, other=msg.leader_address)
        core.outbox.append(
            Send(
                msg.leader_id,
                AppendEntriesResponse(term=core.term, peer_id=core.node_id, success=False),
                msg.leader_address,
            )
        )

    @Leader.upon(RaftInputs.heartbeat_due).loop()
    @Leader.upon(RaftInputs.commit_due).loop()
    def send_heartbeats(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        cancel_timer(data.commit_timer)
        broadcast(core, data)

    @Leader.upon(RaftInputs.end_of_batch).loop()
    def send_new_entries(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        if data.dirty:
            cancel_timer(data.commit_timer)
            broadcast(core, data)

    @Leader.upon(RaftInputs.lease_due).loop()
    def check_quorum(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        if core.clock.seconds() - quorum_contact(core, data) > core.timings.leader_lease_timeout:
            inputs._quorum_lost()

    def commit_and_notify(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        before = core.commit_index
        leader_commit(core, data)
        if core.commit_index > before and core.peers:
            if data.commit_timer is None or not data.commit_timer.active():
                data.commit_timer = core.after(core.timings.commit_timeout, inputs.commit_due)

    @Leader.upon(RaftInputs.append_entries_response_received).loop()
    def follower_answered(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, msg: AppendEntriesResponse
    ) -> None:
        progress = data.progress.get(msg.peer_id)
        if progress is None or msg.term != core.term:
            return
        record_ack(core, data, progress, msg.seq)
        peer = find_peer(core, data, msg.peer_id)
        if msg.success:
            progress.match_index = max(progress.match_index, msg.match_index)
            progress.next_index = max(progress.next_index, progress.match_index + 1)
            if forget_departed(data, msg.peer_id):
                keep_in_touch(core, data)
                return
            commit_and_notify(inputs, core, data)
            if peer is not None and progress.next_index <= core.log.last_index:
                send_to(core, data, peer)  # catching up: keep the entries coming
        else:
            progress.next_index = max(
                progress.match_index + 1, min(progress.next_index - 1, msg.match_index + 1)
            )
            if peer is not None:
                send_to(core, data, peer)
        release_reads(core, data)
        _advance_transfer(core, data)

    @Leader.upon(RaftInputs.install_snapshot_response_received).loop()
    def snapshot_answered(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, msg: InstallSnapshotResponse
    ) -> None:
        progress = data.progress.get(msg.peer_id)
        if progress is None or msg.term != core.term:
            return
        record_ack(core, data, progress, msg.seq)
        release_reads(core, data)
        progress.chunk_sent_at = None
        if progress.snapshot is None or progress.snapshot[0].index != msg.last_index:
            return
        meta, blob = progress.snapshot
        if msg.success and msg.offset >= len(blob):
            progress.snapshot = None
            progress.match_index = max(progress.match_index, meta.index)
            progress.next_index = progress.match_index + 1
            core.logger.info("snapshot sent", peer=msg.peer_id, index=meta.index)
            commit_and_notify(inputs, core, data)
        else:
            progress.snapshot_offset = msg.offset
            if not msg.success:
                return  # resend from the follower's offset on the next heartbeat
        peer = find_peer(core, data, msg.peer_id)
        if peer is not None:
            send_to(core, data, peer)

    for state in (Follower, PreCandidate, Candidate):
        state.upon(RaftInputs.append_entries_response_received).loop().returns(None)
        state.upon(RaftInputs.install_snapshot_response_received).loop().returns(None)
        state.upon(RaftInputs.heartbeat_due).loop().returns(None)
        state.upon(RaftInputs.commit_due).loop().returns(None)
        state.upon(RaftInputs.lease_due).loop().returns(None)
        state.upon(RaftInputs.end_of_batch).loop().returns(None)

    # -- persistence and application ---------------------------------------------

    @Leader.upon(RaftInputs.log_persisted).loop()
    def leader_persisted(inputs: RaftInputs, core: RaftCore, data: LeaderData, index: int) -> None:
        core.persisted_index = max(core.persisted_index, index)
        commit_and_notify(inputs, core, data)

    for state in NotLeading:
        state.upon(RaftInputs.log_persisted, nodata=True).loop()(_note_persisted)

    @Leader.upon(RaftInputs.applied).loop()
    def leader_applied(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, index: int, result: object
    ) -> None:
        core.applied_index = max(core.applied_index, index)
        waiting = data.pending.pop(index, None)
        if waiting is not None:
            fire_eventually(core, waiting, result)
        release_reads(core, data)
        if not core.is_voter and core.applied_index >= core.log.configuration()[0]:
            inputs._removed()

    for state in NotLeading:
        state.upon(RaftInputs.applied, nodata=True).loop()(_note_applied)

    @Leader.upon(RaftInputs.apply).loop()
    def leader_apply(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, command: bytes
    ) -> Deferred[Any]:
        if data.transfer is not None:
            return fail(NotLeader("leadership transfer in progress"))
        entry = core.append_local(EntryType.COMMAND, command)
        data.dirty = True
        waiting: Deferred[Any] = Deferred()
        data.pending[entry.index] = waiting
        return waiting

    @Leader.upon(RaftInputs.read_barrier).loop()
    def leader_read(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, consistent: bool
    ) -> Deferred[int]:
        index = max(core.commit_index, data.noop_index)
        waiter = ReadWaiter(seq=0, index=index, deferred=Deferred())
        if consistent or core.clock.seconds() >= lease_expires(core, data):
            # Confirm leadership with a fresh round that a quorum must answer.
            waiter.seq = broadcast(core, data)
        data.reads.append(waiter)
        release_reads(core, data)
        return waiter.deferred

    @Leader.upon(RaftInputs.change_configuration).loop()
    def leader_reconfigure(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, servers: tuple[Server, ...]
    ) -> Deferred[Any]:
        if not servers:
            return fail(ConfigurationError("configuration must have at least one voter"))
        config_index, _ = core.log.configuration()
        if config_index > core.commit_index or core.commit_index < data.noop_index:
            return fail(ConfigurationBusy("configuration change already in progress"))
        old_voters = core.voters
        entry = core.append_local(EntryType.CONFIGURATION, servers=servers)
        for server in servers:
            data.departing.pop(server.id, None)
            if server.id != core.node_id and server.id not in data.progress:
                data.progress[server.id] = Progress(
                    next_index=entry.index, acked_at=core.clock.seconds()
                )
        keep = {s.id for s in servers}
        for peer_id in [p for p in data.progress if p not in keep]:
            # hashicorp/raft's stopCh: replicate to a removed server up to the
            # entry that removes it, so it learns it is out and stops campaigning.
            address = next((v.address for v in old_voters if v.id == peer_id), None)
            if address is not None:
                data.departing[peer_id] = (Server(id=peer_id, address=address), entry.index)
            else:
                del data.progress[peer_id]
        data.dirty = True
        keep_in_touch(core, data)
        waiting: Deferred[Any] = Deferred()
        data.pending[entry.index] = waiting
        leader_commit(core, data)  # a shrinking quorum may already hold it
        return waiting

    @Leader.upon(RaftInputs.transfer_leadership).loop()
    def leader_transfer(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> Deferred[None]:
        if data.transfer is not None:
            return fail(TransferFailed("leadership transfer in progress"))
        peers = [p for p in core.peers if p.id in data.progress]
        if not peers:
            return fail(TransferFailed("cannot find peer"))
        target = max(peers, key=lambda p: data.progress[p.id].match_index)
        core.logger.info("starting leadership transfer", target=target.address)
        data.transfer = Transfer(
            target=target,
            deferred=Deferred(),
            timer=core.after(core.timings.election_timeout, inputs._transfer_timed_out),
        )
        send_to(core, data, target)
        _advance_transfer(core, data)
        return data.transfer.deferred

    @Leader.upon(RaftInputs._transfer_timed_out).loop()
    def transfer_timed_out(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        if data.transfer is not None:
            transfer, data.transfer = data.transfer, None
            fire_eventually(
                core, transfer.deferred, Failure(TransferFailed("leadership transfer timeout"))
            )


def _note_persisted(inputs: RaftInputs, core: RaftCore, index: int) -> None:
    core.persisted_index = max(core.persisted_index, index)


def _note_applied(inputs: RaftInputs, core: RaftCore, index: int, result: object) -> None:
    core.applied_index = max(core.applied_index, index)


def _advance_transfer(core: RaftCore, data: LeaderData) -> None:
    """Send TimeoutNow once the transfer target holds our whole log."""
    transfer = data.transfer
    if transfer is None or transfer.sent:
        return
    progress = data.progress.get(transfer.target.id)
    if progress is not None and progress.match_index >= core.log.last_index:
        transfer.sent = True
        data.lease_revoked = True
        core.outbox.append(
            Send(
                transfer.target.id,
                TimeoutNow(term=core.term, leader_id=core.node_id, leader_address=core.address),
                transfer.target.address,
            )
        )
