"""
Raft clusters of 3 and 5 servers on one simulated clock, with Raft's
safety invariants checked after every delivered message.

The fixed-seed scenarios show the behaviours one can name (an election, a
leader crash, a partitioned leader, a server catching up from a snapshot,
membership changes); the hypothesis test then draws seeds, network faults
and a schedule of submits, crashes, restarts, partitions, leadership
transfers, reads and membership changes, and holds every run to the same
invariants and, after healing, to "no acknowledged write is lost".
Timings are :data:`~consul_tw.testing.raft_sim.SIM_TIMINGS` (heartbeats
every 50 ms, follower timeout 0.5-1 s) with millisecond latencies;
snapshots every 40 entries; virtual time is free.

The three bugs this file found (two lease-read safety holes, a wedge on
removing the last voter) are fixed; their tests stay as regression tests.

Set ``RAFT_SIM_EXAMPLES=500`` to explore: more examples, and hypothesis's
own randomness instead of the fixed (derandomized) examples CI runs.
"""

from __future__ import annotations

import os

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure

from consul_tw.raft.messages import Message, RequestVote, RequestVoteResponse
from consul_tw.raft.node import SnapshotPolicy
from consul_tw.testing.raft_invariants import InvariantChecker, Write
from consul_tw.testing.raft_sim import SIM_SNAPSHOTS, Faults, RaftCluster

SIZES = [3, 5]

#: The worst case for an election: a follower waits up to 2 x 0.5 s, a
#: split vote costs up to 2 x 0.5 s more; a few rounds at most.
ELECTION = 10.0


def make(size: int, seed: int, **kw: object) -> RaftCluster:
    return RaftCluster(size=size, seed=seed, **kw)  # type: ignore[arg-type]


def submit_many(cluster: RaftCluster, count: int, to: str | None = None) -> list[Write]:
    writes = [cluster.submit(to=to) for _ in range(count)]
    assert all(w is not None for w in writes)
    return [w for w in writes if w is not None]


def settle(cluster: RaftCluster, writes: list[Write], limit: float = 10.0) -> None:
    cluster.run_until(lambda: all(w.outcome != "pending" for w in writes), limit)


def finish(cluster: RaftCluster) -> None:
    """Converge, check the history, and stop leaving no timer behind."""
    cluster.converge()
    cluster.stop()
    assert cluster.clock.getDelayedCalls() == []


# -- elections ---------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_elects_exactly_one_leader(size: int) -> None:
    """Everyone follows the same leader in the same term, and it stays leader."""
    cluster = make(size, seed=1)
    leader = cluster.wait_for_leader(ELECTION)
    cluster.run(5.0)
    assert cluster.leaders() == [(cluster.nodes[leader].core.term, leader)]
    statuses = [cluster.nodes[n].describe() for n in cluster.node_ids]
    assert {(s.term, s.leader_id) for s in statuses} == {(statuses[0].term, leader)}
    assert [s.state for s in statuses].count("Follower") == size - 1
    assert all(len(s.voters) == size for s in statuses)
    assert cluster.checker.checks > 100
    finish(cluster)


@pytest.mark.parametrize("size", SIZES)
def test_only_the_first_server_bootstraps(size: int) -> None:
    """The others have no configuration, cannot start an election, and learn it from the leader."""
    cluster = make(size, seed=2, bootstrap="first")
    leader = cluster.wait_for_leader(ELECTION)
    assert leader == "n0"
    cluster.run(1.0)
    assert all(len(cluster.nodes[n].describe().voters) == size for n in cluster.node_ids)
    finish(cluster)


# -- replication -------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_replicates_100_commands(size: int) -> None:
    cluster = make(size, seed=3)
    cluster.wait_for_leader(ELECTION)
    writes = submit_many(cluster, 100)
    settle(cluster, writes)
    assert [w.outcome for w in writes] == ["acknowledged"] * 100
    indexes = [w.index or 0 for w in writes]
    assert indexes == sorted(indexes) and len(set(indexes)) == 100
    finish(cluster)
    for node_id in cluster.node_ids:
        assert [data for _, data in cluster.fsm(node_id).applied] == [w.command for w in writes]


