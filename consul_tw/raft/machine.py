# -*- test-case-name: tests.unit.raft.test_machine -*-
"""
A Raft server's role as an automat typed state machine.

States are Stopped, Follower, PreCandidate, Candidate, Leader and ShutDown.
Each role's timers live in that role's data, created by the state's data
factory on entry and cancelled by every behaviour that leaves the role, so
that after ``stop()`` the clock has no delayed calls left.  Behaviours never
do I/O: they append effects to ``core.outbox`` (see
:mod:`consul_tw.raft.effects`), which :class:`consul_tw.raft.node.RaftNode`
drains after every batch of inputs.

Terms are compared at one choke point, ``RaftNode.receive``; the machine
sees ``higher_term_seen`` first and then the message, so no behaviour here
steps down on a newer term on its own.  The transition table is in
docs/architecture.md.
"""

from __future__ import annotations

from typing import Any, Protocol

from automat import TypeMachineBuilder
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
    RaftShutdown,
    RaftStatus,
    ReadWaiter,
    TimedRole,
    Transfer,
    TransferFailed,
    cancel_timer,
    fire_eventually,
)
from consul_tw.raft.effects import LeadershipChanged, Send
from consul_tw.raft.elections import answer_pre_vote, answer_vote, ask_for_votes
from consul_tw.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryType,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    Server,
    TimeoutNow,
)
from consul_tw.raft.quorum import votes_needed
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
from consul_tw.raft.rules import accept_entries, accept_snapshot_chunk, leave_leadership

__all__ = ["NotLeader", "RaftCore", "RaftInputs", "RaftMachine", "RaftShutdown", "RaftStatus"]


class RaftInputs(Protocol):
    def start(self) -> None:
        "Begin as a follower."

    def stop(self) -> None:
        "Shut down for good: cancel timers, fail pending writes."

    def election_timeout(self) -> None:
        "No leader heard from (follower), or no decision (candidates), in time."

    def heartbeat_due(self) -> None:
        "Leader: time to send AppendEntries to every peer."

    def commit_due(self) -> None:
        "Leader: tell followers about a commit that no other message carried yet."

    def lease_due(self) -> None:
        "Leader: check that a quorum confirmed us within the lease (check-quorum)."

    def end_of_batch(self) -> None:
        "The driver is about to drain: a leader sends the entries appended since the last round."

    def higher_term_seen(self, term: int, leader: Server | None) -> None:
        "A message carried a newer term: adopt it and follow."

    def request_vote_received(self, msg: RequestVote) -> None:
        "A candidate asks for our vote (its term is not newer than ours)."

    def pre_vote_received(self, msg: RequestVote) -> None:
        "A would-be candidate asks whether we would vote for it (no term change)."

    def vote_response_received(self, msg: RequestVoteResponse) -> None:
        "A voter answered our RequestVote."

    def pre_vote_response_received(self, msg: RequestVoteResponse) -> None:
        "A voter granted our pre-vote."

    def append_entries_received(self, msg: AppendEntries) -> None:
        "A leader replicates entries or heartbeats (its term is not newer than ours)."

    def append_entries_response_received(self, msg: AppendEntriesResponse) -> None:
        "A follower answered our AppendEntries."

    def install_snapshot_received(self, msg: InstallSnapshot) -> None:
        "A leader sends a chunk of a snapshot."

    def install_snapshot_response_received(self, msg: InstallSnapshotResponse) -> None:
        "A follower answered an InstallSnapshot chunk."

    def timeout_now_received(self, msg: TimeoutNow) -> None:
        "Our leader hands leadership to us: start an election at once."

    def log_persisted(self, index: int) -> None:
        "The driver has stored our log durably up to ``index``."

    def applied(self, index: int, result: object) -> None:
        "The FSM applied the entry at ``index``; result is its return value or a Failure."

    def apply(self, command: bytes) -> Deferred[Any]:
        "Replicate a command; fires with the FSM's result once committed and applied."

    def read_barrier(self, consistent: bool) -> Deferred[int]:
        "Fires with an index once reading local state up to it is linearizable."

    def change_configuration(self, servers: tuple[Server, ...]) -> Deferred[Any]:
        "Replace the voters (differing by one server); fires once committed."

    def transfer_leadership(self) -> Deferred[None]:
        "Hand leadership to the most up-to-date peer; fires once we are no longer leader."

    def describe(self) -> RaftStatus:
        "A snapshot of the server's Raft state."

    def _won_election(self, tally: int) -> None:
        "A candidate's tally reached a majority."

    def _start_election(self) -> None:
        "Become a candidate in a new term."

    def _start_pre_vote(self) -> None:
        "A follower that is a voter gave up waiting for a leader."

    def _quorum_lost(self) -> None:
        "Check-quorum failed: no quorum confirmed us within the lease."

    def _removed(self) -> None:
        "A configuration without us committed: stop leading."

    def _transfer_timed_out(self) -> None:
        "The transfer target did not take over in time."


