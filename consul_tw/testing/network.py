# -*- test-case-name: tests.sim.test_gossip_cluster -*-
"""
An in-memory gossip network for many memberlist nodes on one ``Clock``.

:class:`SimNetwork` implements :class:`~consul_tw.gossip.memberlist.
interfaces.IGossipTransport` per endpoint ``(addr, port)`` and delivers
message records (no bytes) with a random latency drawn from an injected
``random.Random``.  Faults:

- ``loss`` and ``duplicate``: per-packet probabilities (UDP only; the
  stream exchanges model TCP, which retransmits);
- ``partition(*groups)``: addresses in different groups cannot reach each
  other (packets vanish, streams time out) until ``heal()``;
- ``crash(addr, port)``: the process is gone — its traffic is dropped,
  streams to it are refused, and its node is shut down so its timers stop;
- ``pause(addr, port, seconds)``: a SIGSTOPped process — its timers and
  inbound traffic are held by its :class:`NodeClock` and run, in order, when
  it resumes (as a stopped process catches up on SIGCONT).

Every node must be built with ``clock=network.clock_for(addr, port)`` so
pausing can hold its timers.  Call ``drain()`` after shutting every node
down to let in-flight deliveries run out, so the clock ends empty.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from consul_tw.gossip.memberlist.messages import Ack, Message, Ping, PushPull

Key = tuple[str, int]


class SimClock(Clock):
    """
    A ``task.Clock`` that keeps its calls sorted by insertion instead of
    re-sorting the whole list on every call, so thousands of pending timers
    stay cheap.  Same API and semantics, including ``reset``/``delay``.
    """

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        call = DelayedCall(
            self.seconds() + delay,
            callable,
            args,
            kw,
            self.calls.remove,
            self._reposition,
            self.seconds,
        )
        bisect.insort(self.calls, call, key=_call_time)
        return call

    def _reposition(self, call: Any) -> None:
        self.calls.remove(call)
        bisect.insort(self.calls, call, key=_call_time)

    def advance(self, amount: float) -> None:
        """
        Like ``Clock.advance``, except that each call runs with the clock
        showing *its own* time (as a real reactor would), not the end of the
        step, so one big step behaves like many small ones.
        """
        target = self.rightNow + amount
        calls = self.calls
        while calls and calls[0].getTime() <= target:
            call = calls.pop(0)
            if call.delayed_time:  # delay()/reset() to later: move it, don't run it
                call.activate_delay()
                bisect.insort(calls, call, key=_call_time)
                continue
            self.rightNow = max(self.rightNow, call.getTime())
            call.called = 1
            call.func(*call.args, **call.kw)
        self.rightNow = target

    def run_until(self, when: float, step: float = 1.0) -> None:
        """Advance to absolute time ``when`` in steps of at most ``step``."""
        while self.rightNow + step < when:
            self.advance(step)
        self.advance(max(0.0, when - self.rightNow))


def _call_time(call: Any) -> float:
    return float(call.getTime())


@implementer(IDelayedCall)
class _NodeCall:
    """
    A node's timer.  When it comes due while the node is paused it is held,
    still *active* and still cancellable, and runs when the node resumes.
    """

    owner: NodeClock
    f: Callable[..., object]
    args: tuple[Any, ...]
    kw: dict[str, Any]
    held: bool
    cancelled: bool
    call: IDelayedCall

    def _due(self) -> None:
        if self.owner.paused:
            self.held = True
            self.owner.hold(self._run_held)
        else:
            self.f(*self.args, **self.kw)

    def _run_held(self) -> None:
        if self.held:
            self.held = False
            self.f(*self.args, **self.kw)

    def getTime(self) -> float:
        return float(self.call.getTime())

    def cancel(self) -> None:
        if self.held:
            self.held = False
            self.cancelled = True
        else:
            self.call.cancel()

    def delay(self, secondsLater: float) -> None:
        self.call.delay(secondsLater)

    def reset(self, secondsFromNow: float) -> None:
        self.call.reset(secondsFromNow)

    def active(self) -> bool:
        return self.held or bool(self.call.active())


@implementer(IReactorTime)
@attrs.define(eq=False)
class NodeClock:
    """One node's view of the shared clock; holds its timers while it is paused."""

    clock: IReactorTime
    paused: bool = False
    _held: list[Callable[[], object]] = attrs.field(factory=list)

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> IDelayedCall:
        node_call = _NodeCall()
        node_call.owner, node_call.f, node_call.args, node_call.kw = self, callable, args, kwargs
        node_call.held = node_call.cancelled = False
        node_call.call = self.clock.callLater(delay, node_call._due)
        return node_call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        """This node's pending timers (held ones included)."""
        pending: list[IDelayedCall] = [
            owner
            for c in self.clock.getDelayedCalls()
            if isinstance(owner := getattr(getattr(c, "func", None), "__self__", None), _NodeCall)
            and owner.owner is self
        ]
        return pending + [
            held
            for fn in self._held
            if isinstance(held := getattr(fn, "__self__", None), _NodeCall) and held.held
        ]

    def hold(self, fn: Callable[[], object]) -> None:
        self._held.append(fn)

    def run_or_hold(self, fn: Callable[[], object]) -> None:
        if self.paused:
            self._held.append(fn)
        else:
            fn()

    def resume(self) -> None:
        self.paused = False
        while self._held and not self.paused:
            self._held.pop(0)()

    def discard(self) -> None:
        self._held.clear()


