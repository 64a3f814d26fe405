"""The per-key linearizability checker: known verdicts, recorded histories, properties."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Hashable, Sequence

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consul_tw.testing.linearizability import (
    CheckResult,
    History,
    Kind,
    Operation,
    Outcome,
    check,
    from_jsonl,
    to_jsonl,
)

_ids = itertools.count()


def op(
    kind: Kind,
    invoked: float,
    completed: float | None,
    *,
    value: Hashable = None,
    expected: Hashable = None,
    result: Hashable = None,
    outcome: Outcome = "ok",
    key: str = "k",
    client: Hashable = "c",
) -> Operation:
    if outcome == "unknown":
        completed = None
    return Operation(
        next(_ids), client, key, kind, invoked, completed, outcome, value, expected, result
    )


def w(value: Hashable, start: float, end: float | None, **kw: object) -> Operation:
    return op("write", start, end, value=value, **kw)  # type: ignore[arg-type]


def r(result: Hashable, start: float, end: float | None, **kw: object) -> Operation:
    return op("read", start, end, result=result, **kw)  # type: ignore[arg-type]


def cas(
    expected: Hashable, new: Hashable, result: bool | None, start: float, end: float | None, **kw
) -> Operation:
    return op("cas", start, end, value=new, expected=expected, result=result, **kw)


def delete(start: float, end: float | None, **kw: object) -> Operation:
    return op("delete", start, end, **kw)  # type: ignore[arg-type]


def assert_valid_witness(
    history: Sequence[Operation],
    result: CheckResult,
    initial: dict[str, Hashable] | None = None,
) -> None:
    """Replay the checker's claimed order independently: the verdict must be earned."""
    assert result.ok, result.explanation
    for key in {o.key for o in history}:
        ops = [o for o in history if o.key == key]
        order = list(result.witness.get(key, ()))
        assert len(set(map(id, order))) == len(order)
        must = {id(o) for o in ops if o.outcome == "ok"}
        assert must <= {id(o) for o in order}
        assert all(o.outcome != "fail" and o.key == key for o in order)
        latest = float("-inf")  # no operation may precede one that completed before it began
        for b in order:
            assert b.completed is None or b.completed >= latest, b
            latest = max(latest, b.invoked)
        state = (initial or {}).get(key)
        for o in order:
            if o.kind == "write":
                state = o.value
            elif o.kind == "delete":
                state = None
            elif o.kind == "read":
                assert o.outcome != "ok" or o.result == state, (o, state)
            elif o.outcome == "ok" and o.result is False:
                assert state != o.expected, (o, state)
            else:
                assert state == o.expected, (o, state)
                state = o.value


def assert_linearizable(history: Sequence[Operation], **kw: object) -> CheckResult:
    result = check(history, **kw)  # type: ignore[arg-type]
    assert_valid_witness(history, result, kw.get("initial"))  # type: ignore[arg-type]
    return result


def assert_violation(
    history: Sequence[Operation], key: str = "k", *, screened: bool | None = None, **kw: object
) -> CheckResult:
    """
    The search alone and the full check (screening first) must both refute ``history``;
    ``screened`` says whether the screening alone must (or must not) be what caught it.
    Returns the search's verdict, whose explanation is the longest partial linearization.
    """
    searched = check(history, prescreen=False, **kw)  # type: ignore[arg-type]
    full = check(history, **kw)  # type: ignore[arg-type]
    for result in (searched, full):
        assert result.status == "violation", result.explanation
        assert not result.ok
        assert result.key == key
        assert repr(key) in result.explanation
        assert result.stuck
    if screened is not None:
        assert full.screened is screened, full.explanation
    assert not searched.screened
    return searched


# --- sequential histories -------------------------------------------------------------------


def test_empty_and_trivial() -> None:
    assert check([]).ok
    assert_linearizable([r(None, 0, 1)])
    assert_linearizable([w("a", 0, 1), r("a", 2, 3)])


def test_sequential_register() -> None:
    assert_linearizable(
        [
            r(None, 0, 1),
            w("a", 2, 3),
            r("a", 4, 5),
            cas("a", "b", True, 6, 7),
            cas("a", "c", False, 8, 9),
            r("b", 10, 11),
            delete(12, 13),
            r(None, 14, 15),
            cas(None, "d", True, 16, 17),
            r("d", 18, 19),
        ]
    )