@pytest.mark.parametrize("size", SIZES)
def test_leader_crash_elects_a_new_leader_and_loses_no_acknowledged_write(size: int) -> None:
    cluster = make(size, seed=4)
    old = cluster.wait_for_leader(ELECTION)
    before = submit_many(cluster, 20)
    settle(cluster, before)
    # Some writes are in flight when the leader dies: they fail (or may
    # still commit); the acknowledged ones must all survive.
    in_flight = submit_many(cluster, 10)
    cluster.run(0.02)
    cluster.crash(old)
    new = cluster.wait_for_leader(ELECTION)
    assert new != old
    after = submit_many(cluster, 10)
    settle(cluster, before + in_flight + after)
    assert all(w.outcome == "acknowledged" for w in before + after)
    assert all(w.outcome != "pending" for w in in_flight)
    finish(cluster)


@pytest.mark.parametrize("size", SIZES)
def test_restarted_leader_rejoins_as_a_follower_and_catches_up(size: int) -> None:
    cluster = make(size, seed=5)
    old = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 10))
    cluster.crash(old)
    new = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 20))
    cluster.restart(old)
    leader_fsm = cluster.fsm(new)

    def caught_up() -> bool:
        return cluster.fsm(old).applied == leader_fsm.applied

    cluster.run_until(caught_up, 5.0)
    status = cluster.nodes[old].describe()
    assert (status.state, status.leader_id) == ("Follower", new)
    assert status.term == cluster.nodes[new].core.term
    assert len(cluster.fsm(old).applied) == 30
    finish(cluster)


@pytest.mark.parametrize("size", SIZES)
def test_whole_cluster_restart_keeps_acknowledged_writes(size: int) -> None:
    """
    A power cut: every server dies, some mid-write.  The acknowledged
    writes are on a majority's disk, so whoever wins the next election
    holds them, and every fresh FSM replays them.
    """
    cluster = make(size, seed=15)
    cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 20))
    submit_many(cluster, 5)
    cluster.run(0.03)
    for node_id in cluster.node_ids:
        cluster.crash(node_id)
    cluster.run(1.0)
    for node_id in reversed(cluster.node_ids):
        cluster.restart(node_id)
    cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 5))
    finish(cluster)
    assert len(cluster.acknowledged()) >= 25


@pytest.mark.parametrize("size", SIZES)
def test_a_server_left_behind_catches_up_from_a_snapshot(size: int) -> None:
    """
    While a follower is down the others apply 200 writes, snapshot every
    40 and keep only 10 entries behind: the entries it lacks are gone from
    every log, so it must be sent a snapshot, restore its FSM from it, and
    then follow the log again.
    """
    cluster = make(size, seed=18)
    leader = cluster.wait_for_leader(ELECTION)
    behind = next(n for n in cluster.node_ids if n != leader)
    settle(cluster, submit_many(cluster, 5))
    cluster.crash(behind)
    last_before = cluster.nodes[behind].core.log.last_index
    for _ in range(10):
        settle(cluster, submit_many(cluster, 20))
    leader = cluster.wait_for_leader(ELECTION)
    assert cluster.nodes[leader].core.log.first_index > last_before + 1
    cluster.restart(behind)
    settle(cluster, submit_many(cluster, 5))
    cluster.run_until(lambda: cluster.fsm(behind).applied == cluster.fsm(leader).applied, 10.0)
    assert cluster.nodes[behind].describe().snapshot_index > last_before
    assert len(cluster.fsm(behind).applied) == 210
    finish(cluster)


@pytest.mark.parametrize("seed", [24, 31, 35])
def test_a_lagging_server_cannot_win_an_election(seed: int) -> None:
    """
    Two of five servers miss 20 committed writes behind a partition; then
    the leader dies and the partition heals.  The laggards time out first
    (they have not heard from a leader for long) but must lose: a vote or
    pre-vote goes only to a log at least as up to date (Raft §5.4.1).  On
    these seeds a laggard wins, and the checker reports leader
    completeness, as soon as that rule is skipped (checked by mutation).
    """
    cluster = make(5, seed=seed)
    leader = cluster.wait_for_leader(ELECTION)
    a, b, c, d = [n for n in cluster.node_ids if n != leader]
    settle(cluster, submit_many(cluster, 3))
    cluster.partition({leader, c, d}, {a, b})
    settle(cluster, submit_many(cluster, 20))
    assert all(w.outcome == "acknowledged" for w in cluster.writes)
    cluster.crash(leader)
    cluster.heal()
    cluster.run(5.0)
    assert cluster.leader() in (c, d)
    finish(cluster)