class Receiver(Protocol):
    def packet_received(self, from_addr: str, from_port: int, messages: list[Message]) -> None: ...

    def push_pull_received(self, from_addr: str, from_port: int, remote: PushPull) -> PushPull: ...

    def stream_ping_received(self, ping: Ping) -> Ack | None: ...


@attrs.define(eq=False)
class _Endpoint:
    key: Key
    clock: NodeClock
    node: Receiver | None = None
    crashed: bool = False


@attrs.define
class NetworkStats:
    packets_sent: int = 0
    packets_lost: int = 0
    packets_blocked: int = 0
    packets_delivered: int = 0
    streams: int = 0
    streams_failed: int = 0


@attrs.define(eq=False)
class SimNetwork:
    clock: Clock
    rng: random.Random
    latency: tuple[float, float] = (0.001, 0.005)
    loss: float = 0.0
    duplicate: float = 0.0
    tcp_timeout: float = 10.0
    stats: NetworkStats = attrs.field(factory=NetworkStats)
    _endpoints: dict[Key, _Endpoint] = attrs.field(factory=dict)
    _group_of: dict[str, int] = attrs.field(factory=dict)

    # -- set-up -----------------------------------------------------------

    def _endpoint(self, addr: str, port: int) -> _Endpoint:
        key = (addr, port)
        ep = self._endpoints.get(key)
        if ep is None:
            ep = self._endpoints[key] = _Endpoint(key, NodeClock(self.clock))
        return ep

    def clock_for(self, addr: str, port: int) -> NodeClock:
        return self._endpoint(addr, port).clock

    def transport_for(self, addr: str, port: int) -> SimTransport:
        self._endpoint(addr, port)
        return SimTransport(self, (addr, port))

    def attach(self, addr: str, port: int, node: Receiver) -> None:
        self._endpoint(addr, port).node = node

    # -- faults -----------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Addresses in different groups cannot reach each other; others reach everyone."""
        self._group_of = {addr: i for i, group in enumerate(groups) for addr in group}

    def heal(self) -> None:
        self._group_of = {}

    def can_reach(self, src: str, dst: str) -> bool:
        a, b = self._group_of.get(src), self._group_of.get(dst)
        return a is None or b is None or a == b

    def crash(self, addr: str, port: int) -> None:
        ep = self._endpoint(addr, port)
        ep.crashed = True
        ep.clock.discard()
        shutdown = getattr(ep.node, "shutdown", None)
        if shutdown is not None:
            shutdown()

    def pause(self, addr: str, port: int, seconds: float) -> None:
        ep = self._endpoint(addr, port)
        ep.clock.paused = True
        self.clock.callLater(seconds, ep.clock.resume)

    def drain(self) -> None:
        """Run out every in-flight delivery and stream timeout (call after shutdowns)."""
        self.clock.advance(self.latency[1] * 2 + self.tcp_timeout + 1)

    # -- packets ----------------------------------------------------------

    def _latency(self) -> float:
        low, high = self.latency
        return low + (high - low) * self.rng.random()

    def send_packet(self, src: Key, addr: str, port: int, messages: list[Message]) -> None:
        self.stats.packets_sent += 1
        if not self.can_reach(src[0], addr):
            self.stats.packets_blocked += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.stats.packets_lost += 1
            return
        copies = 2 if self.duplicate and self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            self.clock.callLater(self._latency(), self._deliver, src, (addr, port), messages)

    def _deliver(self, src: Key, dst: Key, messages: list[Message]) -> None:
        ep = self._endpoints.get(dst)
        if ep is None or ep.crashed or ep.node is None or not self.can_reach(src[0], dst[0]):
            return
        self.stats.packets_delivered += 1
        node = ep.node
        ep.clock.run_or_hold(lambda: node.packet_received(src[0], src[1], list(messages)))

    # -- streams ----------------------------------------------------------

    def exchange(self, src: Key, dst: Key, serve: Callable[[Receiver], Any]) -> Deferred[Any]:
        """One TCP request/response: ``serve(node)`` runs on the responder."""
        self.stats.streams += 1
        ex = _Exchange(self, src)
        ex.deferred = Deferred(lambda d: ex.cancelled())
        ex.timer = self.clock.callLater(
            self.tcp_timeout, ex.fail, TimeoutError(string=f"i/o timeout to {dst[0]}:{dst[1]}")
        )
        if self.can_reach(src[0], dst[0]):
            self.clock.callLater(self._latency(), self._serve, ex, dst, serve)
        return ex.deferred

    def _serve(self, ex: _Exchange, dst: Key, serve: Callable[[Receiver], Any]) -> None:
        ep = self._endpoints.get(dst)
        if ex.finished or not self.can_reach(ex.src[0], dst[0]):
            return
        if ep is None or ep.crashed or ep.node is None:
            ex.fail(ConnectionRefusedError(f"{dst[0]}:{dst[1]}"))
            return
        node = ep.node

        def respond() -> None:
            try:
                reply = serve(node)
            except Exception as e:
                self.clock.callLater(self._latency(), ex.fail, e)
                return
            if reply is None:
                self.clock.callLater(self._latency(), ex.fail, ConnectionDone("EOF"))
            else:
                self.clock.callLater(self._latency(), ex.succeed, reply)

        ep.clock.run_or_hold(respond)


