# -*- test-case-name: tests.unit.gossip.test_memberlist -*-
"""
The seams around :class:`~consul_tw.gossip.memberlist.memberlist.Memberlist`.

``IGossipTransport`` is how a node talks to others: best-effort packets
(UDP) and two request/response stream exchanges (TCP).  The real one
encodes with the codec and uses sockets; :mod:`consul_tw.testing.network`
delivers records in memory on a ``Clock``.  Inbound traffic goes the other
way, by calling the node's ``packet_received``, ``push_pull_received`` and
``stream_ping_received``.

``IMemberlistDelegate`` is what the layer above (Serf) plugs in: node meta,
user messages and state, and notifications.  It folds memberlist's
Delegate, EventDelegate, AliveDelegate, MergeDelegate, ConflictDelegate and
PingDelegate into one object; :class:`NoopDelegate` is the do-nothing base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred

from consul_tw.gossip.memberlist.messages import Ack, Message, Ping, PushPull

if TYPE_CHECKING:
    from consul_tw.gossip.memberlist.state import Node


class IGossipTransport(Protocol):
    def send_packet(self, addr: str, port: int, messages: list[Message]) -> None:
        """
        Send one UDP packet, best effort.  More than one message means a
        compound packet (the first is the primary, the rest piggybacked).
        """

    def push_pull(self, addr: str, port: int, message: PushPull) -> Deferred[PushPull]:
        """TCP push/pull: fires with the peer's reply; errbacks on failure or timeout."""

    def stream_ping(self, addr: str, port: int, ping: Ping) -> Deferred[Ack]:
        """
        TCP fallback ping: fires with the ack.  The caller cancels the
        Deferred when it stops caring (end of the probe).
        """


class IMemberlistDelegate(Protocol):
    def node_meta(self, limit: int) -> bytes:
        """This node's meta (Serf: 0xff + msgpack tags), at most ``limit`` bytes."""

    def notify_user(self, payload: bytes) -> None:
        """A user message (Serf message: type byte + body) arrived."""

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Queued user messages to piggyback; each costs ``len + overhead`` of ``limit``."""

    def local_state(self, join: bool) -> bytes:
        """User state for a push/pull (Serf's push/pull message)."""

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        """A peer's user state from a push/pull."""

    def notify_join(self, node: Node) -> None:
        """A node became alive (first seen, or back from dead/left)."""

    def notify_leave(self, node: Node) -> None:
        """A node died (``node.state`` DEAD) or left (LEFT)."""

    def notify_update(self, node: Node) -> None:
        """An alive node's meta changed."""

    def notify_alive(self, node: Node) -> str | None:
        """Veto an alive message: return error text to drop it."""

    def notify_merge(self, nodes: list[Node]) -> str | None:
        """Veto a join push/pull's node list: return error text to refuse it."""

    def notify_conflict(self, existing: Node, other: Node) -> None:
        """An alive message claims a known name from another address."""

    def ack_payload(self) -> bytes:
        """Payload for acks we send (Serf: network coordinate); empty for none."""

    def notify_ping_complete(self, node: Node, rtt: float, payload: bytes) -> None:
        """A direct probe of ``node`` was acked after ``rtt`` seconds with ``payload``."""


class NoopDelegate:
    """A delegate that has nothing to say and accepts everything."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_user(self, payload: bytes) -> None:
        pass

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        pass

    def notify_join(self, node: Node) -> None:
        pass

    def notify_leave(self, node: Node) -> None:
        pass

    def notify_update(self, node: Node) -> None:
        pass

    def notify_alive(self, node: Node) -> str | None:
        return None

    def notify_merge(self, nodes: list[Node]) -> str | None:
        return None

    def notify_conflict(self, existing: Node, other: Node) -> None:
        pass

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: Node, rtt: float, payload: bytes) -> None:
        pass