def test_read_of_a_never_written_value() -> None:
    bad = r("ghost", 4, 5)
    history = [w("a", 0, 1), r("a", 2, 3), bad]
    result = assert_violation(history, screened=True)
    assert result.stuck[0] is bad
    assert [o.value for o in result.linearized if o.kind == "write"] == ["a"]
    screened = check(history)
    assert screened.stuck[0] is bad
    assert "saw 'ghost'" in screened.explanation and f"#{bad.id}" in screened.explanation
    bad_cas = cas("ghost", "b", True, 4, 5)
    assert check([w("a", 0, 1), bad_cas]).stuck[0] is bad_cas
    assert_violation([w("a", 0, 1), bad_cas], screened=True)


# --- classic violations ---------------------------------------------------------------------


def test_stale_read() -> None:
    a, b, stale = w("a", 0, 1), w("b", 2, 3), r("a", 4, 5)
    assert_violation([a, b, stale], screened=True)
    text = check([a, b, stale]).explanation
    assert f"saw 'a':\n  {stale.describe()}\nbut before it began" in text
    assert f"replaced by:\n  {b.describe()}\n" in text
    assert f"can have come in between:\n  {a.describe()}" in text
    # Had the read begun before the second write completed, "a" would be fine.
    assert_linearizable([w("a", 0, 1), w("b", 2, 3), r("a", 2.5, 5)])


def test_read_before_the_write_was_invoked() -> None:
    assert_violation([r("a", 0, 1), w("a", 2, 3)], screened=True)
    assert_linearizable([r("a", 0, 2.5), w("a", 2, 3)])


def test_equal_timestamps_count_as_concurrent() -> None:
    # A clock cannot order a completion and an invocation stamped alike.
    assert_linearizable([r("a", 0, 2), w("a", 2, 3)])
    assert_linearizable([w("a", 0, 1), w("b", 1, 3), r("a", 2, 4)])


def test_two_successful_cas_from_the_same_value() -> None:
    history = [w("a", 0, 1), cas("a", "b", True, 2, 5), cas("a", "c", True, 2, 5)]
    assert_violation(history, screened=True)
    assert "2 compare-and-sets from 'a' succeeded" in check(history).explanation
    assert_violation([cas(None, "b", True, 0, 5), cas(None, "c", True, 0, 5)], screened=True)
    # A delete in between lets the second creator succeed too.
    assert_linearizable([cas(None, "b", True, 0, 5), delete(1, 2), cas(None, "c", True, 3, 5)])
    # Not when the delete certainly came first: only the search sees the order.
    assert_violation(
        [delete(0, 1), cas(None, "b", True, 2, 5), cas(None, "c", True, 2, 5)], screened=False
    )
    assert_linearizable([w("a", 0, 1), cas("a", "b", True, 2, 5), cas("a", "c", False, 2, 5)])


def test_lost_write() -> None:
    # An acknowledged write that later readers never see.
    assert_violation([w("a", 0, 1), r(None, 2, 3)], screened=True)
    # Two concurrent writes: "b" won, so "a" cannot resurface afterwards.
    assert_violation([w("a", 0, 1), w("b", 0, 1), r("b", 2, 3), r("a", 4, 5)], screened=False)
    assert_linearizable([w("a", 0, 1), w("b", 0, 1), r("a", 2, 3), r("a", 4, 5)])


def test_failed_cas_that_should_have_succeeded() -> None:
    assert_violation([w("a", 0, 1), cas("a", "b", False, 2, 3)], screened=False)
    assert_violation([cas(None, "b", False, 0, 1)], screened=False)


def test_violation_on_one_key_of_many() -> None:
    good = [w(f"{k}1", 0, 1, key=k) for k in "xyz"] + [r(f"{k}1", 2, 3, key=k) for k in "xyz"]
    assert_linearizable(good)
    result = assert_violation([*good, r("x1", 4, 5, key="y")], key="y")
    assert all(o.key == "y" for o in result.linearized + result.stuck)


# --- concurrency that needs a non-obvious order ---------------------------------------------


def test_long_write_linearized_after_a_short_one() -> None:
    # "a" is invoked first, but must take effect after "b" and after the read of "b".
    assert_linearizable([w("a", 0, 10), w("b", 1, 2), r("b", 3, 4), r("a", 5, 6)])
    assert_violation([w("a", 0, 10), w("b", 1, 2), r("b", 3, 4), r("a", 5, 6), r("b", 7, 8)])