@attrs.define(eq=False)
class _Exchange:
    net: SimNetwork
    src: Key
    deferred: Deferred[Any] = attrs.field(default=None)
    timer: IDelayedCall | None = None
    finished: bool = False

    def _finish(self) -> bool:
        if self.finished:
            return False
        self.finished = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        return True

    def cancelled(self) -> None:
        self._finish()

    def succeed(self, result: Any) -> None:
        self._settle(lambda: self.deferred.callback(result))

    def fail(self, error: Exception) -> None:
        if not self.finished:
            self.net.stats.streams_failed += 1
        self._settle(lambda: self.deferred.errback(Failure(error)))

    def _settle(self, fire: Callable[[], object]) -> None:
        if not self._finish():
            return
        ep = self.net._endpoints.get(self.src)
        if ep is None or ep.crashed:
            return
        ep.clock.run_or_hold(lambda: None if self.deferred.called else fire())


@attrs.define(eq=False)
class SimTransport:
    """One endpoint's :class:`IGossipTransport` on a :class:`SimNetwork`."""

    net: SimNetwork
    key: Key

    def send_packet(self, addr: str, port: int, messages: list[Message]) -> None:
        self.net.send_packet(self.key, addr, port, messages)

    def push_pull(self, addr: str, port: int, message: PushPull) -> Deferred[PushPull]:
        src = self.key
        return self.net.exchange(
            src, (addr, port), lambda node: node.push_pull_received(src[0], src[1], message)
        )

    def stream_ping(self, addr: str, port: int, ping: Ping) -> Deferred[Ack]:
        return self.net.exchange(
            self.key, (addr, port), lambda node: node.stream_ping_received(ping)
        )