@pytest.mark.parametrize("size", SIZES)
def test_partitioned_leader_cannot_commit(size: int) -> None:
    """
    The old leader keeps a minority (itself and, with 5 servers, one
    follower): its writes are never acknowledged, the majority elects a new
    leader that keeps writing, and after the heal the old writes fail and
    vanish from every log.
    """
    cluster = make(size, seed=6)
    old = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 5))
    others = [n for n in cluster.node_ids if n != old]
    minority = {old, *others[: (size - 1) // 2 - 1]}
    majority = set(cluster.node_ids) - minority
    cluster.partition(minority, majority)
    commit_before = cluster.nodes[old].core.commit_index
    stranded = submit_many(cluster, 5, to=old)

    def majority_leader() -> bool:
        return any(node_id in majority for _, node_id in cluster.leaders())

    cluster.run_until(majority_leader, ELECTION)
    new = next(node_id for _, node_id in cluster.leaders() if node_id in majority)
    fresh = submit_many(cluster, 10, to=new)
    settle(cluster, fresh)
    cluster.run(2.0)
    assert all(w.outcome == "acknowledged" for w in fresh)
    # Without a leader lease the old leader waits forever (pending); with
    # one it steps down and fails them.  Never acknowledged either way.
    assert {w.outcome for w in stranded} <= {"pending", "failed"}
    assert cluster.nodes[old].core.commit_index == commit_before
    finish(cluster)
    assert {w.outcome for w in stranded} == {"failed"}
    applied = {data for _, data in cluster.fsm(new).applied}
    assert not applied & {w.command for w in stranded}


@pytest.mark.parametrize("size", SIZES)
def test_progress_through_loss_duplication_and_reordering(size: int) -> None:
    """10 % loss, 10 % duplicates, 1-30 ms latency: writes keep being acknowledged."""
    faults = Faults(drop=0.1, duplicate=0.1, latency=(0.001, 0.030))
    cluster = make(size, seed=7, faults=faults)
    cluster.wait_for_leader(ELECTION)
    writes: list[Write] = []
    for _ in range(100):
        write = cluster.submit()
        if write is not None:
            writes.append(write)
        cluster.run(0.1)
    acknowledged = [w for w in writes if w.outcome == "acknowledged"]
    assert len(acknowledged) >= 80, [w.outcome for w in writes]
    stats = cluster.network.stats
    assert stats.dropped and stats.duplicated
    finish(cluster)


@pytest.mark.parametrize("size", SIZES)
def test_isolated_follower_returns_without_losing_anything(size: int) -> None:
    """
    An isolated follower times out and campaigns alone (in ever higher
    terms, without pre-vote); back, it may depose the leader but cannot win
    with its stale log, and no write is lost.
    """
    cluster = make(size, seed=8)
    leader = cluster.wait_for_leader(ELECTION)
    follower = next(n for n in cluster.node_ids if n != leader)
    cluster.isolate(follower)
    writes = submit_many(cluster, 10)
    cluster.run(5.0)
    cluster.heal()
    writes += [w for w in (cluster.submit() for _ in range(10)) if w is not None]
    finish(cluster)
    assert [w.outcome for w in writes[:10]] == ["acknowledged"] * 10


@pytest.mark.parametrize("size", SIZES)
def test_late_duplicates_do_not_truncate_the_log(size: int) -> None:
    """
    Half the messages are duplicated and latency reaches 0.3 s, so an old
    copy of an AppendEntries often arrives after newer ones were answered
    and committed.  A follower must only truncate on a *conflicting* entry
    (Raft's receiver rule 3): truncating on any overlap drops committed
    entries, which the checker reports on every seed tried.
    """
    cluster = make(size, seed=17, faults=Faults(duplicate=0.5, latency=(0.001, 0.3)))
    cluster.wait_for_leader(ELECTION)
    for _ in range(200):
        cluster.submit()
        cluster.run(0.05)
    assert cluster.network.stats.duplicated > 100
    finish(cluster)
    assert len(cluster.acknowledged()) >= 150


@pytest.mark.parametrize("size", SIZES)
def test_a_restarted_server_remembers_its_vote(size: int) -> None:
    """
    A server votes, crashes and restarts in the same term: it must refuse a
    second candidate, or two leaders could win that term.  Votes are sent
    by hand to a server cut off from the rest (for longer than the
    heartbeat timeout, so leader stickiness does not refuse them), so
    nothing else interferes.
    """
    cluster = make(size, seed=16)
    leader = cluster.wait_for_leader(ELECTION)
    voter, first, second = [n for n in cluster.node_ids if n != leader][:2] + [leader]
    answers: list[tuple[str, bool]] = []

    def tap(src: str, dst: str, message: Message) -> None:
        if src == voter and isinstance(message, RequestVoteResponse):
            answers.append((dst, message.granted))

    cluster.network.tap = tap
    cluster.isolate(voter)
    # Past the heartbeat timeout: leader stickiness no longer refuses votes.
    cluster.run(1.0)
    term = cluster.nodes[voter].core.term + 1

    def ask(candidate: str) -> RequestVote:
        return RequestVote(
            term=term,
            candidate_id=candidate,
            candidate_address=cluster.address(candidate),
            last_log_index=1_000,
            last_log_term=term - 1,
        )

    cluster.nodes[voter].receive(ask(first))
    cluster.run(0)  # the end of the turn: the vote is stored, then sent
    cluster.crash(voter)
    cluster.restart(voter)
    cluster.nodes[voter].receive(ask(second))
    cluster.run(0)
    assert answers == [(first, True), (second, False)]
    finish(cluster)


# -- membership ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_membership_changes_one_server_at_a_time(size: int) -> None:
    """
    Remove a follower, then the leader itself (it steps down once the
    change commits and the rest elect a new leader), writing all along;
    ``converge`` adds both back, and every acknowledged write is applied on
    all servers, including the two that were out of the configuration.
    """
    cluster = make(size, seed=20)
    leader = cluster.wait_for_leader(ELECTION)
    follower = next(n for n in cluster.node_ids if n != leader)
    settle(cluster, submit_many(cluster, 5))
    cluster.reconfigure(follower, add=False)
    cluster.run(0.5)
    assert cluster.voters() == set(cluster.node_ids) - {follower}
    settle(cluster, submit_many(cluster, 5))
    cluster.reconfigure(leader, add=False)
    cluster.run_until(lambda: cluster.leader() not in (None, leader), ELECTION)
    assert cluster.voters() == set(cluster.node_ids) - {follower, leader}
    settle(cluster, submit_many(cluster, 5))
    assert len(cluster.acknowledged()) == 15
    finish(cluster)


def test_the_last_voter_cannot_be_removed() -> None:
    """
    hashicorp/raft refuses a configuration without voters.  Here the
    change is accepted: the entry can never commit (no quorum of nobody),
    the leader is left leading nobody, and every later add_voter fails with
    "configuration change already in progress", so the cluster is wedged.
    Random schedules that remove servers hit this whenever they remove all.
    """
    cluster = make(3, seed=19)
    leader = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 1))  # this term's no-op is committed
    for other in [n for n in cluster.node_ids if n != leader]:
        cluster.reconfigure(other, add=False)
        cluster.run(0.5)
    assert cluster.voters() == {leader}
    outcome: list[object] = []
    cluster.nodes[leader].remove_server(leader).addBoth(outcome.append)
    cluster.run(1.0)
    assert len(outcome) == 1 and isinstance(outcome[0], Failure), outcome
    finish(cluster)