def test_reads_bracket_a_cas_chain() -> None:
    history = [
        w("a", 0, 1),
        cas("b", "c", True, 2, 20),
        cas("a", "b", True, 3, 20),
        r("a", 4, 5),
        r("b", 6, 7),
        cas("a", "x", False, 6, 9),
        r("c", 10, 11),
    ]
    result = assert_linearizable(history)
    assert [o.value for o in result.witness["k"] if o.kind == "cas" and o.result] == ["b", "c"]


def test_many_concurrent_readers_of_two_values() -> None:
    # Twenty overlapping reads alternate between the old and the new value: every "a" can
    # be placed before the write of "b" and every "b" after it.
    history = [w("a", 0, 1), w("b", 2, 50)]
    history += [r("a" if i % 2 else "b", 3 + i, 30 + i) for i in range(20)]
    assert_linearizable([*history, r("b", 60, 61)])
    # Once a read of "b" has completed, no later read may see "a".
    assert_violation([*history, r("a", 49.5, 70)])
    assert_linearizable([*history, r("a", 29, 70)])


# --- unknown and failed outcomes ------------------------------------------------------------


def test_unknown_write_observed_or_not() -> None:
    assert_linearizable([w("a", 0, 1), w("b", 2, None, outcome="unknown"), r("b", 100, 101)])
    assert_linearizable([w("a", 0, 1), w("b", 2, None, outcome="unknown"), r("a", 100, 101)])
    # It may take effect late, but only once: "a" then "b" then "a" again is impossible.
    assert_violation(
        [
            w("a", 0, 1),
            w("b", 2, None, outcome="unknown"),
            r("b", 3, 4),
            r("a", 5, 6),
        ]
    )
    # ...and not before it was invoked.
    assert_violation([r("b", 0, 1), w("b", 2, None, outcome="unknown")])


def test_unknown_cas_and_delete() -> None:
    base = [w("a", 0, 1), cas("a", "b", None, 2, None, outcome="unknown")]
    assert_linearizable([*base, r("b", 3, 4)])
    assert_linearizable([*base, r("a", 3, 4), r("b", 5, 6)])
    # It could only have succeeded from "a".
    assert_violation([w("z", 0, 1), cas("a", "b", None, 2, None, outcome="unknown"), r("b", 3, 4)])
    gone = [w("a", 0, 1), delete(2, None, outcome="unknown")]
    assert_linearizable([*gone, r("a", 3, 4), r(None, 5, 6)])
    assert_violation([*gone, r(None, 3, 4), r("a", 5, 6)])


def test_unknown_reads_are_unconstrained() -> None:
    assert_linearizable([w("a", 0, 1), r("zzz", 2, None, outcome="unknown")])


def test_failed_operations_are_dropped() -> None:
    assert_linearizable([w("a", 0, 1), w("b", 2, 3, outcome="fail"), r("a", 4, 5)])
    # A failed write certainly did not happen, so seeing its value is a violation.
    assert_violation([w("a", 0, 1), w("b", 2, 3, outcome="fail"), r("b", 4, 5)])
    assert_linearizable([cas(None, "a", None, 0, 1, outcome="fail"), r(None, 2, 3)])


# --- deletes and create-only cas ------------------------------------------------------------


def test_delete() -> None:
    assert_linearizable([w("a", 0, 1), delete(2, 3), r(None, 4, 5)])
    assert_violation([w("a", 0, 1), delete(2, 3), r("a", 4, 5)])
    assert_linearizable([w("a", 0, 1), delete(2, 6), r("a", 3, 4), r(None, 5, 7)])
    assert_violation([w("a", 0, 1), delete(2, 6), r(None, 3, 4), r("a", 5, 7)])


def test_cas_create_only() -> None:
    assert_linearizable([cas(None, "a", True, 0, 1), r("a", 2, 3), cas(None, "b", False, 4, 5)])
    assert_violation([w("a", 0, 1), cas(None, "b", True, 2, 3)])
    assert_linearizable([w("a", 0, 1), delete(2, 3), cas(None, "b", True, 4, 5), r("b", 6, 7)])
    # Concurrent creators: exactly one wins.
    assert_linearizable([cas(None, "a", False, 0, 5), cas(None, "b", True, 0, 5), r("b", 6, 7)])


