# -*- test-case-name: tests.unit.gossip.test_serf -*-
"""
What Serf tells the layer above, and the user-event dedupe ring.

Member events go to subscribers as :class:`~.pool.MemberEvent` (the type
the agent and the leader already consume), user events as
:class:`UserEventReceived` and queries as
:class:`~.queries.QueryReceived`.  Until ``start()`` nothing is delivered:
events (the local member's own join, raised while memberlist is being
built) wait in order, so a subscriber added between construction and start
sees them, as with the placeholder ``Membership``.  A subscriber that
raises is logged and does not stop the others or the protocol.

:class:`UserEvents` is Serf's event ring: one slot per Lamport time modulo
the buffer size, each holding the (name, payload) pairs seen at that time,
which dedupes rebroadcasts and feeds the push/pull ``Events`` array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from consul_tw._logging import HcLogger
from consul_tw.gossip.members import Member
from consul_tw.gossip.serf.lamport import LamportClock
from consul_tw.gossip.serf.messages import UserEvent, UserEventCollection, UserEventEntry
from consul_tw.gossip.serf.pool import EventType, MemberEvent


@attrs.frozen
class UserEventReceived:
    """A user event (``serf event NAME PAYLOAD``), delivered once per node."""

    ltime: int
    name: str
    payload: bytes
    coalesce: bool


@attrs.define(eq=False)
class EventDispatcher:
    logger: HcLogger
    started: bool = False
    _member_subscribers: list[Callable[[MemberEvent], None]] = attrs.field(factory=list)
    _user_subscribers: list[Callable[[UserEventReceived], None]] = attrs.field(factory=list)
    _query_subscribers: list[Callable[[Any], None]] = attrs.field(factory=list)
    _pending: list[Callable[[], None]] = attrs.field(factory=list)

    def start(self) -> None:
        self.started = True
        pending, self._pending = self._pending, []
        for deliver in pending:
            deliver()

    def _run(self, deliver: Callable[[], None]) -> None:
        if self.started:
            deliver()
        else:
            self._pending.append(deliver)

    def _call_all(self, subscribers: list[Callable[[Any], None]], event: object) -> None:
        for callback in list(subscribers):
            try:
                callback(event)
            except Exception as e:  # a subscriber's bug must not break gossip
                self.logger.error("serf: event subscriber failed", error=repr(e))

    # -- subscribing ------------------------------------------------------

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> None:
        self._member_subscribers.append(callback)

    def subscribe_user_events(self, callback: Callable[[UserEventReceived], None]) -> None:
        self._user_subscribers.append(callback)

    def subscribe_queries(self, callback: Callable[[Any], None]) -> None:
        self._query_subscribers.append(callback)

    # -- emitting ---------------------------------------------------------

    def member(self, kind: EventType, member: Member, text: str) -> None:
        """Log ``text`` (INFO) and deliver ``kind`` about ``member``."""

        def deliver() -> None:
            self.logger.info(text)
            self._call_all(self._member_subscribers, MemberEvent(kind, (member,)))

        self._run(deliver)

    def user_event(self, event: UserEventReceived) -> None:
        self._run(lambda: self._call_all(self._user_subscribers, event))

    def query(self, query: object) -> None:
        self._run(lambda: self._call_all(self._query_subscribers, query))


def member_event_text(kind: EventType, member: Member, forced: bool = False) -> str:
    """Serf's log line for a member event."""
    label = kind.serf_name + (" (forced)" if forced else "")
    if kind in (EventType.MEMBER_UPDATE, EventType.MEMBER_REAP) and not forced:
        return f"serf: {label}: {member.name}"
    return f"serf: {label}: {member.name} {member.addr}"


@attrs.define(eq=False)
class _Slot:
    ltime: int
    events: list[UserEventEntry]


def _same_payload(a: bytes | None, b: bytes | None) -> bool:
    return (a or b"") == (b or b"")


@attrs.define(eq=False)
class UserEvents:
    """Serf's user-event clock, dedupe ring and minimum time (for ``ignore_old`` joins)."""

    clock: LamportClock
    size: int
    logger: HcLogger
    deliver: Callable[[UserEventReceived], None]
    min_time: int = 0
    _ring: list[_Slot | None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._ring = [None] * self.size

    def handle(self, msg: UserEvent) -> bool:
        """Record and deliver a user event; True when it is new (rebroadcast it)."""
        self.clock.witness(msg.ltime)
        if msg.ltime < self.min_time:
            return False
        now = self.clock.time()
        if now > self.size and msg.ltime < now - self.size:
            self.logger.warn(
                f"serf: received old event {msg.name} from time {msg.ltime} (current: {now})"
            )
            return False
        index = msg.ltime % self.size
        slot = self._ring[index]
        if slot is not None and slot.ltime == msg.ltime:
            for seen in slot.events:
                if seen.name == msg.name and _same_payload(seen.payload, msg.payload):
                    return False
        else:
            slot = self._ring[index] = _Slot(msg.ltime, [])
        slot.events.append(UserEventEntry(name=msg.name, payload=msg.payload))
        self.deliver(UserEventReceived(msg.ltime, msg.name, msg.payload or b"", msg.cc))
        return True

    def ring(self) -> tuple[UserEventCollection | None, ...]:
        """The whole ring, as Serf sends it in a push/pull."""
        return tuple(
            None if slot is None else UserEventCollection(ltime=slot.ltime, events=slot.events)
            for slot in self._ring
        )

    def merge(self, ring: tuple[UserEventCollection | None, ...]) -> None:
        """Replay the events of a peer's ring (dedupe drops the ones already seen)."""
        for slot in ring:
            if slot is None:
                continue
            for entry in slot.events:
                self.handle(UserEvent(ltime=slot.ltime, name=entry.name, payload=entry.payload))