# -- leader lease: default reads -----------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_no_stale_lease_read_after_a_leadership_transfer(size: int) -> None:
    """
    The target of a transfer is elected without leader stickiness, so the
    old leader must not trust its lease once it sent TimeoutNow: if it does
    not hear of the new term at once (here it is cut off just as the target
    campaigns; in practice a lost or slow RequestVote and AppendEntries), a
    newer leader commits writes while the old lease would still run.  Seed
    21 once showed a default read there answering an index older than an
    acknowledged write; now such a read waits for a quorum round it cannot
    get.
    """
    cluster = make(size, seed=21)
    old = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 3))
    cluster.transfer_leadership()
    others = [n for n in cluster.node_ids if n != old]

    def target_campaigns() -> bool:
        return any(cluster.nodes[n].describe().state == "Candidate" for n in others)

    cluster.run_until(target_campaigns, 1.0, step=0.0002)
    cluster.isolate(old)
    cluster.run_until(lambda: any(n != old for _, n in cluster.leaders()), 1.0, step=0.0005)
    new = next(n for _, n in cluster.leaders() if n != old)
    write = cluster.submit(to=new)
    assert write is not None
    cluster.run_until(lambda: write.outcome != "pending", 1.0, step=0.0005)
    read = cluster.read(to=old)
    cluster.run(0)
    # Not answered (still waiting for a quorum round the cut-off leader cannot
    # get) or failed are both right; only an old index would be a stale read.
    assert (
        read is None
        or read.outcome in ("failed", "pending")
        or (read.index or 0) >= (write.index or 0)
    ), (
        f"stale read on {old}: index {read.index}, after {write.command!r} at {write.index}"
    )
    finish(cluster)