def test_initial_values() -> None:
    assert_violation([r("seed", 0, 1)])
    assert_linearizable([r("seed", 0, 1), cas("seed", "x", True, 2, 3)], initial={"k": "seed"})


def test_write_that_repeats_the_current_value() -> None:
    # Values need not be unique: the checker must not assume it.
    assert_linearizable([w("a", 0, 1), w("b", 2, 3), w("a", 4, 5), r("a", 6, 7)])
    assert_violation([w("a", 0, 1), w("b", 2, 3), w("a", 4, 5), r("b", 6, 7)])
    assert_linearizable([w("a", 0, 10), w("a", 0, 10), r("a", 1, 2), r("a", 3, 4)])


# --- budget, depth, explanations --------------------------------------------------------------


def test_budget_exhaustion_is_unknown_not_a_verdict() -> None:
    history = generate(random.Random(7), ops=200, clients=16, keys=1)
    assert check(history).ok
    result = check(history, max_states=10)
    assert result.status == "unknown"
    assert not result.ok
    assert result.key == "k0" and "gave up" in result.explanation
    assert check(history, timeout=0.0).status == "unknown"


def test_deep_sequential_history_does_not_recurse() -> None:
    history = []
    for i in range(3000):
        history += [w(i, 4 * i, 4 * i + 1), r(i, 4 * i + 2, 4 * i + 3)]
    result = assert_linearizable(history)
    assert result.states == len(history)
    history[-1] = r(0, history[-1].invoked, history[-1].completed)
    assert_violation(history)


def test_explanation_names_the_stuck_operation() -> None:
    a, b, read = (
        w("a", 0, 1, client="alice"),
        w("b", 2, 3, client="bob"),
        r("a", 4, 5, client="carol"),
    )
    result = assert_violation([a, b, read])
    assert result.linearized == (a,)
    assert result.stuck == (b, b)  # the blocking completion, then each candidate
    text = result.explanation
    assert "1 of 3 completed operations" in text
    assert "leaving the value 'a'" in text
    assert "client='bob' write 'b' [2.000000, 3.000000] ok" in text
    assert f"would overwrite the value #{read.id} still needs" in text
    assert str(result) == text

    # Each creator would destroy the absence the other one needs.
    c1, c2 = cas(None, "x", True, 0, 5), cas(None, "y", True, 1, 4)
    result = assert_violation([c1, c2])
    assert result.linearized == () and result.stuck == (c2, c1, c2)
    assert "leaving the value None" in result.explanation

    early, write = r("a", 0, 1), w("a", 2, 3)
    result = assert_violation([early, write])
    assert result.stuck == (early, early)
    assert "read => 'a' [0.000000, 1.000000] ok: does not fit the value" in result.explanation


# --- the recorder and files -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_history_records_outcomes_and_times() -> None:
    history = History(clock=FakeClock())
    t1 = history.invoke("c1", "k", "write", value="a")
    t2 = history.invoke("c2", "k", "read")
    t3 = history.invoke("c3", "k", "cas", expected="a", value="b")
    t4 = history.invoke("c4", "k", "delete")
    t5 = history.invoke("c5", "k", "write", value="never")
    written = history.complete(t1)
    assert (written.invoked, written.completed, written.outcome) == (1.0, 6.0, "ok")
    history.complete(t2, "a")
    history.unknown(t3)
    history.fail(t5)
    assert len(history) == 5
    ops = history.operations()
    assert [o.id for o in ops] == [t1, t2, t3, t4, t5]
    assert [o.outcome for o in ops] == ["ok", "ok", "unknown", "unknown", "fail"]
    assert ops[2].completed is None and ops[3].completed is None  # t4 is still pending
    assert check(history).ok
    with pytest.raises(KeyError):
        history.complete(t1)


def test_history_rejects_malformed_operations() -> None:
    history = History()
    with pytest.raises(ValueError):
        history.invoke("c", "k", "write")
    with pytest.raises(ValueError):
        history.invoke("c", "k", "increment")  # type: ignore[arg-type]
    token = history.invoke("c", "k", "cas", expected=None, value="a")
    with pytest.raises(ValueError):
        history.complete(token, "yes")
    history.complete(token, True)  # still pending after the bad attempt
    with pytest.raises(ValueError):
        Operation(0, "c", "k", "read", 2.0, 1.0, "ok")
    with pytest.raises(ValueError):
        Operation(0, "c", "k", "read", 2.0, None, "ok")


