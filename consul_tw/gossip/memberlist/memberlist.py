# -*- test-case-name: tests.unit.gossip.test_memberlist -*-
"""
One memberlist node: SWIM + Lifeguard on an injected clock.

:class:`Memberlist` owns the node table (:mod:`.state`), the broadcast
queue, the awareness score, the suspicion timers and the prober
(:mod:`.probe`).  It never touches sockets: packets and stream exchanges go
out through an :class:`~.interfaces.IGossipTransport`, and come in through
``packet_received``, ``push_pull_received`` and ``stream_ping_received``.
Every timer lives on ``clock`` and ``shutdown()`` cancels all of them.

Log lines follow memberlist's wording ("memberlist: Suspect X has failed,
no acks received", ...) so Consul users see what they are used to.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.gossip.memberlist.awareness import Awareness
from consul_tw.gossip.memberlist.broadcasts import (
    COMPOUND_HEADER_OVERHEAD,
    COMPOUND_OVERHEAD,
    USER_MSG_OVERHEAD,
    BroadcastTimeout,
    BroadcastWaiter,
    TransmitLimitedQueue,
    estimate_size,
)
from consul_tw.gossip.memberlist.config import META_MAX_SIZE, MemberlistConfig
from consul_tw.gossip.memberlist.interfaces import IGossipTransport, IMemberlistDelegate
from consul_tw.gossip.memberlist.messages import (
    CONSUL_VSN,
    Ack,
    Alive,
    Dead,
    IndirectPing,
    Message,
    Nack,
    NodeState,
    Ping,
    PushPull,
    Suspect,
    User,
)
from consul_tw.gossip.memberlist.probe import Prober
from consul_tw.gossip.memberlist.pushpull import JoinError, PushPullError, StateSync
from consul_tw.gossip.memberlist.state import (
    Node,
    NodeRecord,
    NodeTable,
    Outcome,
    addr_to_text,
    text_to_addr,
)
from consul_tw.gossip.memberlist.suspicion import lifeguard_suspicion

__all__ = [
    "BroadcastTimeout",
    "JoinError",
    "Memberlist",
    "MemberlistShutdown",
    "PushPullError",
]


class MemberlistShutdown(Exception):
    """The node has been shut down."""


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


@attrs.define(eq=False)
class Memberlist:
    config: MemberlistConfig
    name: str
    addr: str
    port: int
    clock: IReactorTime
    rng: random.Random
    transport: IGossipTransport
    delegate: IMemberlistDelegate
    logger: HcLogger
    vsn: bytes = CONSUL_VSN
    size_of: Callable[[object], int] = estimate_size

    addr_bytes: bytes = attrs.field(init=False)
    table: NodeTable = attrs.field(init=False)
    broadcasts: TransmitLimitedQueue = attrs.field(init=False)
    awareness: Awareness = attrs.field(init=False)
    prober: Prober = attrs.field(init=False)
    sync: StateSync = attrs.field(init=False)
    _seq_no: int = attrs.field(init=False, default=0)
    _started: bool = attrs.field(init=False, default=False)
    _leaving: bool = attrs.field(init=False, default=False)
    _shut_down: bool = attrs.field(init=False, default=False)
    _gossip_timer: IDelayedCall | None = attrs.field(init=False, default=None)
    _waiters: list[BroadcastWaiter] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self.addr_bytes = text_to_addr(self.addr)
        self.table = NodeTable(self.name, self.rng)
        self.broadcasts = TransmitLimitedQueue(
            self.config.retransmit_mult, lambda: len(self.table), self.size_of
        )
        self.awareness = Awareness(self.config.awareness_max_multiplier)
        self.prober = Prober(self)
        self.sync = StateSync(self)
        meta = self._meta()
        alive = Alive(
            incarnation=1,
            node=self.name,
            addr=self.addr_bytes,
            port=self.port,
            meta=meta,
            vsn=self.vsn,
        )
        self._handle(
            self.table.apply_alive(
                alive, self.clock.seconds(), bootstrap=True, veto=self.delegate.notify_alive
            )
        )

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start probing, gossiping and periodic push/pull (each with a random stagger)."""
        if self._started or self._shut_down:
            return
        self._started = True
        cfg = self.config
        self.prober.start(self.rng.random() * cfg.probe_interval)
        self._gossip_timer = self.clock.callLater(
            self.rng.random() * cfg.gossip_interval, self._gossip_tick
        )
        self.sync.start(self.rng.random() * cfg.push_pull_interval)

    def shutdown(self) -> None:
        """Stop everything: timers, suspicions, probes, pending exchanges.  No goodbye."""
        if self._shut_down:
            return
        self._shut_down = True
        self.prober.stop()
        _cancel(self._gossip_timer)
        self.sync.stop()
        for record in self.table.nodes:
            record.clear_suspicion()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.abandon(MemberlistShutdown())
        self.broadcasts.reset()

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    # -- views ------------------------------------------------------------

    def members(self) -> list[Node]:
        """Nodes that are alive or suspect (memberlist's ``Members()``), ourselves included."""
        return [r.view() for r in self.table.nodes if not r.dead_or_left]

    def all_nodes(self) -> list[Node]:
        """Every node in the table, dead and left ones too."""
        return [r.view() for r in self.table.nodes]

    def node(self, name: str) -> Node | None:
        record = self.table.get(name)
        return None if record is None else record.view()

    def local_node(self) -> Node:
        return self.table.local.view()

    def num_members(self) -> int:
        return sum(1 for r in self.table.nodes if not r.dead_or_left)

    def health_score(self) -> int:
        return self.awareness.score

    # -- applying claims --------------------------------------------------

    def apply_alive(
        self, a: Alive, *, notify: Callable[[], object] | None = None, bootstrap: bool = False
    ) -> Outcome:
        outcome = self.table.apply_alive(
            a,
            self.clock.seconds(),
            bootstrap=bootstrap,
            leaving=self._leaving,
            reclaim_time=self.config.dead_node_reclaim_time,
            veto=self.delegate.notify_alive,
        )
        self._handle(outcome, notify)
        return outcome

    def apply_suspect(self, s: Suspect) -> Outcome:
        outcome = self.table.apply_suspect(s, self.clock.seconds())
        self._handle(outcome)
        return outcome

    def apply_dead(self, d: Dead, *, notify: Callable[[], object] | None = None) -> Outcome:
        outcome = self.table.apply_dead(d, self.clock.seconds(), leaving=self._leaving)
        self._handle(outcome, notify)
        return outcome

    def _handle(self, outcome: Outcome, notify: Callable[[], object] | None = None) -> None:
        for level, text in outcome.logs:
            getattr(self.logger, level.lower())("memberlist: " + text)
        if outcome.conflict is not None and outcome.node is not None:
            self.delegate.notify_conflict(outcome.node, outcome.conflict)
        if outcome.refute is not None:
            self._refute(outcome.refute)
        if outcome.broadcast is not None:
            self.broadcasts.queue(outcome.broadcast, name=outcome.broadcast.node, notify=notify)
        if outcome.start_suspicion and isinstance(outcome.broadcast, Suspect):
            record = self.table.get(outcome.broadcast.node)
            if record is not None:
                self._start_suspicion(record, outcome.broadcast.from_node)
        if outcome.notify is not None and outcome.node is not None:
            getattr(self.delegate, "notify_" + outcome.notify)(outcome.node)

    def _refute(self, accused: int) -> None:
        alive = self.table.refute(accused)
        # Being accused is a hint that we are the slow one.
        self.awareness.apply_delta(1)
        self.broadcasts.queue(alive, name=self.name)

    def _start_suspicion(self, record: NodeRecord, from_node: str) -> None:
        name, changed = record.name, record.state_change

        def timed_out(confirmations: int) -> None:
            current = self.table.get(name)
            if current is None or current.state != NodeState.SUSPECT:
                return
            if current.state_change != changed:
                return
            current.suspicion = None
            self.logger.info(
                f"memberlist: Marking {name} as failed, suspect timeout reached"
                f" ({confirmations} peer confirmations)"
            )
            self.apply_dead(Dead(incarnation=current.incarnation, node=name, from_node=self.name))

        cfg = self.config
        record.suspicion = lifeguard_suspicion(
            self.clock,
            from_node,
            len(self.table),
            cfg.suspicion_mult,
            cfg.suspicion_max_timeout_mult,
            cfg.probe_interval,
            timed_out,
        )

    # -- inbound ----------------------------------------------------------

    def packet_received(self, from_addr: str, from_port: int, messages: list[Message]) -> None:
        """Handle one decoded UDP packet (a compound's parts in order)."""
        if self._shut_down:
            return
        for msg in messages:
            if isinstance(msg, Ping):
                self._ping_received(from_addr, from_port, msg)
            elif isinstance(msg, IndirectPing):
                self.prober.indirect_ping_received(from_addr, from_port, msg)
            elif isinstance(msg, Ack):
                self.prober.ack_received(msg)
            elif isinstance(msg, Nack):
                self.prober.nack_received(msg)
            elif isinstance(msg, Alive):
                self.apply_alive(msg)
            elif isinstance(msg, Suspect):
                self.apply_suspect(msg)
            elif isinstance(msg, Dead):
                self.apply_dead(msg)
            elif isinstance(msg, User):
                self.delegate.notify_user(msg.payload)
            else:
                self.logger.error(
                    f"memberlist: msg type ({type(msg).__name__}) not supported"
                    f" from={from_addr}:{from_port}"
                )

    def _ping_received(self, from_addr: str, from_port: int, ping: Ping) -> None:
        if ping.node and ping.node != self.name:
            self.logger.warn(
                f"memberlist: Got ping for unexpected node '{ping.node}'"
                f" from={from_addr}:{from_port}"
            )
            return
        ack = Ack(seq_no=ping.seq_no, payload=self.delegate.ack_payload() or None)
        if ping.source_addr and ping.source_port:
            self.send(addr_to_text(ping.source_addr), ping.source_port, ack)
        else:
            self.send(from_addr, from_port, ack)

    def stream_ping_received(self, ping: Ping) -> Ack | None:
        """A TCP fallback ping; None means "close without answering" (not for us)."""
        if self._shut_down:
            raise MemberlistShutdown()
        if ping.node and ping.node != self.name:
            self.logger.warn(f"memberlist: Got ping for unexpected node {ping.node}")
            return None
        return Ack(seq_no=ping.seq_no)

    def push_pull_received(self, from_addr: str, from_port: int, remote: PushPull) -> PushPull:
        """Answer a push/pull with our state (same ``join`` flag), then merge theirs."""
        if self._shut_down:
            raise MemberlistShutdown()
        return self.sync.push_pull_received(from_addr, from_port, remote)

    def join(self, addrs: list[tuple[str, int]]) -> Deferred[int]:
        """
        Push/pull (``join=True``) with each address in turn; fires with how
        many succeeded, or fails with JoinError when none did.
        """
        if self._shut_down:
            return fail(MemberlistShutdown())
        return Deferred.fromCoroutine(self.sync.join(list(addrs)))

    def push_pull_node(self, addr: str, port: int, join: bool = False) -> Deferred[None]:
        """One push/pull with ``addr:port`` (Serf's reconnect uses ``join``)."""
        return self.sync.push_pull_node(addr, port, join)

    # -- outbound ---------------------------------------------------------

    def next_seq_no(self) -> int:
        self._seq_no = (self._seq_no + 1) & 0xFFFFFFFF
        return self._seq_no

    def send(self, addr: str, port: int, msg: Message) -> None:
        """Send ``msg`` with as many queued broadcasts piggybacked as fit."""
        avail = self.config.udp_buffer_size - self.size_of(msg) - COMPOUND_HEADER_OVERHEAD
        self.transport.send_packet(
            addr, port, [msg, *self.get_broadcasts(COMPOUND_OVERHEAD, avail)]
        )

    def get_broadcasts(self, overhead: int, limit: int) -> list[Message]:
        """Our queued broadcasts first, then the delegate's as user messages."""
        out: list[Any] = self.broadcasts.get(limit, overhead=overhead)
        used = sum(self.size_of(m) + overhead for m in out)
        avail = limit - used
        if avail > overhead + USER_MSG_OVERHEAD:
            for payload in self.delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, avail):
                out.append(User(payload=payload))
        return out

    def _gossip_tick(self) -> None:
        cfg = self.config
        self._gossip_timer = self.clock.callLater(cfg.gossip_interval, self._gossip_tick)
        now = self.clock.seconds()

        def exclude(r: NodeRecord) -> bool:
            if r.name == self.name:
                return True
            if r.state in (NodeState.ALIVE, NodeState.SUSPECT):
                return False
            if r.state == NodeState.DEAD:
                return now - r.state_change > cfg.gossip_to_the_dead_time
            return True

        limit = cfg.udp_buffer_size - COMPOUND_HEADER_OVERHEAD
        for record in self.table.random_nodes(cfg.gossip_nodes, exclude):
            msgs = self.get_broadcasts(COMPOUND_OVERHEAD, limit)
            if not msgs:
                return
            self.transport.send_packet(record.addr_text, record.port, msgs)

    # -- user operations --------------------------------------------------

    def _meta(self) -> bytes:
        meta = self.delegate.node_meta(META_MAX_SIZE)
        if len(meta) > META_MAX_SIZE:
            raise ValueError("Node meta data provided is longer than the limit")
        return meta

    def update_meta(self, timeout: float | None = None) -> Deferred[None]:
        """Advertise fresh meta from the delegate with a new incarnation."""
        if self._shut_down:
            return fail(MemberlistShutdown())
        me = self.table.local
        alive = Alive(
            incarnation=me.incarnation + 1,
            node=self.name,
            addr=me.addr,
            port=me.port,
            meta=self._meta(),
            vsn=me.vsn,
        )
        waiter = self._broadcast_waiter(timeout)
        self.apply_alive(alive, notify=waiter, bootstrap=True)
        return self._wait(waiter)

    def leave(self, timeout: float | None = None) -> Deferred[None]:
        """
        Gossip ``dead{node: self, from: self}`` (others mark us *left*) and
        fire once it has been broadcast; errback with BroadcastTimeout after
        ``timeout`` (default ``config.broadcast_timeout``).  Keep answering
        probes until ``shutdown()``.
        """
        if self._shut_down:
            return fail(MemberlistShutdown())
        if self._leaving:
            return self.eventually(None)
        self._leaving = True
        me = self.table.local
        waiter = self._broadcast_waiter(timeout)
        self.apply_dead(
            Dead(incarnation=me.incarnation, node=self.name, from_node=self.name), notify=waiter
        )
        return self._wait(waiter)

    def _broadcast_waiter(self, timeout: float | None) -> BroadcastWaiter:
        waiter = BroadcastWaiter(
            self.clock, self.config.broadcast_timeout if timeout is None else timeout
        )
        self._waiters = [w for w in self._waiters if w.waiting]
        self._waiters.append(waiter)
        return waiter

    def _wait(self, waiter: BroadcastWaiter) -> Deferred[None]:
        if not self.table.any_alive():
            return self.eventually(None)
        return waiter.wait()

    def eventually(self, result: object) -> Deferred[Any]:
        """A Deferred that fires one clock turn later (never mid-update)."""
        d: Deferred[Any] = Deferred()
        if isinstance(result, Failure):
            self.clock.callLater(0, d.errback, result)
        else:
            self.clock.callLater(0, d.callback, result)
        return d
