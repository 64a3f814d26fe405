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
docs/architecture.md; the transitions live in
:mod:`consul_tw.raft.election_transitions` and
:mod:`consul_tw.raft.leader_transitions`, the role factories in
:mod:`consul_tw.raft.roles`.
"""

from __future__ import annotations

from typing import Any

from automat import TypeMachineBuilder
from twisted.internet.defer import Deferred, fail

from consul_tw.raft.core import (
    CandidateData,
    FollowerData,
    LeaderData,
    NotLeader,
    RaftCore,
    RaftShutdown,
    RaftStatus,
    cancel_timer,
)
from consul_tw.raft.election_transitions import add_election_transitions
from consul_tw.raft.inputs import RaftInputs
from consul_tw.raft.leader_transitions import add_leader_transitions
from consul_tw.raft.replication import lease_expires
from consul_tw.raft.roles import enter_candidate, enter_follower, enter_leader, enter_pre_candidate
from consul_tw.raft.rules import leave_leadership
from consul_tw.raft.states import States

__all__ = ["NotLeader", "RaftCore", "RaftInputs", "RaftMachine", "RaftShutdown", "RaftStatus"]


def _not_leader(*args: object) -> Deferred[Any]:
    return fail(NotLeader("node is not the leader"))


def _make_raft_machine():  # type: ignore[no-untyped-def]
    builder = TypeMachineBuilder(RaftInputs, RaftCore)

    Stopped = builder.state("Stopped")
    Follower = builder.state("Follower", enter_follower)
    PreCandidate = builder.state("PreCandidate", enter_pre_candidate)
    Candidate = builder.state("Candidate", enter_candidate)
    Leader = builder.state("Leader", enter_leader)
    ShutDown = builder.state("ShutDown")
    Campaigning = (PreCandidate, Candidate)
    NotLeading = (Follower, PreCandidate, Candidate)
    s = States(Stopped, Follower, PreCandidate, Candidate, Leader, ShutDown)

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

    add_election_transitions(s)
    add_leader_transitions(s)

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


RaftMachine = _make_raft_machine()
