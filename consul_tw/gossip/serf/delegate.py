# -*- test-case-name: tests.unit.gossip.test_serf -*-
"""
Serf's side of the memberlist seam (``IMemberlistDelegate``), as a mixin
of :class:`~.serf.Serf`.

- node meta: ``0xff`` + our tags;
- user messages: Serf messages (intents, user events, queries, responses,
  relays), each dispatched and re-gossiped when it was news;
- broadcasts: intents first, then queries, then user events;
- push/pull user state: the three Lamport clocks, status times, left
  members and the user-event ring, produced and merged;
- member events from memberlist, turned into Serf status by the table;
- merge and alive vetoes through the configured ``merge_check``;
- inbound traffic for the transport, handed to the memberlist.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from consul_tw._logging import HcLogger
from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.broadcasts import TransmitLimitedQueue
from consul_tw.gossip.memberlist.memberlist import Memberlist
from consul_tw.gossip.memberlist.messages import Ack, Message, NodeState, Ping, PushPull
from consul_tw.gossip.memberlist.state import Node
from consul_tw.gossip.members import Member, MemberStatus
from consul_tw.gossip.serf.codec import decode_serf, encode_serf, encode_tags
from consul_tw.gossip.serf.config import SerfConfig
from consul_tw.gossip.serf.events import UserEvents
from consul_tw.gossip.serf.intents import MemberTable, node_tags
from consul_tw.gossip.serf.lamport import LamportClock
from consul_tw.gossip.serf.messages import (
    JoinIntent,
    LeaveIntent,
    PushPullState,
    Query,
    QueryResponse,
    Relay,
    UserEvent,
)
from consul_tw.gossip.serf.queries import QueryManager

if TYPE_CHECKING:
    from consul_tw.gossip.serf.serf import MergeCheck


class SerfDelegate:
    """The delegate methods; the state they use is :class:`~.serf.Serf`'s."""

    name: str
    tags: dict[str, str]
    rng: random.Random
    logger: HcLogger
    memberlist: Memberlist
    table: MemberTable
    user_events: UserEvents
    queries: QueryManager
    member_clock: LamportClock
    event_clock: LamportClock
    query_clock: LamportClock
    broadcasts: TransmitLimitedQueue
    event_broadcasts: TransmitLimitedQueue
    query_broadcasts: TransmitLimitedQueue
    merge_check: MergeCheck | None
    config: SerfConfig
    _join_ignore: int

    def _num_nodes(self) -> int:
        ml = getattr(self, "memberlist", None)
        return ml.num_members() if ml is not None else 1

    def queue_broadcast(
        self, queue: TransmitLimitedQueue, raw: bytes, notify: Callable[[], object] | None = None
    ) -> None:
        queue.queue(raw, notify=notify)
        depth = max(self.config.min_queue_depth, 2 * self._num_nodes())
        if len(queue) > depth:
            queue.prune(depth)

    # -- inbound traffic (for the transport) ---------------------------------

    def packet_received(self, from_addr: str, from_port: int, messages: list[Message]) -> None:
        self.memberlist.packet_received(from_addr, from_port, messages)

    def push_pull_received(self, from_addr: str, from_port: int, remote: PushPull) -> PushPull:
        return self.memberlist.push_pull_received(from_addr, from_port, remote)

    def stream_ping_received(self, ping: Ping) -> Ack | None:
        return self.memberlist.stream_ping_received(ping)

    # -- IMemberlistDelegate ------------------------------------------------

    def node_meta(self, limit: int) -> bytes:
        return encode_tags(self.tags)

    def notify_user(self, payload: bytes) -> None:
        try:
            msg = decode_serf(payload)
        except WireError as e:
            self.logger.warn(f"serf: Received bad message: {e}")
            return
        queue = self.broadcasts
        rebroadcast = False
        if isinstance(msg, LeaveIntent):
            self.logger.debug(f"serf: messageLeaveType: {msg.node}")
            rebroadcast = self.table.leave_intent(msg)
        elif isinstance(msg, JoinIntent):
            self.logger.debug(f"serf: messageJoinType: {msg.node}")
            rebroadcast = self.table.join_intent(msg)
        elif isinstance(msg, UserEvent):
            self.logger.debug(f"serf: messageUserEventType: {msg.name}")
            rebroadcast, queue = self.user_events.handle(msg), self.event_broadcasts
        elif isinstance(msg, Query):
            self.logger.debug(f"serf: messageQueryType: {msg.name}")
            rebroadcast, queue = self.queries.handle_query(msg), self.query_broadcasts
        elif isinstance(msg, QueryResponse):
            self.logger.debug(f"serf: messageQueryResponseType: {msg.from_node}")
            self.queries.handle_response(msg)
        elif isinstance(msg, Relay):
            self.queries.relay_received(msg)
        else:
            self.logger.warn(f"serf: Received message of unknown type: {payload[0]}")
        if rebroadcast:
            self.queue_broadcast(queue, bytes(payload))

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out: list[bytes] = []
        for queue in (self.broadcasts, self.query_broadcasts, self.event_broadcasts):
            used = sum(len(m) + overhead for m in out)
            if limit - used <= overhead:
                break
            out.extend(cast(list[bytes], queue.get(limit - used, overhead=overhead)))
        return out

    def local_state(self, join: bool) -> bytes:
        return encode_serf(
            PushPullState(
                ltime=self.member_clock.time(),
                status_ltimes=self.table.status_ltimes(),
                left_members=self.table.left_names(),
                event_ltime=self.event_clock.time(),
                events=self.user_events.ring(),
                query_ltime=self.query_clock.time(),
            )
        )

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        try:
            pp = decode_serf(data)
        except WireError as e:
            self.logger.error(f"serf: Failed to decode remote state: {e}")
            return
        if not isinstance(pp, PushPullState):
            self.logger.error(f"serf: Remote state has bad type prefix: {data[0]}")
            return
        if pp.ltime > 0:
            self.member_clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        self.table.merge(pp.status_ltimes, pp.left_members)
        if join and self._join_ignore and pp.event_ltime > self.user_events.min_time:
            self.user_events.min_time = pp.event_ltime
        self.user_events.merge(pp.events)

    def notify_join(self, node: Node) -> None:
        self.table.node_joined(node)

    def notify_leave(self, node: Node) -> None:
        self.table.node_left(node)

    def notify_update(self, node: Node) -> None:
        self.table.node_updated(node)

    def _as_member(self, node: Node) -> Member:
        status = MemberStatus.LEFT if node.state == NodeState.LEFT else MemberStatus.NONE
        # mypy misreads Member's ``converter=dict`` on tags, hence the ignore.
        return Member(
            name=node.name,
            addr=node.addr,
            port=node.port,
            tags=node_tags(node, self.logger),  # type: ignore[arg-type]
            status=status,
            protocol_min=node.pmin,
            protocol_max=node.pmax,
            protocol_cur=node.pcur,
            delegate_min=node.dmin,
            delegate_max=node.dmax,
            delegate_cur=node.dcur,
        )

    def notify_alive(self, node: Node) -> str | None:
        if self.merge_check is None:
            return None
        return self.merge_check([self._as_member(node)])

    def notify_merge(self, nodes: list[Node]) -> str | None:
        if self.merge_check is None:
            return None
        return self.merge_check([self._as_member(n) for n in nodes])

    def notify_conflict(self, existing: Node, other: Node) -> None:
        if existing.name != self.name:
            self.logger.warn(
                f"serf: Name conflict for '{existing.name}' both {existing.addr}:{existing.port}"
                f" and {other.addr}:{other.port} are claiming"
            )
            return
        self.logger.error(
            f"serf: Node name conflicts with another node at {other.addr}:{other.port}."
            " Names must be unique! (Resolution enabled: false)"
        )

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: Node, rtt: float, payload: bytes) -> None:
        pass