def test_history_is_thread_safe() -> None:
    """Threads against a locked dict are linearizable by construction, and so recorded."""
    history = History()
    store: dict[str, str] = {}
    lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(n)
        for i in range(60):
            key = f"k{rng.randrange(3)}"
            kind: Kind = rng.choice(["write", "read", "cas", "delete"])
            value = f"{n}-{i}"
            with lock:
                seen = [None, *store.values()]
            expected = rng.choice(seen) if kind == "cas" else None
            new = None if kind in ("read", "delete") else value
            token = history.invoke(n, key, kind, value=new, expected=expected)
            with lock:
                result: Hashable = None
                if kind == "write":
                    store[key] = value
                elif kind == "delete":
                    store.pop(key, None)
                elif kind == "read":
                    result = store.get(key)
                else:
                    result = store.get(key) == expected
                    if result:
                        store[key] = value
            history.complete(token, result)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(history) == 480
    assert_valid_witness(history.operations(), check(history))


def test_jsonl_round_trip(tmp_path) -> None:
    history = [
        w("a", 0.5, 1.25, client="alice"),
        w(b"\x00\xff", 2, 3, client=7, key="bin"),
        r(b"\x00\xff", 4, 5, key="bin"),
        cas("a", "b", True, 6, 7),
        cas(None, "c", None, 8, None, outcome="unknown"),
        delete(9, 10, outcome="fail", client=("node", 3)),
        w(("tuple", b"\x01", 2), 13, 14, key="t"),
        r(None, 11, 12, key="other"),
    ]
    path = tmp_path / "history.jsonl"
    to_jsonl(history, path)
    assert len(path.read_text().splitlines()) == len(history)
    assert from_jsonl(path) == history
    recorder = History(clock=FakeClock())
    recorder.complete(recorder.invoke("x", "k", "read"), None)
    to_jsonl(recorder, path)
    assert from_jsonl(path) == recorder.operations()


# --- generated histories ----------------------------------------------------------------------


def generate(
    rng: random.Random,
    ops: int,
    clients: int,
    keys: int,
    unknown: float = 0.0,
    fail: float = 0.0,
) -> list[Operation]:
    """
    A linearizable history by construction: each client runs its operations back to back,
    and each operation takes effect on a dict at a random instant inside its interval.
    """
    free = [rng.uniform(0, 1) for _ in range(clients)]
    planned = []
    for n in range(ops):
        c = n % clients
        start = free[c] + rng.uniform(0, 0.5)
        end = start + rng.uniform(0.1, 5.0)
        free[c] = end
        planned.append((rng.uniform(start, end), n, c, start, end, f"k{rng.randrange(keys)}"))
    planned.sort()
    store: dict[str, str] = {}
    written: dict[str, list[str]] = {}
    history = []
    for _, n, c, start, end, key in planned:
        kind = rng.choice(["write", "write", "read", "read", "read", "cas", "cas", "delete"])
        value = None if kind in ("read", "delete") else f"v{n}"
        expected = None
        if kind == "cas":
            choices = [store.get(key), None, *written.get(key, [])[-3:]]
            expected = rng.choice(choices)
        roll = rng.random()
        outcome = "fail" if roll < fail else "unknown" if roll < fail + unknown else "ok"
        applies = outcome == "ok" or (outcome == "unknown" and rng.random() < 0.5)
        result: Hashable = None
        if kind == "read":
            result = store.get(key)
        elif kind == "cas":
            result = store.get(key) == expected
        if applies:
            if kind == "write" or (kind == "cas" and result):
                store[key] = value  # type: ignore[assignment]
                written.setdefault(key, []).append(value)  # type: ignore[arg-type]
            elif kind == "delete":
                store.pop(key, None)
        completed = end if outcome != "unknown" else None
        history.append(
            Operation(n, c, key, kind, start, completed, outcome, value, expected, result)  # type: ignore[arg-type]
        )
    history.sort(key=lambda o: o.id)
    return history