def test_no_stale_lease_read_after_a_voter_restarts() -> None:
    """
    Leader stickiness lives in memory: a follower that restarts has heard
    from no leader, so it grants a vote at once.  Here (3 servers, seed 31)
    C was cut off and keeps pre-voting; A restarts just after acknowledging
    the leader X, and is cut off from X: C's next pre-vote and vote reach
    A, C wins term 3 and commits while X's lease (A's last acknowledgement
    plus 250 ms) runs for another ~150 ms.
    """
    cluster = make(3, seed=31)
    x = cluster.wait_for_leader(ELECTION)
    a, c = [n for n in cluster.node_ids if n != x]
    cluster.run(0.3)
    cluster.partition({x, a}, {c})
    cluster.run(1.0 + 1 / 60)
    cluster.crash(a)
    cluster.restart(a)
    cluster.partition({x}, {a, c})
    cluster.run(2.0)
    finish(cluster)


# -- the checker catches what it claims to ---------------------------------------------


def test_checker_catches_two_entries_at_one_index_and_term() -> None:
    cluster = make(3, seed=9)
    leader = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 3))
    cluster.run(0.5)
    follower = next(n for n in cluster.node_ids if n != leader)
    log = cluster.nodes[follower].core.log
    last = log.entry(log.last_index)
    forged = attrs.evolve(last, data=b"forged")
    log.truncate_after(last.index - 1)
    log.append(forged)
    with pytest.raises(AssertionError, match="State machine safety|Log matching"):
        cluster.check()


def test_checker_catches_two_leaders_in_one_term() -> None:
    cluster = make(3, seed=10)
    leader = cluster.wait_for_leader(ELECTION)
    checker = InvariantChecker()
    checker.check(cluster.all_nodes())
    checker.leaders[cluster.nodes[leader].core.term] = "someone-else"
    checker._fingerprints.clear()
    with pytest.raises(AssertionError, match="Election safety"):
        checker.check(cluster.all_nodes())


def test_checker_catches_a_leader_missing_a_committed_entry() -> None:
    cluster = make(3, seed=11)
    leader = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 3))
    checker = InvariantChecker()
    checker.check(cluster.all_nodes())
    term = cluster.nodes[leader].core.term
    index = max(checker.committed)
    checker.committed[index] = attrs.evolve(checker.committed[index], data=b"x", bound=term - 1)
    checker._leaders_checked.clear()
    checker._fingerprints.clear()
    with pytest.raises(AssertionError, match="Leader completeness"):
        checker.check(cluster.all_nodes())


def test_checker_catches_a_lost_acknowledged_write() -> None:
    cluster = make(3, seed=12)
    cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 3))
    cluster.run(1.0)
    ghost = Write(
        command=b"ghost", node_id="n0", term=1, submitted_at=0.0, outcome="acknowledged", index=2
    )
    with pytest.raises(AssertionError, match="Acknowledged write lost"):
        cluster.checker.check_converged(cluster.all_nodes(), [*cluster.writes, ghost])


def test_checker_catches_an_fsm_applying_out_of_order() -> None:
    cluster = make(3, seed=13)
    leader = cluster.wait_for_leader(ELECTION)
    settle(cluster, submit_many(cluster, 3))
    cluster.fsm(leader).applied.append((1, b"again"))
    with pytest.raises(AssertionError, match="State machine safety"):
        cluster.check()


# -- hypothesis: random schedules ---------------------------------------------------------


@attrs.frozen
class Submit:
    count: int


@attrs.frozen
class Crash:
    #: An index into the servers, or None for the current leader.
    target: int | None


@attrs.frozen
class Restart:
    #: An index into the crashed servers (modulo), or None for all of them.
    target: int | None


@attrs.frozen
class Partition:
    #: Which side each server is on.
    sides: tuple[bool, ...]


@attrs.frozen
class Isolate:
    target: int | None


@attrs.frozen
class Heal:
    pass


