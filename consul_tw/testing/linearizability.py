# -*- test-case-name: tests.unit.test_linearizability -*-
"""
A linearizability checker for histories of key/value operations.

End-to-end tests run many concurrent clients against the KV store, record
when each operation was invoked and when (and how) it completed, and then
ask :func:`check` whether some single sequential order of the operations
explains every result while respecting real time: an operation that
completed before another was invoked must come first.  That is Herlihy and
Wing's linearizability, the guarantee Consul's default (leader-served) KV
reads and writes are meant to give.

How the check works, and why:

- **Per key.**  Linearizability is *local*: a history is linearizable iff
  its sub-history for each object is (Herlihy & Wing 1990; Horn & Kroening
  call exploiting this "P-compositionality").  Each key is checked on its
  own, which turns one search over thousands of operations into many small
  ones.
- **Wing & Gong's search.**  Wing and Gong (1993) search the tree of
  partial linearizations: at each step any operation that is *minimal* (no
  pending operation completed before it was invoked) may take effect next,
  if the sequential model agrees with its result; when an operation's
  completion is reached and it has not taken effect, the search backtracks.
  Events are kept in a doubly linked list so that linearizing an operation
  lifts its invocation and completion out in O(1) and backtracking puts
  them back.  The search here is an explicit stack, not recursion, because
  a key can see thousands of operations.
- **Lowe's memoisation.**  Lowe ("Testing for linearizability", 2017)
  observed that the tree search keeps re-entering the same configuration
  by different routes, and that a configuration is determined by *which*
  operations have been linearized and the model's state.  A cache of
  (linearized-set bitmask, state) pairs already explored prunes those
  repeats; without it, the search is exponential in the concurrency even
  for correct histories.
- **Reads first.**  An operation that never changes the state (a read, a
  CAS that reported failure) and that fits the current state can always be
  linearized at once: moving it earlier in any successful linearization
  keeps that linearization valid, since all operations it must follow are
  already placed.  So when one fits, it is the only branch tried, which
  removes most of the branching that many concurrent readers cause.
- **Dead ends early.**  Overwriting a value that some pending operation
  still has to observe, when no pending operation can set it again, can
  never be completed; counting the pending producers and observers of each
  value detects that in O(1) at the move that causes it, instead of after
  exhausting everything beneath it.
- **One name for values nobody will look at.**  Once no pending operation
  compares the state with the current value, which such value it is
  cannot matter any more, so the cache files all of them under one name:
  the orders of writes that nobody reads collapse into one configuration.
- **Screening first.**  Proving a violation is the expensive case: every
  configuration before the point of failure must be exhausted, and with
  dozens of concurrent clients there can be exponentially many.  The
  common anomalies (stale or lost reads, reads from the future or of
  values never written, two compare-and-sets succeeding from one value)
  also break simple necessary conditions that are checked first, in
  O(n log n), and reported with the few operations involved.

Operations whose outcome is ``"unknown"`` (a timeout or a lost connection
after the request was sent) may have taken effect at any time after they
were invoked, or never: they have no completion event, they are linearized
only where they change the state, and the search succeeds once every
``"ok"`` operation is placed.  ``"fail"`` operations (refused before
sending) are dropped.

When a completion and an invocation carry the same timestamp, the two
operations are treated as concurrent: one clock with a finite resolution
cannot order them, and a checker should not report a violation it cannot
prove.

Recording, from concurrent clients (threads or Deferred callbacks); the
recorder takes a lock, so either works::

    history = History()
    token = history.invoke("client-3", "k", "cas", expected="v1", value="v2")
    d = kv.cas("k", "v2", index)                 # send the request
    d.addCallbacks(
        lambda ok: history.complete(token, ok),  # a read passes its value, None if absent
        lambda f: history.fail(token) if f.check(ConnectionRefusedError)
        else history.unknown(token),             # timeout, lost connection, 5xx
    )
    ...
    result = check(history, timeout=60.0)
    if not result.ok:
        to_jsonl(history, "kv-history.jsonl")    # keep it for diagnosis
    assert result.ok, result.explanation
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Literal

import attrs

Kind = Literal["write", "read", "cas", "delete"]
Outcome = Literal["ok", "fail", "unknown"]
Status = Literal["ok", "violation", "unknown"]

KINDS: tuple[str, ...] = ("write", "read", "cas", "delete")
OUTCOMES: tuple[str, ...] = ("ok", "fail", "unknown")


@attrs.frozen
class Operation:
    """
    One client operation on one key, as recorded.

    ``value`` is what a ``write`` stores or what a ``cas`` stores on success;
    ``expected`` is the value a ``cas`` requires (``None``: the key must be
    absent, like Consul's ``cas=0``).  ``result`` is a ``read``'s value
    (``None`` for an absent key) or a ``cas``'s ``True``/``False``; it is
    ignored for writes and deletes and for outcomes other than ``"ok"``.
    ``completed`` is ``None`` while an outcome is unknown.  Values must be
    hashable, and JSON values or bytes to be saved with :func:`to_jsonl`.
    """

    id: int
    client: Hashable
    key: str
    kind: Kind
    invoked: float
    completed: float | None
    outcome: Outcome
    value: Hashable = None
    expected: Hashable = None
    result: Hashable = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown operation kind {self.kind!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.kind in ("write", "cas") and self.value is None:
            raise ValueError(f"a {self.kind} needs a value (use delete to remove a key)")
        if self.outcome == "ok" and self.completed is None:
            raise ValueError("an ok operation needs a completion time")
        if self.completed is not None and self.completed < self.invoked:
            raise ValueError(f"operation #{self.id} completed before it was invoked")
        if self.outcome == "ok" and self.kind == "cas" and not isinstance(self.result, bool):
            raise ValueError(f"a cas returns True or False, not {self.result!r}")

    def describe(self) -> str:
        """One line for failure reports: what, by whom, when, and with what result."""
        if self.kind == "write":
            what = f"write {self.value!r}"
        elif self.kind == "delete":
            what = "delete"
        elif self.kind == "cas":
            what = f"cas {self.expected!r} -> {self.value!r}"
        else:
            what = "read"
        if self.outcome == "ok" and self.kind in ("read", "cas"):
            what += f" => {self.result!r}"
        end = "inf" if self.completed is None else f"{self.completed:.6f}"
        span = f"[{self.invoked:.6f}, {end}]"
        return f"#{self.id} client={self.client!r} {what} {span} {self.outcome}"


@attrs.define
class _Pending:
    client: Hashable
    key: str
    kind: Kind
    invoked: float
    value: Hashable
    expected: Hashable


@attrs.define(eq=False)
class History:
    """
    A thread-safe recorder of operations for :func:`check`.

    Call :meth:`invoke` just *before* sending a request and one of
    :meth:`complete`, :meth:`fail` or :meth:`unknown` just *after* learning
    its fate, so that each recorded interval contains the real one.  Times
    come from ``clock`` (one clock for every client, so they compare).
    Operations still pending when :meth:`operations` is called are reported
    as unknown: they may yet take effect.
    """

    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _next_id: int = attrs.field(default=0, init=False)
    _pending: dict[int, _Pending] = attrs.field(factory=dict, init=False, repr=False)
    _done: dict[int, Operation] = attrs.field(factory=dict, init=False, repr=False)

    def invoke(
        self,
        client: Hashable,
        key: str,
        kind: Kind,
        *,
        value: Hashable = None,
        expected: Hashable = None,
    ) -> int:
        """Record that ``client`` is about to send an operation; returns its token."""
        # Validate now, where the caller's mistake is, not at completion.
        Operation(0, client, key, kind, 0.0, None, "unknown", value, expected)
        with self._lock:
            token = self._next_id
            self._next_id += 1
            self._pending[token] = _Pending(client, key, kind, self.clock(), value, expected)
        return token

    def complete(self, token: int, result: Hashable = None) -> Operation:
        """The operation returned ``result`` (a read's value, a cas's bool)."""
        return self._finish(token, "ok", result)

    def fail(self, token: int) -> Operation:
        """The operation certainly did not take effect."""
        return self._finish(token, "fail", None)

    def unknown(self, token: int) -> Operation:
        """The operation may or may not have taken effect (timeout, lost connection, 5xx)."""
        return self._finish(token, "unknown", None)

    def _finish(self, token: int, outcome: Outcome, result: Hashable) -> Operation:
        with self._lock:
            pending = self._pending.pop(token)
            now = None if outcome == "unknown" else self.clock()
            try:
                op = _from_pending(token, pending, now, outcome, result)
            except ValueError:
                self._pending[token] = pending
                raise
            self._done[token] = op
        return op

    def operations(self) -> list[Operation]:
        """Every operation recorded so far, in invocation order."""
        with self._lock:
            ops = dict(self._done)
            for token, pending in self._pending.items():
                ops[token] = _from_pending(token, pending, None, "unknown", None)
        return [ops[token] for token in sorted(ops)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._done) + len(self._pending)


def _from_pending(
    token: int, p: _Pending, completed: float | None, outcome: Outcome, result: Hashable
) -> Operation:
    return Operation(
        token, p.client, p.key, p.kind, p.invoked, completed, outcome, p.value, p.expected, result
    )


@attrs.frozen
class CheckResult:
    """
    The verdict of :func:`check`.

    ``status`` is ``"ok"`` (linearizable), ``"violation"`` (proved not to
    be) or ``"unknown"`` (the budget ran out first).  On a violation, ``key``
    names the key, ``linearized`` is the longest partial linearization the
    search found and ``stuck`` the operation it could not get past followed
    by the operations that were candidates at that point; or, when
    ``screened``, a violation was found by the screening that precedes the
    search (see :func:`check`), ``linearized`` is empty and ``stuck`` holds
    the operations involved.  On success, ``witness`` gives one valid
    sequential order per key (of the operations that take effect).
    ``states`` counts the configurations explored.
    """

    status: Status
    states: int
    key: str | None = None
    explanation: str = ""
    linearized: tuple[Operation, ...] = ()
    stuck: tuple[Operation, ...] = ()
    witness: Mapping[str, tuple[Operation, ...]] = attrs.field(factory=dict)
    screened: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        return self.explanation or f"{self.status} ({self.states} states explored)"


class _OutOfBudget(Exception):
    pass


@attrs.define
class _Budget:
    max_states: int | None
    deadline: float | None
    states: int = 0

    def spend(self) -> None:
        self.states += 1
        if self.max_states is not None and self.states > self.max_states:
            raise _OutOfBudget(f"more than {self.max_states} states")
        if self.deadline is not None and self.states % 256 == 1:
            if time.monotonic() > self.deadline:
                raise _OutOfBudget("the timeout")


def check(
    history: History | Iterable[Operation],
    *,
    initial: Mapping[str, Hashable] | None = None,
    max_states: int | None = None,
    timeout: float | None = None,
    prescreen: bool = True,
) -> CheckResult:
    """
    Decide whether ``history`` is linearizable, key by key.

    ``initial`` gives values present before the history began (every other
    key starts absent).  ``max_states`` (configurations, summed over keys)
    and ``timeout`` (seconds) bound the search; when either runs out the
    result is ``"unknown"`` rather than a hang.

    Refuting a history is the expensive case: the search must exhaust every
    configuration before the point of failure, and with dozens of
    concurrent clients those are exponentially many.  So every key is first
    screened (unless ``prescreen`` is false, which tests of the search use)
    for the common anomalies that a few necessary conditions expose in
    near-linear time: stale and lost reads, reads from the future or of
    values never written, and more successful compare-and-sets from a value
    than times it was set.  Then the keys are searched, smallest first, so
    a violation on one is found before the budget is spent on a big one.
    """
    ops = history.operations() if isinstance(history, History) else list(history)
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        if op.outcome == "fail" or (op.outcome == "unknown" and op.kind == "read"):
            continue  # neither constrains nor changes anything
        by_key.setdefault(op.key, []).append(op)
    initial = initial or {}
    deadline = None if timeout is None else time.monotonic() + timeout
    budget = _Budget(max_states, deadline)
    witness: dict[str, tuple[Operation, ...]] = {}
    if prescreen:
        for key in sorted(by_key):
            failure = _prescreen(key, by_key[key], initial.get(key))
            if failure is not None:
                return failure
    for key in sorted(by_key, key=lambda k: (len(by_key[k]), k)):
        try:
            failure = _check_key(key, by_key[key], initial.get(key), budget, witness)
        except _OutOfBudget as exc:
            return CheckResult(
                "unknown",
                budget.states,
                key,
                f"gave up on key {key!r} ({len(by_key[key])} operations) after "
                f"{budget.states} states: exceeded {exc}",
            )
        if failure is not None:
            return attrs.evolve(failure, states=budget.states)
    return CheckResult(
        "ok",
        budget.states,
        explanation=f"linearizable: {len(ops)} operations on {len(by_key)} keys, "
        f"{budget.states} states explored",
        witness=witness,
    )


def _end(op: Operation) -> float:
    return math.inf if op.completed is None else op.completed


def _prescreen(key: str, ops: list[Operation], initial: Hashable) -> CheckResult | None:
    """
    Necessary conditions, each of which a violation of proves the key not linearizable.

    1. An operation that observed value ``v`` (a read's result, a successful cas's
       expectation) is preceded in any linearization by every certain state change that
       completed before it began; if one of those set another value, the last state change
       before the observer must be an operation that sets ``v``, placed after all of them:
       so one must exist that was invoked before the observer completed and that did not
       complete before the latest of them was invoked.  (With no such state change, the
       initial value will also do.)  This catches stale and lost reads, reads from the
       future and of values never written.
    2. Each successful cas from ``v`` to another value consumes ``v``: two of them need an
       operation setting ``v`` again in between.  So there can be no more of them than
       operations that may set ``v``, plus one if the key starts at ``v``.
    """
    sets: dict[Hashable, list[Operation]] = {}
    certain: list[Operation] = []
    for op in ops:
        if op.kind == "read" or (op.kind == "cas" and op.result is False):
            continue
        sets.setdefault(None if op.kind == "delete" else op.value, []).append(op)
        if op.outcome == "ok":
            certain.append(op)
    certain.sort(key=_end)
    ends = [_end(c) for c in certain]
    # The running maximum of invocation times over certain changes by completion time.
    # When the latest of those set the very value observed, it can itself be the last change
    # before the observer, so the condition holds; otherwise it bounds the writer's completion.
    latest_by_end: list[Operation] = []
    for op in certain:
        if not latest_by_end or op.invoked > latest_by_end[-1].invoked:
            latest_by_end.append(op)
        else:
            latest_by_end.append(latest_by_end[-1])

    for op in ops:
        if op.outcome != "ok" or op.kind not in ("read", "cas") or op.result is False:
            continue
        assert op.completed is not None
        seen = op.result if op.kind == "read" else op.expected
        before = bisect.bisect_left(ends, op.invoked)
        latest, replaced_by = -math.inf, None
        if before:
            replaced_by = latest_by_end[before - 1]
            if (None if replaced_by.kind == "delete" else replaced_by.value) == seen:
                continue
            latest = replaced_by.invoked
        elif seen == initial:
            continue
        writers = sets.get(seen, [])
        if any(
            w.invoked <= op.completed and (w.completed is None or w.completed >= latest)
            for w in writers
        ):
            continue
        lines = [f"key {key!r} is not linearizable: this operation saw {seen!r}:"]
        lines.append(f"  {op.describe()}")
        if replaced_by is not None:
            lines.append("but before it began, the value had been replaced by:")
            lines.append(f"  {replaced_by.describe()}")
            lines.append(f"and no operation setting {seen!r} can have come in between:")
        else:
            lines.append(f"but no operation setting {seen!r} began before it completed:")
        lines += [f"  {w.describe()}" for w in writers[:5]] or ["  (none on this key)"]
        stuck: tuple[Operation, ...] = (op,) if replaced_by is None else (op, replaced_by)
        stuck += tuple(writers)
        return CheckResult("violation", 0, key, "\n".join(lines), stuck=stuck, screened=True)

    consumed: dict[Hashable, list[Operation]] = {}
    for op in ops:
        if op.kind == "cas" and op.outcome == "ok" and op.result and not op.value == op.expected:
            consumed.setdefault(op.expected, []).append(op)
    for value, users in consumed.items():
        supply = len(sets.get(value, ())) + (value == initial)
        if len(users) > supply:
            lines = [
                f"key {key!r} is not linearizable: {len(users)} compare-and-sets from "
                f"{value!r} succeeded, but it can have been set only {supply} times:"
            ]
            lines += [f"  {u.describe()}" for u in users[:10]]
            lines += [f"  {w.describe()}" for w in sets.get(value, [])[:10]]
            return CheckResult(
                "violation", 0, key, "\n".join(lines), stuck=tuple(users), screened=True
            )
    return None


# Per-operation step codes for the sequential register model.
_READ, _CAS_FALSE, _WRITE, _DELETE, _CAS = range(5)
_HEAD = 0
_NOTHING: Hashable = object()  # produces or needs no value


def _code(op: Operation) -> int:
    if op.kind == "read":
        return _READ
    if op.kind == "write":
        return _WRITE
    if op.kind == "delete":
        return _DELETE
    if op.outcome == "ok" and op.result is False:
        return _CAS_FALSE
    return _CAS  # a successful cas, or an unknown one (linearized only where it succeeds)


def _check_key(
    key: str,
    ops: list[Operation],
    initial: Hashable,
    budget: _Budget,
    witness: dict[str, tuple[Operation, ...]],
) -> CheckResult | None:
    """Wing–Gong search with Lowe's cache over one key; None when linearizable."""
    n = len(ops)
    codes = [_code(op) for op in ops]
    known = [op.outcome == "ok" for op in ops]
    total = sum(known)

    # What each operation can set the value to, and what each completed read or successful
    # cas needs it to be.  Counting the producers and needs not yet linearized gives a cheap,
    # sound dead end: overwriting a value that a pending operation still needs, when nothing
    # left can bring it back, cannot lead to a linearization.
    produces: list[Hashable] = [_NOTHING] * n
    needs: list[Hashable] = [_NOTHING] * n
    for i, op in enumerate(ops):
        if codes[i] in (_WRITE, _CAS):
            produces[i] = op.value
        elif codes[i] == _DELETE:
            produces[i] = None
        if known[i] and codes[i] == _READ:
            needs[i] = op.result
        elif known[i] and codes[i] == _CAS:
            needs[i] = op.expected
    producers = Counter(produces)
    needed = Counter(needs)
    # Every value a pending operation compares the state with.  A state no pending
    # operation mentions behaves like any other such state from here on, so the cache
    # files them all under one name: orders of writes nobody will read collapse.
    mentions = [
        op.expected if codes[i] in (_CAS, _CAS_FALSE) else needs[i] for i, op in enumerate(ops)
    ]
    mentioned = Counter(mentions)

    # The event list: index 0 is the head, m + 1 the tail; each entry is an
    # invocation or a completion.  Invocations sort before completions at
    # equal times (see the module docstring).
    events = [(op.invoked, 0, i) for i, op in enumerate(ops)]
    events += [(_end(op), 1, i) for i, op in enumerate(ops) if known[i]]
    events.sort()
    m = len(events)
    tail = m + 1
    entry_op = [-1] * (m + 2)
    is_call = [False] * (m + 2)
    call_entry = [0] * n
    ret_entry = [-1] * n
    for index, (_, kind, i) in enumerate(events, start=1):
        entry_op[index] = i
        if kind == 0:
            is_call[index] = True
            call_entry[i] = index
        else:
            ret_entry[i] = index
    nxt = list(range(1, m + 3))
    prv = list(range(-1, m + 1))

    def step(i: int, state: Hashable) -> tuple[bool, Hashable]:
        code = codes[i]
        op = ops[i]
        if code == _READ:
            return state == op.result, state
        if code == _CAS_FALSE:
            return state != op.expected, state
        if code == _WRITE:
            return True, op.value
        if code == _DELETE:
            return True, None
        return state == op.expected, op.value

    def strands(i: int, state: Hashable) -> bool:
        """Would op ``i``, moving away from ``state``, leave a pending need unmeetable?"""
        if producers[state]:
            return False
        return needed[state] - (needs[i] == state and needs[i] is not _NOTHING) > 0

    def canonical(i: int, state: Hashable) -> Hashable:
        """The cache's name for ``state`` once op ``i`` is linearized."""
        if mentioned[state] - (mentions[i] == state) > 0:
            return state
        return _NOTHING

    def lift(i: int) -> None:
        for e in (call_entry[i], ret_entry[i]):
            if e >= 0:
                nxt[prv[e]] = nxt[e]
                prv[nxt[e]] = prv[e]
        producers[produces[i]] -= 1
        needed[needs[i]] -= 1
        mentioned[mentions[i]] -= 1

    def unlift(i: int) -> None:
        for e in (ret_entry[i], call_entry[i]):
            if e >= 0:
                nxt[prv[e]] = e
                prv[nxt[e]] = e
        producers[produces[i]] += 1
        needed[needs[i]] += 1
        mentioned[mentions[i]] += 1

    def snapshot() -> _Stuck:
        """Where the search stands when every minimal operation has failed."""
        reasons = []
        e = nxt[_HEAD]
        while e != tail and is_call[e]:
            i = entry_op[e]
            fits, new_state = step(i, state)
            if not fits:
                why = "does not fit the value"
            elif new_state != state and strands(i, state):
                user = next(
                    j for j in range(n) if needs[j] == state and not bits >> j & 1 and j != i
                )
                why = f"would overwrite the value #{ops[user].id} still needs"
            elif not known[i] and new_state == state:
                why = "would change nothing"
            else:
                why = "leads to no linearization"
            reasons.append((i, why))
            e = nxt[e]
        blocker = entry_op[e] if e != tail else -1
        return _Stuck([f[0] for f in stack], state, blocker, reasons)

    remaining = total
    state = initial
    bits = 0
    cache: set[tuple[int, Hashable]] = set()
    # Frames: (op, state before it, taken greedily, the alternatives at its level, its place).
    stack: list[tuple[int, Hashable, bool, list[int], int]] = []
    best_depth = -1
    best = _Stuck([], initial, -1, [])
    choices: list[int] = []
    at = 0
    fresh = True  # just entered a new configuration
    while remaining > 0:
        if fresh:
            fresh = False
            # The minimal operations: invocations before the first pending completion.
            choices = []
            e = nxt[_HEAD]
            greedy = -1
            while e != tail and is_call[e]:
                i = entry_op[e]
                if codes[i] > _CAS_FALSE:
                    choices.append(i)
                elif step(i, state)[0]:
                    greedy = i
                    break
                e = nxt[e]
            if greedy >= 0:
                # A state-preserving operation that fits now is the only branch worth trying.
                choices = [greedy]
            at = 0  # the rest are tried in invocation order, the list's
        while at < len(choices):
            i = choices[at]
            fits, new_state = step(i, state)
            if (
                fits
                and (known[i] or new_state != state)
                and (new_state == state or not strands(i, state))
            ):
                config = (bits | 1 << i, canonical(i, new_state))
                if config not in cache:
                    cache.add(config)
                    budget.spend()
                    stack.append((i, state, codes[i] <= _CAS_FALSE, choices, at))
                    bits = config[0]
                    state = new_state
                    lift(i)
                    remaining -= known[i]
                    fresh = True
                    break
            at += 1
        if fresh:
            continue
        # Every choice here failed (or the greedy one did, which settles it too).
        if total - remaining > best_depth:
            best_depth = total - remaining
            best = snapshot()
        greedy = True
        while greedy:
            if not stack:
                return _violation(key, ops, best, total)
            i, state, greedy, choices, at = stack.pop()
            unlift(i)
            bits ^= 1 << i
            remaining += known[i]
        at += 1

    witness[key] = tuple(ops[f[0]] for f in stack)
    return None


@attrs.define
class _Stuck:
    order: list[int]
    state: Hashable
    blocker: int
    reasons: list[tuple[int, str]]


def _violation(key: str, ops: list[Operation], best: _Stuck, total: int) -> CheckResult:
    linearized = tuple(ops[i] for i in best.order)
    known = sum(op.outcome == "ok" for op in linearized)
    lines = [
        f"key {key!r} is not linearizable.",
        f"Longest partial linearization: {known} of {total} completed operations "
        f"(+{len(linearized) - known} unknown), leaving the value {best.state!r}; its last steps:",
    ]
    lines += [f"  {op.describe()}" for op in linearized[-5:]] or ["  (none)"]
    stuck: tuple[Operation, ...] = ()
    if best.blocker >= 0:
        stuck = (ops[best.blocker],) + tuple(ops[i] for i, _ in best.reasons)
        lines.append("It cannot be extended past the completion of:")
        lines.append(f"  {ops[best.blocker].describe()}")
        lines.append("because none of the operations that could come next works:")
        for i, why in best.reasons[:10]:
            lines.append(f"  {ops[i].describe()}: {why}")
        if len(best.reasons) > 10:
            lines.append(f"  ... and {len(best.reasons) - 10} more")
    return CheckResult("violation", 0, key, "\n".join(lines), linearized=linearized, stuck=stuck)


def _encode(value: Hashable) -> Any:
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Hashable:
    if isinstance(value, dict):
        return base64.b64decode(value["bytes"])
    if isinstance(value, list):  # JSON has no tuples; keep values hashable
        return tuple(_decode(v) for v in value)
    return value


_FIELDS = ("id", "client", "key", "kind", "invoked", "completed", "outcome")
_VALUES = ("value", "expected", "result")


def to_jsonl(history: History | Iterable[Operation], path: str | os.PathLike[str]) -> None:
    """Save a history, one JSON object per operation, to keep a failing run for diagnosis."""
    ops = history.operations() if isinstance(history, History) else history
    with open(path, "w", encoding="utf-8") as f:
        for op in ops:
            record = {name: getattr(op, name) for name in _FIELDS}
            record.update({name: _encode(getattr(op, name)) for name in _VALUES})
            f.write(json.dumps(record, sort_keys=True) + "\n")


def from_jsonl(path: str | os.PathLike[str]) -> list[Operation]:
    """Load a history saved by :func:`to_jsonl`."""
    ops = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                client = record["client"]
                record["client"] = tuple(client) if isinstance(client, list) else client
                record.update({name: _decode(record.get(name)) for name in _VALUES})
                ops.append(Operation(**record))
    return ops