def corruptions(history: Sequence[Operation]) -> list[tuple[int, Hashable]]:
    """
    Ways to change one ok read's result that provably make the history non-linearizable,
    given that each value is written at most once per key: a value never written; a value
    whose only writer began after the read ended; a value overwritten by a completed write
    (or delete, or successful cas) that itself ended before the read began.
    """
    reads = [i for i, o in enumerate(history) if o.kind == "read" and o.outcome == "ok"]
    producers = [
        o
        for o in history
        if o.outcome != "fail"
        and (o.kind == "write" or (o.kind == "cas" and o.result is not False))
    ]
    effective = [
        o
        for o in history
        if o.outcome == "ok" and (o.kind in ("write", "delete") or (o.kind == "cas" and o.result))
    ]
    found: list[tuple[int, Hashable]] = [(i, "never-written") for i in reads]
    for i in reads:
        read = history[i]
        assert read.completed is not None
        for p in producers:
            if p.key != read.key or p.value == read.result:
                continue
            if p.invoked > read.completed:
                found.append((i, p.value))  # from the future
            elif p.outcome == "ok" and any(
                q.key == read.key
                and q.value != p.value
                and p.completed < q.invoked  # type: ignore[operator]
                and q.completed < read.invoked  # type: ignore[operator]
                for q in effective
            ):
                found.append((i, p.value))  # overwritten before the read began
    return found


def corrupt(history: Sequence[Operation], choice: int) -> tuple[list[Operation], str] | None:
    options = corruptions(history)
    if not options:
        return None
    i, value = options[choice % len(options)]
    bad = list(history)
    bad[i] = attrs.evolve(bad[i], result=value)
    return bad, bad[i].key


def test_large_concurrent_history_within_a_modest_budget() -> None:
    """Performance guard by counting, not timing: 300 operations from 32 clients on one key."""
    for seed in range(3):
        history = generate(random.Random(seed), ops=300, clients=32, keys=1, unknown=0.05)
        result = check(history, max_states=5_000)
        assert_valid_witness(history, result)
        assert result.states < 5_000
    bad, key = corrupt(history, 150)  # type: ignore[misc]
    result = check(bad, max_states=5_000)
    assert result.status == "violation" and result.key == key and result.screened


def test_many_keys() -> None:
    history = generate(random.Random(1), ops=3000, clients=32, keys=20, unknown=0.03, fail=0.03)
    result = check(history, max_states=50_000)
    assert_valid_witness(history, result)


sequential_steps = st.lists(
    st.tuples(
        st.sampled_from(["write", "read", "read", "cas", "delete"]),
        st.integers(0, 2),  # key
        st.booleans(),  # a cas expects the current value (else an older or absent one)
        st.floats(0, 4),  # invoke this much earlier
        st.floats(0, 4),  # complete this much later
        st.sampled_from(["ok", "ok", "ok", "ok", "unknown", "fail"]),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=sequential_steps, choice=st.integers(0, 1000))
def test_widened_sequential_histories(steps, choice: int) -> None:
    """
    Run operations one at a time against a dict, then widen every interval: widening only
    removes real-time constraints, so the history stays linearizable.  Some unknown outcomes
    took effect, failed ones did not.  A read changed as :func:`corruptions` describes can
    then not be explained by any order.
    """
    store: dict[str, str] = {}
    history = []
    for n, (kind, k, current, earlier, later, outcome) in enumerate(steps):
        key = f"k{k}"
        value = f"v{n}" if kind in ("write", "cas") else None
        expected = store.get(key) if current else (None if n % 2 else f"v{n - 1}")
        if kind != "cas":
            expected = None
        result: Hashable = None
        if kind == "read":
            result = store.get(key)
        elif kind == "cas":
            result = store.get(key) == expected
        if outcome != "fail":
            if kind == "write" or (kind == "cas" and result):
                store[key] = value  # type: ignore[assignment]
            elif kind == "delete":
                store.pop(key, None)
        completed = None if outcome == "unknown" else 2 * n + 1 + later
        history.append(
            Operation(
                n, "c", key, kind, 2 * n - earlier, completed, outcome, value, expected, result
            )
        )
    assert_linearizable(history)
    corrupted = corrupt(history, choice)
    if corrupted is not None:
        bad, key = corrupted
        assert_violation(bad, key)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    clients=st.integers(1, 8),
    choice=st.integers(0, 1000),
)
def test_generated_concurrent_histories(seed: int, clients: int, choice: int) -> None:
    history = generate(random.Random(seed), ops=40, clients=clients, keys=2, unknown=0.1, fail=0.1)
    assert_linearizable(history)
    corrupted = corrupt(history, choice)
    if corrupted is not None:
        bad, key = corrupted
        assert_violation(bad, key)
