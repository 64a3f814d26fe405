# -*- test-case-name: tests.unit.gossip.test_memberlist -*-
"""
Push/pull: full-state exchange over TCP, for joins and anti-entropy.

Both sides send every node they hold (dead ones until reaped, left ones
for good) plus the delegate's user state.  The responder builds its reply
*before* merging what it read.  Merging (gossip-wire.md §5.2): first the
version check over every node, then on a join the delegate may veto, then
each remote entry is applied as a claim — alive as alive, left as
``dead{from: itself}``, dead or suspect only as a *suspect* from us (a
peer's opinion that someone died is never proof).

Periodic push/pull picks one random alive node every ``push_pull_interval``,
scaled up beyond 32 nodes as memberlist does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from consul_tw.gossip.memberlist.messages import (
    Alive,
    Dead,
    NodeState,
    PushNodeState,
    PushPull,
    Suspect,
)
from consul_tw.gossip.memberlist.state import Node, NodeRecord, addr_to_text, version_byte

if TYPE_CHECKING:
    from consul_tw.gossip.memberlist.memberlist import Memberlist


class PushPullError(Exception):
    """A push/pull's merge was refused (versions, or the merge delegate)."""


class JoinError(Exception):
    """No seed could be joined; ``errors`` holds one text per address."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors) or "no addresses to join")
        self.errors = errors


def push_pull_scale(interval: float, n: int) -> float:
    """memberlist slows periodic push/pull down beyond 32 nodes."""
    threshold = 32
    if n <= threshold:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(threshold)) + 1.0
    return multiplier * interval


def verify_protocol(remote: tuple[PushNodeState, ...], local: list[NodeRecord]) -> str | None:
    """
    memberlist's ``verifyProtocol``: every node's current protocol and
    delegate versions must lie within what every alive node understands.
    Returns the error text, or None when compatible.
    """
    alive = [n.vsn for n in remote if n.state == NodeState.ALIVE and n.vsn]
    alive += [n.vsn for n in local if n.state == NodeState.ALIVE]
    p_low = max((version_byte(v, 0) for v in alive), default=0)
    p_high = min((version_byte(v, 1) for v in alive), default=255)
    d_low = max((version_byte(v, 3) for v in alive), default=0)
    d_high = min((version_byte(v, 4) for v in alive), default=255)
    for name, vsn in [(r.name, r.vsn) for r in remote] + [(n.name, n.vsn) for n in local]:
        pcur, dcur = version_byte(vsn, 2), version_byte(vsn, 5)
        if not p_low <= pcur <= p_high:
            return f"Node '{name}' protocol version ({pcur}) is incompatible: [{p_low}, {p_high}]"
        if not d_low <= dcur <= d_high:
            return (
                f"Node '{name}' delegate protocol version ({dcur}) is incompatible:"
                f" [{d_low}, {d_high}]"
            )
    return None


@attrs.define(eq=False)
class StateSync:
    ml: Memberlist
    _timer: IDelayedCall | None = None
    _in_flight: set[Deferred[Any]] = attrs.field(factory=set)

    def start(self, stagger: float) -> None:
        if self.ml.config.push_pull_interval > 0:
            self._timer = self.ml.clock.callLater(stagger, self._tick)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        for d in list(self._in_flight):
            d.cancel()

    def _tick(self) -> None:
        ml = self.ml
        interval = push_pull_scale(ml.config.push_pull_interval, len(ml.table))
        self._timer = ml.clock.callLater(interval, self._tick)
        peers = ml.table.random_nodes(1, lambda r: r.name == ml.name or r.state != NodeState.ALIVE)
        if not peers:
            return
        peer = peers[0]
        d = self.push_pull_node(peer.addr_text, peer.port, join=False)
        d.addErrback(
            lambda f: ml.logger.error(
                f"memberlist: Push/Pull with {peer.name} failed: {f.getErrorMessage()}"
            )
        )

    def local_state(self, join: bool) -> PushPull:
        ml = self.ml
        nodes: Any = ml.table.push_states()
        return PushPull(join=join, nodes=nodes, user_state=ml.delegate.local_state(join))

    def merge_remote_state(self, remote: PushPull) -> str | None:
        """Merge a peer's push/pull; the error text when refused, else None."""
        ml = self.ml
        error = verify_protocol(remote.nodes, ml.table.nodes)
        if error is not None:
            return error
        if remote.join:
            views = [
                Node(n.name, addr_to_text(n.addr), n.port, n.meta, n.vsn, n.incarnation, n.state)
                for n in remote.nodes
            ]
            error = ml.delegate.notify_merge(views)
            if error:
                return error
        for n in remote.nodes:
            if n.state == NodeState.ALIVE:
                ml.apply_alive(
                    Alive(
                        incarnation=n.incarnation,
                        node=n.name,
                        addr=n.addr,
                        port=n.port,
                        meta=n.meta,
                        vsn=n.vsn,
                    )
                )
            elif n.state == NodeState.LEFT:
                ml.apply_dead(Dead(incarnation=n.incarnation, node=n.name, from_node=n.name))
            else:
                ml.apply_suspect(Suspect(incarnation=n.incarnation, node=n.name, from_node=ml.name))
        if remote.user_state:
            ml.delegate.merge_remote_state(remote.user_state, remote.join)
        return None

    def push_pull_received(self, from_addr: str, from_port: int, remote: PushPull) -> PushPull:
        reply = self.local_state(remote.join)
        error = self.merge_remote_state(remote)
        if error is not None:
            self.ml.logger.error(
                f"memberlist: Failed push/pull merge: {error} from={from_addr}:{from_port}"
            )
        return reply

    def push_pull_node(self, addr: str, port: int, join: bool) -> Deferred[None]:
        """Exchange state with ``addr:port`` and merge the reply."""
        d = self.ml.transport.push_pull(addr, port, self.local_state(join))
        self._in_flight.add(d)

        def merge(reply: PushPull) -> None:
            self._in_flight.discard(d)
            if self.ml.is_shut_down:
                return
            error = self.merge_remote_state(reply)
            if error is not None:
                raise PushPullError(error)

        def failed(failure: Any) -> Any:
            self._in_flight.discard(d)
            return failure

        return d.addCallbacks(merge, failed)

    async def join(self, addrs: list[tuple[str, int]]) -> int:
        successes = 0
        errors: list[str] = []
        for addr, port in addrs:
            try:
                await self.push_pull_node(addr, port, join=True)
            except Exception as e:
                text = f"Failed to join {addr}:{port}: {str(e) or type(e).__name__}"
                errors.append(text)
                self.ml.logger.debug(f"memberlist: {text}")
            else:
                successes += 1
        await self.ml.eventually(None)  # fire one turn later, never mid-merge
        if successes == 0:
            raise JoinError(errors)
        return successes
