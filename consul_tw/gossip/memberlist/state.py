# -*- test-case-name: tests.unit.gossip.test_memberlist_state -*-
"""
The node table and memberlist 0.2.2's rules for alive, suspect and dead.

:class:`NodeTable` applies one claim at a time and returns an
:class:`Outcome` saying what changed and what the node must do about it
(re-gossip, refute, start a suspicion timer, tell the delegate, log).  It
does no I/O and owns no clock: the caller passes ``now`` and creates the
suspicion timers, which the table only confirms and cancels.

The rules (gossip-wire.md §4.4):

- alive about another node applies only with a strictly greater
  incarnation (a first sighting always applies); it clears suspicion.  A
  known name at another address is a conflict unless the old entry has
  left, or died longer ago than the reclaim time.  Bad or short ``Vsn``
  and delegate vetoes drop the message.
- suspect/dead with an older incarnation are ignored; suspect only
  touches alive nodes (or confirms a running suspicion); dead only touches
  nodes that are not dead or left yet, and ``dead`` from the node itself
  means it *left*.
- claims about ourselves are refuted (incarnation beyond the accusation),
  except a dead-from-self while we are leaving; an alive about ourselves
  with our incarnation but other meta/Vsn is refuted too.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from typing import Protocol

import attrs

from consul_tw.gossip.memberlist.messages import Alive, Dead, NodeState, PushNodeState, Suspect

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def normalize_addr(addr: bytes) -> bytes:
    """An IPv4-mapped IPv6 address (Go may send those) as its 4 IPv4 bytes."""
    return addr[12:] if len(addr) == 16 and addr[:12] == _V4_MAPPED else addr


def addr_to_text(addr: bytes) -> str:
    """A wire address as text; an IPv4-mapped IPv6 address becomes plain IPv4."""
    addr = normalize_addr(addr)
    if len(addr) == 4:
        return socket.inet_ntoa(addr)
    if len(addr) == 16:
        return socket.inet_ntop(socket.AF_INET6, addr)
    return addr.hex()


def text_to_addr(text: str) -> bytes:
    try:
        return socket.inet_aton(text)
    except OSError:
        return socket.inet_pton(socket.AF_INET6, text)


def version_byte(vsn: bytes, index: int) -> int:
    """One byte of a Vsn vector, 0 when it is too short."""
    return vsn[index] if len(vsn) > index else 0


@attrs.frozen
class Node:
    """A read-only view of one node, as the delegate and the API see it."""

    name: str
    addr: str
    port: int
    meta: bytes
    vsn: bytes
    incarnation: int
    state: NodeState
    state_change: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.addr}:{self.port}"

    pmin = property(lambda self: version_byte(self.vsn, 0))
    pmax = property(lambda self: version_byte(self.vsn, 1))
    pcur = property(lambda self: version_byte(self.vsn, 2))
    dmin = property(lambda self: version_byte(self.vsn, 3))
    dmax = property(lambda self: version_byte(self.vsn, 4))
    dcur = property(lambda self: version_byte(self.vsn, 5))


class SuspicionLike(Protocol):
    def confirm(self, peer: str) -> bool: ...

    def cancel(self) -> None: ...


@attrs.define(eq=False)
class NodeRecord:
    """The table's mutable entry for one node."""

    name: str
    addr: bytes
    port: int
    meta: bytes
    vsn: bytes
    incarnation: int
    state: NodeState
    state_change: float
    suspicion: SuspicionLike | None = None

    @property
    def dead_or_left(self) -> bool:
        return self.state in (NodeState.DEAD, NodeState.LEFT)

    @property
    def pmax(self) -> int:
        return version_byte(self.vsn, 1)

    @property
    def addr_text(self) -> str:
        return addr_to_text(self.addr)

    def view(self) -> Node:
        return Node(
            self.name,
            addr_to_text(self.addr),
            self.port,
            self.meta,
            self.vsn,
            self.incarnation,
            self.state,
            self.state_change,
        )

    def clear_suspicion(self) -> None:
        if self.suspicion is not None:
            self.suspicion.cancel()
            self.suspicion = None


@attrs.frozen
class Outcome:
    """What one claim did.  The default is "ignored, nothing to do"."""

    #: The claim changed the table.
    applied: bool = False
    #: Re-gossip this (the claim itself, as memberlist does).
    broadcast: Alive | Suspect | Dead | None = None
    #: We were accused at this incarnation: refute (see ``NodeTable.refute``).
    refute: int | None = None
    #: "join", "leave" or "update" for the delegate, about ``node``.
    notify: str | None = None
    node: Node | None = None
    #: The node just became suspect: start a suspicion timer.
    start_suspicion: bool = False
    #: The address conflict to report to the delegate.
    conflict: Node | None = None
    #: (level, text) lines to log, text without the "memberlist: " prefix.
    logs: tuple[tuple[str, str], ...] = ()


