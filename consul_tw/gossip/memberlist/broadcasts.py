# -*- test-case-name: tests.unit.gossip.test_broadcasts -*-
"""
memberlist's transmit-limited broadcast queue (``TransmitLimitedQueue``).

Each queued broadcast is piggybacked on outgoing packets until it has been
sent ``retransmit_mult × ceil(log10(N + 1))`` times.  Packets are filled
with the least-transmitted broadcasts first and, within one transmit
count, the largest that still fit (then the newest).  A broadcast with a
``name`` replaces any queued broadcast with the same name: memberlist
names its alive/suspect/dead broadcasts after the node they are about, so
only the newest news about a node travels.

The queue holds any payload: memberlist message records (sized by an
injected function; the codec supplies exact sizes, the default is a
conservative estimate) or already-encoded ``bytes`` (Serf's messages).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Bytes a message costs inside a compound packet (its length prefix).
COMPOUND_OVERHEAD = 2
#: Bytes the compound header itself costs (type byte + count).
COMPOUND_HEADER_OVERHEAD = 2
#: Extra bytes of a delegate message framed as a memberlist user message.
USER_MSG_OVERHEAD = 1

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _raw_header(n: int) -> int:
    return 1 if n < 32 else 3 if n < 65536 else 5


def _uint_size(n: int) -> int:
    return 1 if n < 128 else 2 if n < 256 else 3 if n < 65536 else 5 if n < 2**32 else 9


def estimate_size(payload: object) -> int:
    """
    An upper bound on a message's encoded size, close to exact: a type byte,
    a msgpack map header, and per field the key (Go's CamelCase name, never
    longer than the Python name without underscores) and the value in its
    widest plausible msgpack encoding.  ``bytes`` are their own length.
    """
    if isinstance(payload, bytes | bytearray):
        return len(payload)
    names = _FIELD_NAMES.get(type(payload))
    if names is None:
        cls: Any = type(payload)
        names = tuple(f.name for f in attrs.fields(cls))
        _FIELD_NAMES[type(payload)] = names
    size = 1 + 3
    for name in names:
        value = getattr(payload, name)
        key = len(name) - name.count("_")
        size += _raw_header(key) + key
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes):
            size += _raw_header(len(value)) + len(value)
        elif isinstance(value, bool) or value is None:
            size += 1
        elif isinstance(value, int) and value >= 0:
            size += _uint_size(value)
        elif isinstance(value, tuple):
            size += 5 + sum(estimate_size(v) for v in value)
        else:
            size += 9
    return size


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How often one broadcast is sent in a cluster of ``n`` nodes."""
    return retransmit_mult * int(math.ceil(math.log10(n + 1)))


@attrs.define(eq=False)
class Broadcast:
    payload: object
    #: Broadcasts with the same non-None name invalidate each other.
    name: str | None = None
    #: Called once when the broadcast is finished (sent enough, or replaced).
    notify: Callable[[], object] | None = None
    transmits: int = 0
    size: int = 0
    id: int = 0

    def finished(self) -> None:
        if self.notify is not None:
            notify, self.notify = self.notify, None
            notify()


@attrs.define(eq=False)
class TransmitLimitedQueue:
    retransmit_mult: int
    num_nodes: Callable[[], int]
    size_of: Callable[[object], int] = estimate_size
    _items: list[Broadcast] = attrs.field(factory=list)
    _by_name: dict[str, Broadcast] = attrs.field(factory=dict)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    def __len__(self) -> int:
        return len(self._items)

    def queue(
        self,
        payload: object,
        name: str | None = None,
        notify: Callable[[], object] | None = None,
    ) -> Broadcast:
        """Queue a new broadcast, replacing (and finishing) an older one of the same name."""
        item = Broadcast(payload, name, notify, 0, self.size_of(payload), next(self._ids))
        if name is not None:
            old = self._by_name.pop(name, None)
            if old is not None:
                self._items.remove(old)
                old.finished()
            self._by_name[name] = item
        self._items.append(item)
        return item

    def get(
        self,
        limit: int,
        size_of: Callable[[object], int] | None = None,
        overhead: int = COMPOUND_OVERHEAD,
    ) -> list[object]:
        """
        Payloads to piggyback within ``limit`` bytes (each costing its size
        plus ``overhead``); each one taken counts as a transmission.
        """
        if not self._items:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, self.num_nodes())

        def size(item: Broadcast) -> int:
            return item.size if size_of is None else size_of(item.payload)

        sized = [(item, size(item)) for item in self._items]
        sized.sort(key=lambda pair: (pair[0].transmits, -pair[1], -pair[0].id))
        used = 0
        out: list[object] = []
        for item, item_size in sized:
            free = limit - used - overhead
            if free <= 0:
                break
            if item_size > free:
                continue
            used += overhead + item_size
            out.append(item.payload)
            item.transmits += 1
            if item.transmits >= transmit_limit:
                self._remove(item)
                item.finished()
        return out

    def pending(self) -> list[object]:
        """The queued payloads, oldest first, without counting a transmission."""
        return [item.payload for item in self._items]

    def prune(self, max_retain: int) -> None:
        """Drop the most-transmitted (then oldest) broadcasts beyond ``max_retain``."""
        if len(self._items) <= max_retain:
            return
        ordered = sorted(self._items, key=lambda item: (item.transmits, -item.id))
        for item in ordered[max_retain:]:
            self._remove(item)
            item.finished()

    def reset(self) -> None:
        """Forget every broadcast without notifying anyone (shutdown)."""
        self._items.clear()
        self._by_name.clear()

    def _remove(self, item: Broadcast) -> None:
        self._items.remove(item)
        if item.name is not None and self._by_name.get(item.name) is item:
            del self._by_name[item.name]


class BroadcastTimeout(Exception):
    """A broadcast we waited for (leave, meta update) did not go out in time."""


@attrs.define(eq=False)
class BroadcastWaiter:
    """
    Pass as a broadcast's ``notify``; ``wait()`` gives a Deferred that fires
    (one clock turn later) once the broadcast is finished, or fails with
    BroadcastTimeout after ``timeout`` seconds.
    """

    clock: IReactorTime
    timeout: float
    done: bool = False
    deferred: Deferred[None] | None = None
    _timer: IDelayedCall | None = None

    def __call__(self) -> None:
        self.done = True
        if self.waiting:
            assert self._timer is not None and self.deferred is not None
            self._timer.cancel()
            self.clock.callLater(0, self.deferred.callback, None)

    @property
    def waiting(self) -> bool:
        return self._timer is not None and self._timer.active()

    def wait(self) -> Deferred[None]:
        self.deferred = Deferred()
        if self.done:
            self.clock.callLater(0, self.deferred.callback, None)
        else:
            self._timer = self.clock.callLater(self.timeout, self._expired)
        return self.deferred

    def abandon(self, error: Exception) -> None:
        """Stop waiting and fail (shutdown)."""
        if self.waiting:
            assert self._timer is not None and self.deferred is not None
            self._timer.cancel()
            self.deferred.errback(error)

    def _expired(self) -> None:
        assert self.deferred is not None
        self.done = True
        self.deferred.errback(BroadcastTimeout("timeout waiting for broadcast"))