def _not_leader(*args: object) -> Deferred[Any]:
    return fail(NotLeader("node is not the leader"))


def _make_raft_machine():  # type: ignore[no-untyped-def]
    builder = TypeMachineBuilder(RaftInputs, RaftCore)

    # -- data factories ---------------------------------------------------

    def enter_follower(inputs: RaftInputs, core: RaftCore, *args: object) -> FollowerData:
        leader = core.leader
        core.logger.info(
            "entering follower state",
            follower=core.describe_node("Follower"),
            leader=leader.address if leader else None,
        )
        return FollowerData(core.follower_timer(inputs.election_timeout))

    def enter_pre_candidate(inputs: RaftInputs, core: RaftCore, *args: object) -> CandidateData:
        core.leader = None
        core.logger.debug("pre-vote campaign", term=core.term + 1)
        ask_for_votes(core, term=core.term + 1, pre_vote=True)
        return CandidateData(
            core.candidate_timer(inputs.election_timeout), {core.node_id}, pre_vote=True
        )

    def enter_candidate(inputs: RaftInputs, core: RaftCore, *args: object) -> CandidateData:
        """Start an election in a new term (also reused for a split vote)."""
        core.leader = None
        core.set_hard_state(core.term + 1, core.node_id)
        core.logger.info(
            "entering candidate state", node=core.describe_node("Candidate"), term=core.term
        )
        transfer, core.transfer_election = core.transfer_election, False
        ask_for_votes(core, term=core.term, pre_vote=False, transfer=transfer)
        needed = votes_needed(len(core.voters))
        core.logger.debug("votes", needed=needed)
        core.logger.debug("vote granted", **{"from": core.node_id, "term": core.term, "tally": 1})
        timer = core.candidate_timer(inputs.election_timeout)
        if needed <= 1:
            inputs._won_election(1)
        return CandidateData(timer, {core.node_id})

    def enter_leader(inputs: RaftInputs, core: RaftCore, tally: int) -> LeaderData:
        core.logger.info("election won", tally=tally)
        core.logger.info("entering leader state", leader=core.describe_node("Leader"))
        core.leader = Server(id=core.node_id, address=core.address)
        core.last_contact = None
        progress = {p.id: Progress(next_index=core.log.last_index + 1) for p in core.peers}
        # A no-op in the new term lets the leader commit everything before it,
        # and reads wait for it (Raft §8).
        noop = core.append_local(EntryType.NOOP)
        data = LeaderData(
            heartbeat=core.loop(inputs.heartbeat_due),
            lease_check=core.loop(inputs.lease_due),
            progress=progress,
            pending={},
            noop_index=noop.index,
            started_at=core.clock.seconds(),
        )
        _keep_in_touch(core, data)
        broadcast(core, data)
        core.outbox.append(LeadershipChanged(True))
        return data

    Stopped = builder.state("Stopped")
    Follower = builder.state("Follower", enter_follower)
    PreCandidate = builder.state("PreCandidate", enter_pre_candidate)
    Candidate = builder.state("Candidate", enter_candidate)
    Leader = builder.state("Leader", enter_leader)
    ShutDown = builder.state("ShutDown")
    Campaigning = (PreCandidate, Candidate)
    NotLeading = (Follower, PreCandidate, Candidate)

    # -- lifecycle ---------------------------------------------------------

    @Stopped.upon(RaftInputs.start).to(Follower)
    def started(inputs: RaftInputs, core: RaftCore) -> None:
        if core.peers:
            core.votes_blocked_until = core.clock.seconds() + core.timings.heartbeat_timeout

    Stopped.upon(RaftInputs.stop).to(ShutDown).returns(None)
    ShutDown.upon(RaftInputs.stop).loop().returns(None)

    @Follower.upon(RaftInputs.stop).to(ShutDown)
    def stop_follower(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        cancel_timer(data.timer)

    for state in Campaigning:

        @state.upon(RaftInputs.stop).to(ShutDown)
        def stop_candidate(inputs: RaftInputs, core: RaftCore, data: CandidateData) -> None:
            cancel_timer(data.timer)

    @Leader.upon(RaftInputs.stop).to(ShutDown)
    def stop_leader(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        leave_leadership(core, data, RaftShutdown("raft is shutting down"))
        core.leader = None

    # -- elections -----------------------------------------------------------

    @Follower.upon(RaftInputs.election_timeout).loop()
    def follower_timed_out(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        if core.is_voter:
            core.logger.warn(
                "heartbeat timeout reached, starting election",
                **{"last-leader": core.leader.address if core.leader else None},
            )
            if core.peers:
                inputs._start_pre_vote()
            else:
                inputs._start_election()
            return
        # Not bootstrapped, or removed from the configuration: keep waiting
        # for a leader to contact us, as hashicorp/raft does.
        if not data.warned_no_election:
            data.warned_no_election = True
            core.logger.warn(
                "no known peers, aborting election"
                if not core.voters
                else "not part of stable configuration, aborting election"
            )
        data.timer = core.follower_timer(inputs.election_timeout)

    @Follower.upon(RaftInputs._start_pre_vote).to(PreCandidate)
    def become_pre_candidate(inputs: RaftInputs, core: RaftCore, data: FollowerData) -> None:
        cancel_timer(data.timer)

    @Follower.upon(RaftInputs._start_election).to(Candidate)
    @PreCandidate.upon(RaftInputs._start_election).to(Candidate)
    def become_candidate(inputs: RaftInputs, core: RaftCore, data: TimedRole) -> None:
        cancel_timer(data.timer)

    for state in (Candidate, Leader):
        state.upon(RaftInputs._start_election).loop().returns(None)
    for state in (PreCandidate, Candidate, Leader):
        state.upon(RaftInputs._start_pre_vote).loop().returns(None)

    @PreCandidate.upon(RaftInputs.election_timeout).loop()
    def pre_vote_again(inputs: RaftInputs, core: RaftCore, data: CandidateData) -> None:
        fresh = enter_pre_candidate(inputs, core)
        data.timer, data.votes = fresh.timer, fresh.votes

    @PreCandidate.upon(RaftInputs.pre_vote_response_received).loop()
    def count_pre_vote(
        inputs: RaftInputs, core: RaftCore, data: CandidateData, msg: RequestVoteResponse
    ) -> None:
        if msg.term != core.term + 1 or not msg.granted:
            return
        data.votes.add(msg.voter_id)
        if len(data.votes) >= votes_needed(len(core.voters)):
            inputs._start_election()

    @Candidate.upon(RaftInputs.election_timeout).loop()
    def split_vote(inputs: RaftInputs, core: RaftCore, data: CandidateData) -> None:
        core.logger.warn("Election timeout reached, restarting election")
        fresh = enter_candidate(inputs, core)
        data.timer, data.votes = fresh.timer, fresh.votes

    @Candidate.upon(RaftInputs.vote_response_received).loop()
    def count_vote(
        inputs: RaftInputs, core: RaftCore, data: CandidateData, msg: RequestVoteResponse
    ) -> None:
        if msg.term != core.term or not msg.granted:
            return
        data.votes.add(msg.voter_id)
        core.logger.debug(
            "vote granted", **{"from": msg.voter_id, "term": core.term, "tally": len(data.votes)}
        )
        if len(data.votes) >= votes_needed(len(core.voters)):
            inputs._won_election(len(data.votes))

    @Candidate.upon(RaftInputs._won_election).to(Leader)
    def won(inputs: RaftInputs, core: RaftCore, data: CandidateData, tally: int) -> None:
        cancel_timer(data.timer)

    # Late or stale answers are normal in Raft: ignored on purpose.
    for state in (Follower, PreCandidate, Leader):
        state.upon(RaftInputs.vote_response_received).loop().returns(None)
    for state in (Follower, Candidate, Leader):
        state.upon(RaftInputs.pre_vote_response_received).loop().returns(None)
    for state in (Follower, PreCandidate, Leader):
        state.upon(RaftInputs._won_election).loop().returns(None)

    @Follower.upon(RaftInputs.request_vote_received).loop()
    @PreCandidate.upon(RaftInputs.request_vote_received).loop()
    def vote_as_follower(
        inputs: RaftInputs, core: RaftCore, data: TimedRole, msg: RequestVote
    ) -> None:
        if answer_vote(core, msg):
            cancel_timer(data.timer)
            data.timer = core.follower_timer(inputs.election_timeout)

    @Candidate.upon(RaftInputs.request_vote_received, nodata=True).loop()
    @Leader.upon(RaftInputs.request_vote_received, nodata=True).loop()
    def refuse_vote(inputs: RaftInputs, core: RaftCore, msg: RequestVote) -> None:
        # Same term: we voted for ourselves already.
        answer_vote(core, msg)

    for state in (Follower, PreCandidate, Candidate, Leader):
        state.upon(RaftInputs.pre_vote_received, nodata=True).loop()(
            lambda inputs, core, msg: answer_pre_vote(core, msg) and None
        )

    @Follower.upon(RaftInputs.timeout_now_received).loop()
    @PreCandidate.upon(RaftInputs.timeout_now_received).loop()
    def take_over(inputs: RaftInputs, core: RaftCore, data: TimedRole, msg: TimeoutNow) -> None:
        if not core.is_voter:
            return
        core.logger.info("received leadership transfer request", leader=msg.leader_address)
        core.transfer_election = True
        inputs._start_election()

    for state in (Candidate, Leader):
        state.upon(RaftInputs.timeout_now_received).loop().returns(None)

    # -- the higher-term rule -------------------------------------------------

    @Follower.upon(RaftInputs.higher_term_seen).loop()
    def follower_new_term(
        inputs: RaftInputs, core: RaftCore, data: FollowerData, term: int, leader: Server | None
    ) -> None:
        core.set_hard_state(term, None)
        core.leader = leader

    for state in Campaigning:

        @state.upon(RaftInputs.higher_term_seen).to(Follower)
        def candidate_steps_down(
            inputs: RaftInputs,
            core: RaftCore,
            data: CandidateData,
            term: int,
            leader: Server | None,
        ) -> None:
            cancel_timer(data.timer)
            core.set_hard_state(term, None)
            core.leader = leader

    @Leader.upon(RaftInputs.higher_term_seen).to(Follower)
    def leader_steps_down(
        inputs: RaftInputs, core: RaftCore, data: LeaderData, term: int, leader: Server | None
    ) -> None:
        leave_leadership(core, data, NotLeader("leadership lost while committing log"))
        core.set_hard_state(term, None)
        core.leader = leader

    @Leader.upon(RaftInputs._quorum_lost).to(Follower)
    def quorum_lost(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        core.logger.warn("failed to contact quorum of nodes, stepping down")
        leave_leadership(core, data, NotLeader("leadership lost while committing log"))
        core.leader = None

    @Leader.upon(RaftInputs._removed).to(Follower)
    def removed(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> None:
        core.logger.info("removed ourself, transitioning to follower")
        leave_leadership(core, data, NotLeader("leadership lost while committing log"))
        core.leader = None

    for state in (Stopped, Follower, PreCandidate, Candidate, ShutDown):
        state.upon(RaftInputs._quorum_lost).loop().returns(None)
        state.upon(RaftInputs._removed).loop().returns(None)
        state.upon(RaftInputs._transfer_timed_out).loop().returns(None)

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
                _keep_in_touch(core, data)
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
        _keep_in_touch(core, data)
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

    for name in ("apply", "read_barrier", "change_configuration", "transfer_leadership"):
        Stopped.upon(getattr(RaftInputs, name)).loop()(_not_leader)
        for state in NotLeading:
            state.upon(getattr(RaftInputs, name), nodata=True).loop()(_not_leader)

    def shut_down(*args: object) -> Deferred[Any]:
        return fail(RaftShutdown("raft is shutting down"))

    for name in ("apply", "read_barrier", "change_configuration", "transfer_leadership"):
        ShutDown.upon(getattr(RaftInputs, name)).loop()(shut_down)

    # Messages and timers that arrive before start() or after stop() are
    # dropped on purpose: a transport may deliver them at any time.
    for name in (
        "election_timeout",
        "heartbeat_due",
        "commit_due",
        "lease_due",
        "end_of_batch",
        "_start_election",
        "_start_pre_vote",
        "_won_election",
        "log_persisted",
        "applied",
        "vote_response_received",
        "pre_vote_response_received",
        "append_entries_received",
        "append_entries_response_received",
        "install_snapshot_received",
        "install_snapshot_response_received",
        "timeout_now_received",
        "request_vote_received",
        "pre_vote_received",
        "higher_term_seen",
    ):
        ShutDown.upon(getattr(RaftInputs, name)).loop().returns(None)
        Stopped.upon(getattr(RaftInputs, name)).loop().returns(None)

    # -- describe() in every state -------------------------------------------------

    def status(core: RaftCore, name: str, lease: float | None = None) -> RaftStatus:
        config_index, voters = core.log.configuration()
        return RaftStatus(
            state=name,
            term=core.term,
            node_id=core.node_id,
            address=core.address,
            leader_id=core.leader.id if core.leader else None,
            leader_address=core.leader.address if core.leader else None,
            last_contact=core.last_contact,
            commit_index=core.commit_index,
            applied_index=core.applied_index,
            last_log_index=core.log.last_index,
            last_log_term=core.log.last_term,
            configuration_index=config_index,
            voters=voters,
            snapshot_index=core.log.snapshot_index,
            lease_expires=lease,
        )

    def describer(name: str):  # type: ignore[no-untyped-def]
        def describe(inputs: RaftInputs, core: RaftCore) -> RaftStatus:
            return status(core, name)

        return describe

    Stopped.upon(RaftInputs.describe).loop()(describer("Shutdown"))
    ShutDown.upon(RaftInputs.describe).loop()(describer("Shutdown"))
    for state, name in (
        (Follower, "Follower"),
        (PreCandidate, "Candidate"),
        (Candidate, "Candidate"),
    ):
        state.upon(RaftInputs.describe, nodata=True).loop()(describer(name))

    @Leader.upon(RaftInputs.describe).loop()
    def describe_leader(inputs: RaftInputs, core: RaftCore, data: LeaderData) -> RaftStatus:
        return status(core, "Leader", lease_expires(core, data))

    return builder.build()


def _note_persisted(inputs: RaftInputs, core: RaftCore, index: int) -> None:
    core.persisted_index = max(core.persisted_index, index)


def _note_applied(inputs: RaftInputs, core: RaftCore, index: int, result: object) -> None:
    core.applied_index = max(core.applied_index, index)


def _keep_in_touch(core: RaftCore, data: LeaderData) -> None:
    """
    Heartbeat only when there is someone to hear from (peers, or a removed
    server still owed the entry removing it); check the quorum only with peers.
    """
    timings = core.timings
    for loop, interval, needed in (
        (data.heartbeat, timings.heartbeat_interval, bool(core.peers or data.departing)),
        (data.lease_check, timings.leader_lease_timeout, bool(core.peers)),
    ):
        if needed and not loop.running:
            loop.start(interval, now=False)
        elif not needed and loop.running:
            loop.stop()


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


RaftMachine = _make_raft_machine()
