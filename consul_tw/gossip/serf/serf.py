# -*- test-case-name: tests.unit.gossip.test_serf -*-
"""
One Serf node: member status, intents, tags, events and queries over a
:class:`~consul_tw.gossip.memberlist.memberlist.Memberlist` it owns.

:class:`Serf` is the memberlist delegate (tags as node meta, Serf messages
as user messages, Serf state in push/pulls, member events) and offers the
same surface as the placeholder :class:`~.pool.Membership` (``start``,
``members``, ``local_member``, ``subscribe``, ``stats``, ``leave``) plus
joins, shutdown, force-leave, tags, user events and queries.  It also
takes inbound traffic (``packet_received``, ``push_pull_received``,
``stream_ping_received``) for its memberlist, so a transport or a
:class:`~consul_tw.testing.network.SimNetwork` can be bound to it.

Everything runs on the injected clock: the reap and reconnect timers,
leave's waits and query deadlines are cancelled by ``shutdown()``.  The
rules of member status live in :mod:`.intents`, the memberlist delegate
methods in :mod:`.delegate`, user events in :mod:`.events`, queries in
:mod:`.queries` and :mod:`.internal`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw.gossip.memberlist.broadcasts import (
    BroadcastTimeout,
    BroadcastWaiter,
    TransmitLimitedQueue,
)
from consul_tw.gossip.memberlist.codec import encode_message
from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.interfaces import IGossipTransport
from consul_tw.gossip.memberlist.keyring import Keyring
from consul_tw.gossip.memberlist.memberlist import Memberlist, MemberlistShutdown
from consul_tw.gossip.memberlist.messages import User
from consul_tw.gossip.members import Member
from consul_tw.gossip.serf.codec import encode_serf, encode_tags
from consul_tw.gossip.serf.config import SerfConfig
from consul_tw.gossip.serf.delegate import SerfDelegate
from consul_tw.gossip.serf.events import EventDispatcher, UserEventReceived, UserEvents
from consul_tw.gossip.serf.intents import MemberTable
from consul_tw.gossip.serf.internal import InternalQueries
from consul_tw.gossip.serf.lamport import LamportClock
from consul_tw.gossip.serf.messages import (
    JoinIntent,
    LeaveIntent,
    UserEvent,
)
from consul_tw.gossip.serf.pool import MemberEvent
from consul_tw.gossip.serf.queries import QueryManager, QueryParams, QueryReceived, QueryResponses

__all__ = ["Serf", "SerfConfig", "SerfError", "SerfShutdown", "SerfState"]

#: Serf's hard cap on a user event, whatever the configuration says.
USER_EVENT_SANE_LIMIT = 9 * 1024

MergeCheck = Callable[[list[Member]], "str | None"]


class SerfState(enum.Enum):
    ALIVE = "alive"
    LEAVING = "leaving"
    LEFT = "left"
    SHUTDOWN = "shutdown"


class SerfError(Exception):
    """An operation Serf refuses (texts as serf's)."""


class SerfShutdown(SerfError):
    """The node has been shut down."""


class Serf(SerfDelegate):
    def __init__(
        self,
        config: SerfConfig,
        memberlist_config: MemberlistConfig,
        name: str,
        addr: str,
        port: int,
        tags: Mapping[str, str],
        clock: IReactorTime,
        rng: random.Random,
        transport: IGossipTransport,
        logger: HcLogger,
        keyring: Keyring | None = None,
        delegate_version: int = 4,
        merge_check: MergeCheck | None = None,
        *,
        memberlist_logger: HcLogger | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.tags: dict[str, str] = dict(tags)
        encode_tags(self.tags)  # TagsTooLarge now rather than inside memberlist
        self.clock = clock
        self.rng = rng
        self.transport = transport
        self.logger = logger
        self.keyring = keyring
        self.merge_check = merge_check
        self.state = SerfState.ALIVE
        self.member_clock = LamportClock()
        self.event_clock = LamportClock()
        self.query_clock = LamportClock()
        self._timers: set[IDelayedCall] = set()
        self._pending: set[Deferred[Any]] = set()
        self._waiters: list[BroadcastWaiter] = []
        self._reap_timer: IDelayedCall | None = None
        self._reconnect_timer: IDelayedCall | None = None
        self._started = False
        self._join_ignore = 0
        self._leave_done: list[Deferred[None]] = []

        mult = memberlist_config.retransmit_mult
        self.broadcasts = TransmitLimitedQueue(mult, self._num_nodes)
        self.event_broadcasts = TransmitLimitedQueue(mult, self._num_nodes)
        self.query_broadcasts = TransmitLimitedQueue(mult, self._num_nodes)
        self.events = EventDispatcher(logger)
        self.table = MemberTable(self)
        self.user_events = UserEvents(
            self.event_clock, config.event_buffer_size, logger, self.events.user_event
        )
        self.queries = QueryManager(self, self.query_clock)
        self.internal = InternalQueries(self)
        self.memberlist: Memberlist = None  # type: ignore[assignment]  # set just below
        self.memberlist = Memberlist(
            config=memberlist_config,
            name=name,
            addr=addr,
            port=port,
            clock=clock,
            rng=rng,
            transport=transport,
            delegate=self,
            logger=memberlist_logger or logger,
            vsn=bytes([1, 5, 2, 2, 5, delegate_version]),
            size_of=lambda m: len(encode_message(m)),  # type: ignore[arg-type]
        )

    # -- lifecycle --------------------------------------------------------

    @property
    def is_alive(self) -> bool:
        return self.state is SerfState.ALIVE

    def start(self) -> None:
        """Start memberlist, the reap and reconnect timers, and event delivery."""
        if self._started or self.state is SerfState.SHUTDOWN:
            return
        self._started = True
        self.memberlist.start()
        self._reap_timer = self.later(self.config.reap_interval, self._reap_tick)
        self._reconnect_timer = self.later(self.config.reconnect_interval, self._reconnect_tick)
        self.events.start()

    def shutdown(self) -> None:
        """Stop at once, without a goodbye (others will see us fail); cancels every timer."""
        if self.state is SerfState.SHUTDOWN:
            return
        if self.state is not SerfState.LEFT:
            self.logger.warn("serf: Shutdown without a Leave")
        self.state = SerfState.SHUTDOWN
        self.memberlist.shutdown()
        for call in list(self._timers):
            if call.active():
                call.cancel()
        self._timers.clear()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.abandon(SerfShutdown())
        for d in list(self._pending):
            d.cancel()
        self.queries.shutdown()
        for queue in (self.broadcasts, self.event_broadcasts, self.query_broadcasts):
            queue.reset()

    def later(self, delay: float, f: Callable[..., object], *args: object) -> IDelayedCall:
        """A timer on our clock that ``shutdown()`` cancels."""

        def run() -> None:
            self._timers.discard(call)
            f(*args)

        call = self.clock.callLater(delay, run)
        if len(self._timers) > 64:  # forget cancelled ones (query deadlines)
            self._timers = {c for c in self._timers if c.active()}
        self._timers.add(call)
        return call

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._pending.add(d)

        def done(result: object) -> object:
            self._pending.discard(d)
            return result

        d.addBoth(done)
        return d

    # -- views ------------------------------------------------------------

    def members(self) -> list[Member]:
        """Every known member, left and failed ones included until reaped."""
        return [m.member() for m in self.table.members.values()]

    def local_member(self) -> Member:
        return self.table.members[self.name].member()

    @property
    def local(self) -> Member:
        return self.local_member()

    def member(self, name: str) -> Member | None:
        state = self.table.get(name)
        return None if state is None else state.member()

    def encryption_enabled(self) -> bool:
        return self.keyring is not None

    def stats(self) -> dict[str, str]:
        """Serf's Stats() map, as /v1/agent/self shows it."""
        return {
            "coordinate_resets": "0",
            "encrypted": "true" if self.encryption_enabled() else "false",
            "event_queue": str(len(self.event_broadcasts)),
            "event_time": str(self.event_clock.time()),
            "failed": str(len(self.table.failed)),
            "health_score": str(self.memberlist.health_score()),
            "intent_queue": str(len(self.broadcasts)),
            "left": str(len(self.table.left)),
            "member_time": str(self.member_clock.time()),
            "members": str(len(self.table.members)),
            "query_queue": str(len(self.query_broadcasts)),
            "query_time": str(self.query_clock.time()),
        }

    # -- subscribing ------------------------------------------------------

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> None:
        """Member events (join, leave, failed, update, reap)."""
        self.events.subscribe(callback)

    def subscribe_user_events(self, callback: Callable[[UserEventReceived], None]) -> None:
        self.events.subscribe_user_events(callback)

    def subscribe_queries(self, callback: Callable[[QueryReceived], None]) -> None:
        """User queries (internal ``_serf_`` ones are answered here and not shown)."""
        self.events.subscribe_queries(callback)

    # -- broadcasting -----------------------------------------------------

    def send_user(self, addr: str, port: int, raw: bytes) -> None:
        """One Serf message straight to ``addr:port`` as a UDP user message."""
        if self.memberlist.is_shut_down:
            return
        self.transport.send_packet(addr, port, [User(payload=raw)])

    def broadcast_join(self, ltime: int) -> None:
        msg = JoinIntent(ltime=ltime, node=self.name)
        self.member_clock.witness(ltime)
        self.table.join_intent(msg)
        self.queue_broadcast(self.broadcasts, encode_serf(msg))

    def _broadcast_and_wait(self, msg: LeaveIntent) -> Deferred[None]:
        waiter = BroadcastWaiter(self.clock, self.config.broadcast_timeout)
        self._waiters = [w for w in self._waiters if w.waiting]
        self._waiters.append(waiter)
        self.queue_broadcast(self.broadcasts, encode_serf(msg), notify=waiter)
        return waiter.wait()

    # -- operations -------------------------------------------------------

    def join(self, addrs: list[tuple[str, int]], ignore_old: bool = False) -> Deferred[int]:
        """
        Push/pull with each address (memberlist join), then gossip our join
        intent.  Fires with the number of nodes contacted; fails with
        memberlist's JoinError when none could be.  ``ignore_old`` skips the
        user events the cluster already had.
        """
        if self.state is not SerfState.ALIVE:
            return fail(SerfError("Serf can't Join after Leave or Shutdown"))
        if ignore_old:
            self._join_ignore += 1
        d = self.memberlist.join(list(addrs))

        def joined(n: int) -> int:
            if self.state is not SerfState.SHUTDOWN:
                self.broadcast_join(self.member_clock.time())
            return n

        def done(result: object) -> object:
            if ignore_old:
                self._join_ignore -= 1
            return result

        return d.addCallback(joined).addBoth(done)

    def leave(self) -> Deferred[None]:
        """
        Serf's graceful leave: become ``leaving`` and gossip the leave intent
        (waiting up to ``broadcast_timeout`` for it to go out, when anyone is
        alive to hear it), then memberlist's leave (``dead`` from ourselves,
        which makes us ``left``), then keep answering probes for
        ``leave_propagate_delay``.  A timed-out broadcast is logged and the
        leave goes on.  Calling it again returns the same outcome.
        """
        if self.state is SerfState.LEFT:
            return succeed(None)
        if self.state is SerfState.SHUTDOWN:
            return fail(SerfShutdown("Leave called after Shutdown"))
        d: Deferred[None] = Deferred()
        self._leave_done.append(d)
        if self.state is SerfState.ALIVE:
            self.state = SerfState.LEAVING
            Deferred.fromCoroutine(self._leave()).addBoth(self._left)
        return d

    def _left(self, result: object) -> None:
        if isinstance(result, Failure):
            self.logger.error(f"serf: leave failed: {result.getErrorMessage()}")
        if self.state is not SerfState.SHUTDOWN:
            self.state = SerfState.LEFT
        waiting, self._leave_done = self._leave_done, []
        for d in waiting:
            d.callback(None)

    async def _leave(self) -> None:
        msg = LeaveIntent(ltime=self.member_clock.time(), node=self.name)
        self.member_clock.increment()
        others = self.table.has_alive_others()
        self.table.leave_intent(msg)
        try:
            if others:
                try:
                    await self._track(self._broadcast_and_wait(msg))
                except BroadcastTimeout:
                    self.logger.warn("serf: timeout while waiting for graceful leave")
            try:
                await self._track(self.memberlist.leave(self.config.broadcast_timeout))
            except BroadcastTimeout:
                self.logger.warn("serf: timeout waiting for leave broadcast")
            if others:
                await self._track(deferLater(self.clock, self.config.leave_propagate_delay))
        except (CancelledError, SerfShutdown, MemberlistShutdown):
            return

    def force_leave(self, name: str, prune: bool = False) -> Deferred[None]:
        """
        Gossip a leave intent on behalf of ``name``: a failed member becomes
        ``left`` (an alive one ``leaving``, until it refutes); ``prune`` also
        erases it.  Fires once the intent has gone out.
        """
        if self.state is SerfState.SHUTDOWN:
            return fail(SerfShutdown("force-leave after Shutdown"))
        msg = LeaveIntent(ltime=self.member_clock.time(), node=name, prune=prune)
        self.member_clock.increment()
        self.table.leave_intent(msg)
        if not self.table.has_alive_others():
            return succeed(None)

        def timed_out(f: Failure) -> None:
            f.trap(BroadcastTimeout)
            raise SerfError("timed out broadcasting node removal")

        return self._broadcast_and_wait(msg).addErrback(timed_out)

    def set_tags(self, tags: Mapping[str, str]) -> Deferred[None]:
        """Advertise new tags (a fresh alive with incarnation + 1)."""
        if self.state is SerfState.SHUTDOWN:
            return fail(SerfShutdown("set tags after Shutdown"))
        try:
            encode_tags(tags)
        except ValueError as e:
            return fail(e)
        self.tags = dict(tags)
        return self.memberlist.update_meta(self.config.broadcast_timeout)

    def user_event(self, name: str, payload: bytes, coalesce: bool = True) -> None:
        """Gossip a user event to every member (and deliver it here too)."""
        limit = self.config.user_event_size_limit
        size = len(name.encode()) + len(payload)
        if size > limit:
            raise SerfError(f"user event exceeds configured limit of {limit} bytes before encoding")
        if size > USER_EVENT_SANE_LIMIT:
            raise SerfError(
                f"user event exceeds sane limit of {USER_EVENT_SANE_LIMIT} bytes before encoding"
            )
        msg = UserEvent(ltime=self.event_clock.time(), name=name, payload=payload, cc=coalesce)
        raw = encode_serf(msg)
        if len(raw) > limit:
            raise SerfError(
                f"encoded user event exceeds configured limit of {limit} bytes after encoding"
            )
        self.event_clock.increment()
        self.user_events.handle(msg)
        self.queue_broadcast(self.event_broadcasts, raw)

    def query(
        self, name: str, payload: bytes = b"", params: QueryParams | None = None
    ) -> QueryResponses:
        """Ask the cluster; acks and responses collect in the result until its deadline."""
        if self.state is SerfState.SHUTDOWN:
            raise SerfShutdown("query after Shutdown")
        return self.queries.query(name, payload, params or QueryParams())

    # -- timers -----------------------------------------------------------

    def _reap_tick(self) -> None:
        self._reap_timer = self.later(self.config.reap_interval, self._reap_tick)
        self.table.reap(self.clock.seconds())

    def _reconnect_tick(self) -> None:
        self._reconnect_timer = self.later(self.config.reconnect_interval, self._reconnect_tick)
        table = self.table
        if not table.failed:
            return
        alive = max(1, len(table.members) - len(table.failed) - len(table.left))
        if self.rng.random() > len(table.failed) / alive:
            self.logger.debug("serf: forgoing reconnect for random throttling")
            return
        member = table.failed[self.rng.randrange(len(table.failed))]
        self.logger.info(f"serf: attempting reconnect to {member.name} {member.addr}:{member.port}")
        d = self._track(self.memberlist.join([(member.addr, member.port)]))
        d.addErrback(
            lambda f: self.logger.debug(
                f"serf: reconnect to {member.name} failed: {f.getErrorMessage()}"
            )
        )
