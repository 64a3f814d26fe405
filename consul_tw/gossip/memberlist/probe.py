# -*- test-case-name: tests.unit.gossip.test_memberlist -*-
"""
SWIM failure detection with Lifeguard, as memberlist 0.2.2 probes.

Once per probe interval the next node of a shuffled round-robin list is
pinged directly.  With no ack after ``probe_timeout`` the prober asks
``indirect_checks`` random alive nodes to ping it (asking for a nack from
helpers that speak protocol 4+), and also tries a TCP ping when the target
speaks protocol 3+.  When the probe interval (scaled by awareness) ends
without any ack the node is suspected.  A probe that overruns the interval
delays the next one, as memberlist's ticker drops ticks.

As a helper, this module also answers indirect pings: it pings the target
with its own sequence number, relays the ack, or sends a nack after
``probe_timeout`` when asked to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from consul_tw.gossip.memberlist.messages import (
    Ack,
    IndirectPing,
    Nack,
    NodeState,
    Ping,
    Suspect,
)
from consul_tw.gossip.memberlist.state import NodeRecord, addr_to_text

if TYPE_CHECKING:
    from consul_tw.gossip.memberlist.memberlist import Memberlist


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


@attrs.define(eq=False)
class _Probe:
    target: NodeRecord
    ping: Ping
    sent: float
    deadline: IDelayedCall | None = None
    timeout: IDelayedCall | None = None
    fallback: Deferred[Ack] | None = None
    fallback_ok: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@attrs.define(eq=False)
class _Relay:
    """An indirect ping we are doing for someone else."""

    seq_no: int
    reply_addr: str
    reply_port: int
    nack: bool
    timer: IDelayedCall | None = None


@attrs.define(eq=False)
class Prober:
    ml: Memberlist
    _tick: IDelayedCall | None = None
    _tick_pending: bool = False
    _probe: _Probe | None = None
    _handlers: dict[int, _Probe | _Relay] = attrs.field(factory=dict)

    # -- scheduling -------------------------------------------------------

    def start(self, stagger: float) -> None:
        self._tick = self.ml.clock.callLater(stagger, self._ticked)

    def stop(self) -> None:
        _cancel(self._tick)
        self._tick = None
        if self._probe is not None:
            self._end(self._probe, 0, start_next=False)
        for handler in list(self._handlers.values()):
            if isinstance(handler, _Relay):
                _cancel(handler.timer)
        self._handlers.clear()

    def _ticked(self) -> None:
        self._tick = self.ml.clock.callLater(self.ml.config.probe_interval, self._ticked)
        if self._probe is not None:
            self._tick_pending = True  # a ticker channel buffers one tick
            return
        self.probe_next()

    def probe_next(self) -> None:
        ml = self.ml
        target = ml.table.next_probe_target(ml.clock.seconds(), ml.config.gossip_to_the_dead_time)
        if target is not None:
            self.probe_node(target)

    # -- one probe --------------------------------------------------------

    def probe_node(self, target: NodeRecord) -> None:
        ml = self.ml
        interval = ml.awareness.scale_timeout(ml.config.probe_interval)
        ping = Ping(
            seq_no=ml.next_seq_no(),
            node=target.name,
            source_addr=ml.addr_bytes,
            source_port=ml.port,
            source_node=ml.name,
        )
        probe = _Probe(target, ping, ml.clock.seconds())
        self._probe = probe
        self._handlers[ping.seq_no] = probe
        probe.deadline = ml.clock.callLater(interval, self._deadline, probe)
        if target.state == NodeState.ALIVE:
            ml.send(target.addr_text, target.port, ping)
        else:
            # Tell a suspect it is suspected, so it can refute at once.
            suspect = Suspect(incarnation=target.incarnation, node=target.name, from_node=ml.name)
            ml.transport.send_packet(target.addr_text, target.port, [ping, suspect])
        probe.timeout = ml.clock.callLater(ml.config.probe_timeout, self._timed_out, probe)

    def _timed_out(self, probe: _Probe) -> None:
        probe.timeout = None
        ml, target = self.ml, probe.target
        ml.logger.debug(f"memberlist: Failed ping: {target.name} (timeout reached)")
        helpers = ml.table.random_nodes(
            ml.config.indirect_checks,
            lambda r: r.name in (ml.name, target.name) or r.state != NodeState.ALIVE,
        )
        for helper in helpers:
            nack = helper.pmax >= 4
            probe.expected_nacks += nack
            ind = IndirectPing(
                seq_no=probe.ping.seq_no,
                target=target.addr,
                port=target.port,
                node=target.name,
                nack=nack,
                source_addr=ml.addr_bytes,
                source_port=ml.port,
                source_node=ml.name,
            )
            ml.send(helper.addr_text, helper.port, ind)
        if target.pmax >= 3 and not ml.config.disable_tcp_pings:
            fallback = ml.transport.stream_ping(target.addr_text, target.port, probe.ping)
            probe.fallback = fallback
            fallback.addCallbacks(
                self._fallback_acked,
                self._fallback_failed,
                callbackArgs=(probe,),
                errbackArgs=(probe,),
            )

    def _fallback_acked(self, ack: Ack, probe: _Probe) -> None:
        if ack.seq_no != probe.ping.seq_no:
            self.ml.logger.error(
                "memberlist: Failed fallback ping: Sequence number from ack"
                f" ({ack.seq_no}) doesn't match ping ({probe.ping.seq_no})"
            )
            return
        probe.fallback_ok = True

    def _fallback_failed(self, failure: Failure, probe: _Probe) -> None:
        if not failure.check(CancelledError):
            self.ml.logger.error(f"memberlist: Failed fallback ping: {failure.getErrorMessage()}")

    def _deadline(self, probe: _Probe) -> None:
        probe.deadline = None
        self._handlers.pop(probe.ping.seq_no, None)
        ml, target = self.ml, probe.target
        if probe.fallback_ok:
            ml.logger.warn(
                f"memberlist: Was able to connect to {target.name} but other probes failed,"
                " network may be misconfigured"
            )
            self._end(probe, -1)
            return
        if probe.expected_nacks > 0:
            delta = max(0, probe.expected_nacks - probe.nacks)
        else:
            delta = 1
        self._end(probe, delta, start_next=False)
        ml.logger.info(f"memberlist: Suspect {target.name} has failed, no acks received")
        ml.apply_suspect(
            Suspect(incarnation=target.incarnation, node=target.name, from_node=ml.name)
        )
        self._maybe_next()

    def _end(self, probe: _Probe, awareness_delta: int, start_next: bool = True) -> None:
        _cancel(probe.deadline)
        _cancel(probe.timeout)
        probe.deadline = probe.timeout = None
        if probe.fallback is not None and not probe.fallback.called:
            probe.fallback.cancel()
        self._handlers.pop(probe.ping.seq_no, None)
        if self._probe is probe:
            self._probe = None
        self.ml.awareness.apply_delta(awareness_delta)
        if start_next:
            self._maybe_next()

    def _maybe_next(self) -> None:
        if self._tick_pending and self._probe is None and self._tick is not None:
            self._tick_pending = False
            self.probe_next()

    # -- acks, nacks and indirect pings -----------------------------------

    def ack_received(self, ack: Ack) -> None:
        handler = self._handlers.pop(ack.seq_no, None)
        if isinstance(handler, _Probe):
            if handler.timeout is not None:  # direct ack within the probe timeout
                rtt = self.ml.clock.seconds() - handler.sent
                self.ml.delegate.notify_ping_complete(
                    handler.target.view(), rtt, ack.payload or b""
                )
            self._end(handler, -1)
        elif isinstance(handler, _Relay):
            _cancel(handler.timer)
            self.ml.send(handler.reply_addr, handler.reply_port, Ack(seq_no=handler.seq_no))

    def nack_received(self, nack: Nack) -> None:
        handler = self._handlers.get(nack.seq_no)
        if isinstance(handler, _Probe):
            handler.nacks += 1

    def indirect_ping_received(self, from_addr: str, from_port: int, ind: IndirectPing) -> None:
        ml = self.ml
        seq_no = ml.next_seq_no()
        ping = Ping(
            seq_no=seq_no,
            node=ind.node,
            source_addr=ml.addr_bytes,
            source_port=ml.port,
            source_node=ml.name,
        )
        if ind.source_addr and ind.source_port:
            reply_addr, reply_port = addr_to_text(ind.source_addr), ind.source_port
        else:
            reply_addr, reply_port = from_addr, from_port
        relay = _Relay(ind.seq_no, reply_addr, reply_port, ind.nack)
        self._handlers[seq_no] = relay
        relay.timer = ml.clock.callLater(ml.config.probe_timeout, self._relay_expired, seq_no)
        ml.send(addr_to_text(ind.target), ind.port or ml.port, ping)

    def _relay_expired(self, seq_no: int) -> None:
        relay = self._handlers.pop(seq_no, None)
        if isinstance(relay, _Relay) and relay.nack:
            self.ml.send(relay.reply_addr, relay.reply_port, Nack(seq_no=relay.seq_no))
