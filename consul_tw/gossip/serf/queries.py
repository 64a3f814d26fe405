# -*- test-case-name: tests.unit.gossip.test_serf -*-
"""
Serf queries: asking the cluster, answering, dedupe, filters and relays.

A query is gossiped like a user event, but answers travel straight back
by UDP to the ``Addr:Port`` named in it: an *ack* (flag 1, no payload) at
once when asked for, and at most one *response* before the deadline.
Every node re-gossips a query it has not seen (unless flagged
no-broadcast) even when its filters exclude it; deduplication is by
(Lamport time, ID) over a window of ``query_buffer_size`` times.

With ``RelayFactor`` r > 0 a responder also sends r copies of each answer
wrapped in relay messages through random alive members that speak
memberlist protocol 5, and any node forwards the relays it receives.

Outgoing queries are tracked by Lamport time in :class:`QueryResponses`,
which collects acks and responses (one each per node) until the timeout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.state import addr_to_text, text_to_addr, version_byte
from consul_tw.gossip.members import MemberStatus
from consul_tw.gossip.serf.codec import decode_filter, encode_filter, encode_serf
from consul_tw.gossip.serf.lamport import LamportClock
from consul_tw.gossip.serf.messages import (
    NodeFilter,
    Query,
    QueryFlag,
    QueryResponse,
    Relay,
    TagFilter,
)

if TYPE_CHECKING:
    from consul_tw.gossip.serf.serf import Serf

INTERNAL_QUERY_PREFIX = "_serf_"


class QueryError(Exception):
    """A query could not be sent or answered (text as serf's)."""


def _names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


def _tag_filters(tags: Mapping[str, str]) -> dict[str, str]:
    return dict(tags)


@attrs.frozen(kw_only=True)
class QueryParams:
    """What ``Serf.query`` sends: filters (all must match), ack request, relays, timeout."""

    filter_nodes: tuple[str, ...] = attrs.field(default=(), converter=_names)
    filter_tags: dict[str, str] = attrs.field(factory=dict, converter=_tag_filters)
    request_ack: bool = False
    relay_factor: int = 0
    #: Seconds; None means Serf's default for the cluster size.
    timeout: float | None = None

    def encode_filters(self) -> list[bytes]:
        filters = []
        if self.filter_nodes:
            filters.append(encode_filter(NodeFilter(names=self.filter_nodes)))
        for tag, expr in self.filter_tags.items():
            filters.append(encode_filter(TagFilter(tag=tag, expr=expr)))
        return filters


@attrs.define(eq=False)
class QueryResponses:
    """Acks and responses to one of our queries, collected until its deadline."""

    name: str
    ltime: int
    id: int
    deadline: float
    acks: list[str] = attrs.field(factory=list)
    responses: dict[str, bytes] = attrs.field(factory=dict)
    on_ack: Callable[[str], object] | None = None
    on_response: Callable[[str, bytes], object] | None = None
    #: Fires with this object when the query is closed (timeout or shutdown).
    finished: Deferred[QueryResponses] = attrs.field(factory=Deferred)
    closed: bool = False
    _timer: IDelayedCall | None = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.finished.callback(self)


@attrs.define(eq=False)
class QueryReceived:
    """A query delivered to this node; ``respond`` at most once, before the deadline."""

    _manager: QueryManager
    ltime: int
    id: int
    name: str
    payload: bytes
    source_node: str
    addr: bytes
    port: int
    relay_factor: int
    deadline: float
    responded: bool = False

    def respond(self, payload: bytes) -> None:
        self._manager.respond(self, payload)


@attrs.define(eq=False)
class _Seen:
    ltime: int
    ids: list[int]


def default_timeout(serf: Serf) -> float:
    n = serf.memberlist.num_members()
    mult = serf.config.query_timeout_mult
    return serf.memberlist.config.gossip_interval * mult * math.ceil(math.log10(n + 1))


@attrs.define(eq=False)
class QueryManager:
    serf: Serf
    clock: LamportClock
    min_time: int = 0
    _seen: list[_Seen | None] = attrs.field(init=False)
    _outstanding: dict[int, QueryResponses] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self._seen = [None] * self.serf.config.query_buffer_size

    # -- asking -----------------------------------------------------------

    def query(self, name: str, payload: bytes, params: QueryParams) -> QueryResponses:
        serf = self.serf
        timeout = params.timeout if params.timeout is not None else default_timeout(serf)
        local = serf.memberlist.local_node()
        msg = Query(
            ltime=self.clock.time(),
            id=serf.rng.getrandbits(31),
            addr=text_to_addr(local.addr),
            port=local.port,
            source_node=serf.name,
            filters=params.encode_filters(),
            flags=QueryFlag.ACK if params.request_ack else 0,
            relay_factor=params.relay_factor,
            timeout_ns=int(timeout * 1e9),
            name=name,
            payload=payload,
        )
        raw = encode_serf(msg)
        limit = serf.config.query_size_limit
        if len(raw) > limit:
            raise QueryError(f"query exceeds limit of {limit} bytes")
        now = serf.clock.seconds()
        responses = QueryResponses(name=name, ltime=msg.ltime, id=msg.id, deadline=now + timeout)
        old = self._outstanding.pop(msg.ltime, None)
        if old is not None:
            old.close()
        self._outstanding[msg.ltime] = responses
        responses._timer = serf.later(timeout, self._expire, responses)
        self.handle_query(msg)
        serf.queue_broadcast(serf.query_broadcasts, raw)
        return responses

    def _expire(self, responses: QueryResponses) -> None:
        if self._outstanding.get(responses.ltime) is responses:
            del self._outstanding[responses.ltime]
        responses.close()

    def handle_response(self, resp: QueryResponse) -> None:
        query = self._outstanding.get(resp.ltime)
        log = self.serf.logger
        if query is None:
            log.warn(
                f"serf: reply for non-running query (LTime: {resp.ltime}, ID: {resp.id})"
                f" From: {resp.from_node}"
            )
            return
        if query.id != resp.id:
            log.warn(f"serf: query reply ID mismatch (Local: {query.id}, Response: {resp.id})")
            return
        if query.closed:
            return
        if resp.flags & QueryFlag.ACK:
            if resp.from_node in query.acks:
                return
            query.acks.append(resp.from_node)
            if query.on_ack is not None:
                query.on_ack(resp.from_node)
        else:
            if resp.from_node in query.responses:
                return
            payload = resp.payload or b""
            query.responses[resp.from_node] = payload
            if query.on_response is not None:
                query.on_response(resp.from_node, payload)

    def shutdown(self) -> None:
        outstanding, self._outstanding = self._outstanding, {}
        for query in outstanding.values():
            query.close()

    # -- answering --------------------------------------------------------

    def handle_query(self, q: Query) -> bool:
        """Dedupe, filter, ack and deliver a query; True when it should be re-gossiped."""
        serf = self.serf
        self.clock.witness(q.ltime)
        if q.ltime < self.min_time:
            return False
        now = self.clock.time()
        size = len(self._seen)
        if now > size and q.ltime < now - size:
            serf.logger.warn(
                f"serf: received old query {q.name} from time {q.ltime} (current: {now})"
            )
            return False
        index = q.ltime % size
        seen = self._seen[index]
        if seen is not None and seen.ltime == q.ltime:
            if q.id in seen.ids:
                return False
        else:
            seen = self._seen[index] = _Seen(q.ltime, [])
        seen.ids.append(q.id)
        rebroadcast = not q.flags & QueryFlag.NO_BROADCAST
        if not self.should_process(q.filters):
            return rebroadcast
        if q.flags & QueryFlag.ACK:
            ack = QueryResponse(ltime=q.ltime, id=q.id, from_node=serf.name, flags=QueryFlag.ACK)
            self._send_answer(q.addr, q.port, q.relay_factor, ack)
        received = QueryReceived(
            self,
            q.ltime,
            q.id,
            q.name,
            q.payload or b"",
            q.source_node,
            q.addr,
            q.port,
            q.relay_factor,
            serf.clock.seconds() + q.timeout_ns / 1e9,
        )
        if q.name.startswith(INTERNAL_QUERY_PREFIX):
            serf.internal.handle(received)
        else:
            serf.events.query(received)
        return rebroadcast

    def should_process(self, filters: tuple[bytes, ...]) -> bool:
        serf = self.serf
        for blob in filters:
            try:
                flt = decode_filter(blob)
            except WireError as e:
                serf.logger.warn(f"serf: failed to decode query filter: {e}")
                return False
            if isinstance(flt, NodeFilter):
                if serf.name not in flt.names:
                    return False
            else:
                try:
                    matched = re.search(flt.expr, serf.tags.get(flt.tag, ""))
                except re.error as e:
                    serf.logger.warn(f"serf: failed to compile filter regex ({flt.expr}): {e}")
                    return False
                if matched is None:
                    return False
        return True

    def respond(self, q: QueryReceived, payload: bytes) -> None:
        serf = self.serf
        resp = QueryResponse(ltime=q.ltime, id=q.id, from_node=serf.name, payload=payload)
        raw = encode_serf(resp)
        limit = serf.config.query_response_size_limit
        if len(raw) > limit:
            raise QueryError(f"response exceeds limit of {limit} bytes")
        if q.responded:
            raise QueryError("response already sent")
        if serf.clock.seconds() > q.deadline:
            raise QueryError("response is past the deadline")
        self._send_answer(q.addr, q.port, q.relay_factor, resp)
        q.responded = True

    def _send_answer(self, addr: bytes, port: int, relay_factor: int, resp: QueryResponse) -> None:
        serf = self.serf
        raw = encode_serf(resp)
        serf.send_user(addr_to_text(addr), port, raw)
        if relay_factor <= 0:
            return
        members = [m for m in serf.table.members.values()]
        if len(members) < relay_factor + 1:
            return
        relay = encode_serf(Relay(dest_addr=addr, dest_port=port, dest_name="", inner=raw))
        if len(relay) > serf.config.query_response_size_limit:
            serf.logger.error("serf: failed to relay response: relayed response exceeds limit")
            return
        candidates = [
            m
            for m in members
            if m.status is MemberStatus.ALIVE
            and version_byte(m.vsn, 1) >= 5
            and m.name != serf.name
        ]
        serf.rng.shuffle(candidates)
        for m in candidates[:relay_factor]:
            serf.send_user(m.addr, m.port, relay)

    def relay_received(self, relay: Relay) -> None:
        dest = addr_to_text(relay.dest_addr)
        self.serf.logger.debug(f"serf: Relaying response to addr: {dest}:{relay.dest_port}")
        self.serf.send_user(dest, relay.dest_port, relay.inner)