IGNORED = Outcome()


def _go(data: bytes) -> str:
    """Bytes as Go's %v prints a []byte."""
    return "[" + " ".join(str(b) for b in data) + "]"


def _addr_port(addr: bytes, port: int) -> str:
    return f"{addr_to_text(addr)}:{port}"


@attrs.define(eq=False)
class NodeTable:
    local_name: str
    rng: random.Random
    nodes: list[NodeRecord] = attrs.field(factory=list)
    by_name: dict[str, NodeRecord] = attrs.field(factory=dict)
    probe_index: int = 0

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, name: str) -> NodeRecord | None:
        return self.by_name.get(name)

    @property
    def local(self) -> NodeRecord:
        return self.by_name[self.local_name]

    def _insert(self, record: NodeRecord) -> None:
        # A random position keeps the failure detection bound low on average.
        self.by_name[record.name] = record
        n = len(self.nodes)
        offset = self.rng.randrange(n) if n else 0
        self.nodes.append(record)
        self.nodes[offset], self.nodes[n] = self.nodes[n], self.nodes[offset]

    # -- the three claims -------------------------------------------------

    def apply_alive(
        self,
        a: Alive,
        now: float,
        *,
        bootstrap: bool = False,
        leaving: bool = False,
        reclaim_time: float = 0.0,
        veto: Callable[[Node], str | None] | None = None,
    ) -> Outcome:
        is_local = a.node == self.local_name
        if leaving and is_local:
            return IGNORED
        where = _addr_port(a.addr, a.port)
        if len(a.vsn) >= 3:
            pmin, pmax, pcur = a.vsn[0], a.vsn[1], a.vsn[2]
            if pmin == 0 or pmax == 0 or pmin > pmax:
                text = (
                    f"Ignoring an alive message for '{a.node}' ({where}) because protocol"
                    f" version(s) are wrong: {pmin} <= {pcur} <= {pmax} should be >0"
                )
                return Outcome(logs=(("WARN", text),))
        if len(a.vsn) < 6:
            text = f"ignoring alive message for '{a.node}' ({where}) because Vsn is not present"
            return Outcome(logs=(("WARN", text),))
        if veto is not None:
            claimed = Node(
                a.node,
                addr_to_text(a.addr),
                a.port,
                a.meta,
                a.vsn,
                a.incarnation,
                NodeState.ALIVE,
                now,
            )
            error = veto(claimed)
            if error:
                return Outcome(logs=(("WARN", f"ignoring alive message for '{a.node}': {error}"),))

        logs: list[tuple[str, str]] = []
        record = self.by_name.get(a.node)
        updates_node = False
        first_sighting = record is None
        if record is None:
            record = NodeRecord(a.node, a.addr, a.port, a.meta, a.vsn, 0, NodeState.DEAD, now)
            self._insert(record)
        elif normalize_addr(record.addr) != normalize_addr(a.addr) or record.port != a.port:
            can_reclaim = reclaim_time > 0 and now - record.state_change > reclaim_time
            if record.state == NodeState.LEFT or (record.state == NodeState.DEAD and can_reclaim):
                logs.append(
                    (
                        "INFO",
                        f"Updating address for left or failed node {a.node} from"
                        f" {_addr_port(record.addr, record.port)} to {where}",
                    )
                )
                updates_node = True
            else:
                mine = _addr_port(record.addr, record.port)
                text = (
                    f"Conflicting address for {a.node}. Mine: {mine} Theirs: {where}"
                    f" Old state: {int(record.state)}"
                )
                other = Node(
                    a.node,
                    addr_to_text(a.addr),
                    a.port,
                    a.meta,
                    a.vsn,
                    a.incarnation,
                    NodeState.ALIVE,
                    now,
                )
                return Outcome(conflict=other, node=record.view(), logs=(("ERROR", text),))

        if not first_sighting and not is_local and not updates_node:
            if a.incarnation <= record.incarnation:
                return IGNORED
        if is_local and a.incarnation < record.incarnation:
            return IGNORED

        record.clear_suspicion()
        old_state, old_meta = record.state, record.meta
        if is_local and not bootstrap:
            if (
                a.incarnation == record.incarnation
                and a.meta == record.meta
                and a.vsn == record.vsn
            ):
                return IGNORED
            logs.append(
                (
                    "WARN",
                    f"Refuting an alive message for '{a.node}' ({where}) meta:"
                    f"({_go(a.meta)} VS {_go(record.meta)}), vsn:({_go(a.vsn)} VS"
                    f" {_go(record.vsn)})",
                )
            )
            return Outcome(refute=a.incarnation, logs=tuple(logs))

        record.incarnation = a.incarnation
        record.meta = a.meta
        record.addr = a.addr
        record.port = a.port
        if a.vsn:
            record.vsn = a.vsn
        if record.state != NodeState.ALIVE:
            record.state = NodeState.ALIVE
            record.state_change = now
        notify = None
        if old_state in (NodeState.DEAD, NodeState.LEFT):
            notify = "join"
        elif old_meta != record.meta:
            notify = "update"
        return Outcome(
            applied=True, broadcast=a, notify=notify, node=record.view(), logs=tuple(logs)
        )

    def apply_suspect(self, s: Suspect, now: float) -> Outcome:
        record = self.by_name.get(s.node)
        if record is None or s.incarnation < record.incarnation:
            return IGNORED
        if record.suspicion is not None:
            # Another peer's independent suspicion: shrink the timer, re-gossip once.
            if record.suspicion.confirm(s.from_node):
                return Outcome(broadcast=s)
            return IGNORED
        if record.state != NodeState.ALIVE:
            return IGNORED
        if record.name == self.local_name:
            return Outcome(
                refute=s.incarnation,
                logs=(("WARN", f"Refuting a suspect message (from: {s.from_node})"),),
            )
        record.incarnation = s.incarnation
        record.state = NodeState.SUSPECT
        record.state_change = now
        return Outcome(applied=True, broadcast=s, node=record.view(), start_suspicion=True)

    def apply_dead(self, d: Dead, now: float, *, leaving: bool = False) -> Outcome:
        record = self.by_name.get(d.node)
        if record is None or d.incarnation < record.incarnation:
            return IGNORED
        record.clear_suspicion()
        if record.dead_or_left:
            return IGNORED
        if record.name == self.local_name and not leaving:
            return Outcome(
                refute=d.incarnation,
                logs=(("WARN", f"Refuting a dead message (from: {d.from_node})"),),
            )
        record.incarnation = d.incarnation
        record.state = NodeState.LEFT if d.node == d.from_node else NodeState.DEAD
        record.state_change = now
        return Outcome(applied=True, broadcast=d, notify="leave", node=record.view())

    def refute(self, accused: int) -> Alive:
        """Take an incarnation beyond ``accused`` and return the alive that says so."""
        me = self.local
        incarnation = me.incarnation + 1
        if accused >= incarnation:
            incarnation = accused + 1
        me.incarnation = incarnation
        return Alive(
            incarnation=incarnation,
            node=me.name,
            addr=me.addr,
            port=me.port,
            meta=me.meta,
            vsn=me.vsn,
        )

    # -- selection --------------------------------------------------------

    def next_probe_target(self, now: float, gossip_to_the_dead_time: float) -> NodeRecord | None:
        """Round-robin over the shuffled list, skipping ourselves and the dead or left."""
        checked = 0
        while checked < len(self.nodes):
            if self.probe_index >= len(self.nodes):
                self.reset_nodes(now, gossip_to_the_dead_time)
                self.probe_index = 0
                checked += 1
                continue
            record = self.nodes[self.probe_index]
            self.probe_index += 1
            if record.name == self.local_name or record.dead_or_left:
                checked += 1
                continue
            return record
        return None

    def reset_nodes(self, now: float, gossip_to_the_dead_time: float) -> list[NodeRecord]:
        """Forget nodes dead longer than ``gossip_to_the_dead_time``; shuffle the rest."""
        reaped = [
            r
            for r in self.nodes
            if r.state == NodeState.DEAD and now - r.state_change > gossip_to_the_dead_time
        ]
        if reaped:
            gone = {id(r) for r in reaped}
            self.nodes = [r for r in self.nodes if id(r) not in gone]
            for r in reaped:
                del self.by_name[r.name]
        self.rng.shuffle(self.nodes)
        return reaped

    def random_nodes(self, k: int, exclude: Callable[[NodeRecord], bool]) -> list[NodeRecord]:
        """Up to ``k`` distinct random nodes not excluded (memberlist's ``kRandomNodes``)."""
        n = len(self.nodes)
        picked: list[NodeRecord] = []
        for _ in range(3 * n):
            if len(picked) >= k:
                break
            record = self.nodes[self.rng.randrange(n)]
            if exclude(record) or any(p is record for p in picked):
                continue
            picked.append(record)
        return picked

    def any_alive(self) -> bool:
        return any(r.name != self.local_name and not r.dead_or_left for r in self.nodes)

    def push_states(self) -> tuple[PushNodeState, ...]:
        return tuple(
            PushNodeState(
                name=r.name,
                addr=r.addr,
                port=r.port,
                meta=r.meta,
                incarnation=r.incarnation,
                state=r.state,
                vsn=r.vsn,
            )
            for r in self.nodes
        )