@attrs.frozen
class Transfer:
    """The leader hands over to its most up-to-date follower (TimeoutNow)."""


@attrs.frozen
class ReadOp:
    consistent: bool
    #: A server index, or None for the current leader (others answer NotLeader).
    target: int | None


@attrs.frozen
class Reconfigure:
    """Remove a server from the configuration, or add it (back)."""

    target: int
    add: bool


Action = Submit | Crash | Restart | Partition | Isolate | Heal | Transfer | ReadOp | Reconfigure

targets = st.none() | st.integers(min_value=0, max_value=4)
actions = st.one_of(
    st.builds(Submit, st.integers(min_value=1, max_value=8)),
    st.builds(Crash, targets),
    st.builds(Restart, targets),
    st.builds(Partition, st.tuples(*[st.booleans()] * 5)),
    st.builds(Isolate, targets),
    st.just(Heal()),
    st.just(Transfer()),
    st.builds(ReadOp, st.booleans(), targets),
    st.builds(Reconfigure, st.integers(min_value=0, max_value=4), st.booleans()),
)
schedules = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=2.0, allow_nan=False), actions), max_size=14
)
faults = st.builds(
    Faults,
    drop=st.sampled_from([0.0, 0.05, 0.1, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1, 0.3, 0.5]),
    # Up to 0.3 s: still well inside the 0.5-1 s election timeout (Raft's
    # timing requirement), but slow enough that a duplicated AppendEntries
    # arrives after newer ones have been answered and committed.
    latency=st.tuples(st.just(0.001), st.sampled_from([0.005, 0.03, 0.1, 0.3])),
)


def perform(cluster: RaftCluster, action: Action) -> None:
    ids = cluster.node_ids

    def pick(target: int | None) -> str | None:
        return cluster.leader() if target is None else ids[target % len(ids)]

    if isinstance(action, Submit):
        for _ in range(action.count):
            cluster.submit()
    elif isinstance(action, Crash):
        victim = pick(action.target)
        if victim is not None:
            cluster.crash(victim)
    elif isinstance(action, Restart):
        down = sorted(cluster.crashed)
        if down and action.target is not None:
            down = [down[action.target % len(down)]]
        for node_id in down:
            cluster.restart(node_id)
    elif isinstance(action, Partition):
        cluster.partition(
            [n for n, side in zip(ids, action.sides, strict=False) if side],
            [n for n, side in zip(ids, action.sides, strict=False) if not side],
        )
    elif isinstance(action, Isolate):
        victim = pick(action.target)
        if victim is not None:
            cluster.isolate(victim)
    elif isinstance(action, Transfer):
        cluster.transfer_leadership()
    elif isinstance(action, ReadOp):
        cluster.read(consistent=action.consistent, to=pick(action.target))
    elif isinstance(action, Reconfigure):
        target = ids[action.target % len(ids)]
        # Removing the last voter is refused (its own test).
        if action.add or cluster.voters() != {target}:
            cluster.reconfigure(target, add=action.add)
    else:
        cluster.heal()


EXPLORE = "RAFT_SIM_EXAMPLES" in os.environ


@settings(
    max_examples=int(os.environ.get("RAFT_SIM_EXAMPLES", "80")),
    deadline=None,
    derandomize=not EXPLORE,
    print_blob=True,
)
@given(
    size=st.sampled_from(SIZES),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    faults=faults,
    group_commit=st.booleans(),
    # The default, or a snapshot every few entries with almost no log kept
    # behind it: restarted and lagging servers then need InstallSnapshot.
    snapshots=st.sampled_from([SIM_SNAPSHOTS, SnapshotPolicy(threshold=4, trailing_logs=1)]),
    schedule=schedules,
)
def test_random_schedules_keep_raft_safe(
    size: int,
    seed: int,
    faults: Faults,
    group_commit: bool,
    snapshots: SnapshotPolicy,
    schedule: list[tuple[float, Action]],
) -> None:
    """
    Any schedule of faults keeps the invariants at every step; once healed
    and restarted the cluster converges, and every acknowledged write is
    applied everywhere, in the same order.
    """
    cluster = make(
        size, seed=seed, faults=faults, group_commit=group_commit, snapshot_policy=snapshots
    )
    for delay, action in schedule:
        cluster.run(delay)
        perform(cluster, action)
    cluster.run(1.0)
    cluster.converge(limit=120.0)
    cluster.stop()
    assert cluster.clock.getDelayedCalls() == []
