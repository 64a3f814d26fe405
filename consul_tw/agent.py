# -*- test-case-name: tests.unit.test_build -*-
"""
The agent: the domain facade every wire adapter talks to.

HTTP resources, the DNS authority and (through HTTP) the CLI never own
state: they read the state store and the membership through :class:`Agent`
and ask it to act (write through Raft, leave).  The agent does not know
about sockets or twisted.web; the service tree in :mod:`consul_tw.service`
owns the listeners and is told when the agent wants the process to end.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from consul_tw._logging import HcLogger
from consul_tw._observer import OneShotObserver
from consul_tw.catalog.commands import Command, encode_command
from consul_tw.catalog.reads import Reader, ReadOptions, ReadResult, UnknownRead
from consul_tw.catalog.store import StateStore
from consul_tw.catalog.watch import WatchSet
from consul_tw.config import AgentConfig
from consul_tw.durations import format_duration
from consul_tw.gossip.members import Member, MemberStatus
from consul_tw.gossip.merge import is_consul_server
from consul_tw.gossip.serf import EventType, MemberEvent, Membership
from consul_tw.local.sync import NodeInfoSync
from consul_tw.raft.core import NotLeader, RaftShutdown, RaftStatus
from consul_tw.raft.node import RaftNode
from consul_tw.server.router import LeaderRouter, NoClusterLeader

__all__ = [
    "Agent",
    "AgentNotServer",
    "NoClusterLeader",
    "PeerNotFound",
    "RpcCaller",
    "parse_join_address",
]


class RpcCaller(Protocol):
    """The part of :class:`consul_tw.rpc.RpcClient` the agent uses."""

    def call(
        self, host: str, port: int, method: str, args: Any = None, *, timeout: float | None = None
    ) -> Deferred[Any]: ...


def _no_leader(failure: Failure) -> Failure:
    """Raft's own errors as Consul words them."""
    if failure.check(NotLeader) and "not the leader" in failure.getErrorMessage():
        return Failure(NoClusterLeader())
    if failure.check(RaftShutdown):
        return Failure(NoClusterLeader())
    return failure


class PeerNotFound(Exception):
    """A Raft peer to remove is not in the configuration."""


class AgentNotServer(Exception):
    """A request that needs a server reached a client agent."""


def parse_join_address(address: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` as (host, port); ValueError when malformed."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"invalid join address {address!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in join address {address!r}")
    return host, int(port_text)


@attrs.define(eq=False)
class Agent:
    config: AgentConfig
    clock: IReactorTime
    logger: HcLogger
    lan: Membership
    wan: Membership | None = None
    store: StateStore | None = None
    raft: RaftNode | None = None
    sync: NodeInfoSync | None = None
    #: How a client agent reaches servers (None: this agent is a server).
    rpc: RpcCaller | None = None
    rng: random.Random = attrs.field(factory=random.Random)
    #: Finds the Raft leader for requests only it may answer (servers).
    router: LeaderRouter | None = None
    #: Wakes blocking queries when the catalog changes (see ``attach_catalog``).
    watches: WatchSet = attrs.field(
        default=attrs.Factory(lambda self: WatchSet(self.clock), takes_self=True)
    )
    #: Set by the service tree: stops the server-side actors ("shutting down
    #: server") and returns when they are down.
    shutdown_server: Callable[[], Deferred[None]] = lambda: succeed(None)
    #: Set by the service tree: end the process with this exit code once the
    #: current request has been answered.
    request_exit: Callable[[int], None] = lambda code: None
    _left: OneShotObserver = attrs.field(factory=OneShotObserver)
    _leaving: bool = False
    _down: OneShotObserver = attrs.field(factory=OneShotObserver)
    _shutting_down: bool = False

    def __attrs_post_init__(self) -> None:
        self.lan.subscribe(self._lan_event)
        if self.wan is not None:
            self.wan.subscribe(self._wan_event)

    def attach_catalog(self, store: StateStore, raft: RaftNode) -> None:
        """A server's catalog and the Raft node that writes it."""
        self.store, self.raft = store, raft
        store.listeners.append(self.watches.notify)
        self.router = LeaderRouter(raft, self.clock, self.config.rpc_hold_timeout)

    # -- reads -------------------------------------------------------------

    def members(self, wan: bool = False) -> list[Member] | None:
        """Members of the LAN pool, or of the WAN pool (None on a client)."""
        if wan:
            return self.wan.members() if self.wan is not None else None
        return self.lan.members()

    def raft_status(self) -> RaftStatus | None:
        return self.raft.describe() if self.raft is not None else None

    def leader_address(self) -> str:
        """``/v1/status/leader``: the leader's Raft address, "" when none is known."""
        status = self.raft_status()
        return (status.leader_address or "") if status else ""

    def peers(self) -> list[str]:
        """``/v1/status/peers``: Raft voter addresses."""
        status = self.raft_status()
        return [s.address for s in status.voters] if status else []

    def status_leader(self) -> Deferred[str]:
        """``/v1/status/leader`` on any agent: a client asks a server (``Status.Leader``)."""
        if self.raft is not None:
            return succeed(self.leader_address())
        return self._ask_a_server("Status.Leader")

    def status_peers(self) -> Deferred[list[str]]:
        """``/v1/status/peers`` on any agent: a client asks a server (``Status.Peers``)."""
        if self.raft is not None:
            return succeed(self.peers())
        return self._ask_a_server("Status.Peers")

    def _ask_a_server(self, method: str, args: Any = None) -> Deferred[Any]:
        server = self._pick_server() if self.rpc is not None else None
        if server is None:
            return fail(AgentNotServer("rpc error making call: No known Consul servers"))
        return self._rpc().call(*server, method, args)

    def is_leader(self) -> bool:
        status = self.raft_status()
        return status is not None and status.state == "Leader"

    def last_contact_ms(self) -> int:
        """Milliseconds since this server last heard from the leader (0 on the leader)."""
        status = self.raft_status()
        if status is None or status.state == "Leader" or status.last_contact is None:
            return 0
        return int((self.clock.seconds() - status.last_contact) * 1000)

    def catalog(self) -> StateStore:
        """The state store for a read; raises when this agent has none (a client)."""
        if self.store is None:
            raise AgentNotServer("rpc error making call: No known Consul servers")
        return self.store

    def read(self, name: str, args: dict[str, Any], options: ReadOptions) -> Deferred[ReadResult]:
        """
        A catalog read: a server answers from its store (default and
        ``consistent`` reads need it to lead); a client forwards the same
        read to a server it knows from gossip.
        """
        if self.store is None:
            server = self._pick_server()
            if server is None:
                return fail(AgentNotServer("rpc error making call: No known Consul servers"))
            timeout = options.wait + 10.0 if options.index else None
            wire = {"name": name, "args": args, "options": attrs.asdict(options)}
            called = self._rpc().call(*server, "Catalog.Read", wire, timeout=timeout)
            return called.addCallback(ReadResult.from_wire)
        if options.stale and not self._too_stale(options.max_stale):
            return self._local_read(name, args, options)
        return self._leader_read(name, args, options)

    def _too_stale(self, max_stale: float) -> bool:
        """``?max_stale``: this follower lost touch with the leader for longer than allowed."""
        if max_stale <= 0:
            return False
        status = self.raft_status()
        if status is None or status.state == "Leader":
            return False
        if status.last_contact is None:
            return True
        return self.clock.seconds() - status.last_contact > max_stale

    def _leader_read(
        self, name: str, args: dict[str, Any], options: ReadOptions
    ) -> Deferred[ReadResult]:
        """Default and consistent reads: on the leader after its read barrier, else forwarded."""
        timeout = options.wait + 10.0 if options.index else None
        wire = {"name": name, "args": args, "options": attrs.asdict(options)}
        return self._on_leader(
            lambda: self._local_read(name, args, options),
            "Catalog.Read",
            wire,
            consistent=options.consistent,
            timeout=timeout,
        ).addCallback(
            lambda result: (
                result if isinstance(result, ReadResult) else ReadResult.from_wire(result)
            )
        )

    def _on_leader(
        self,
        local: Callable[[], Any],
        method: str,
        args: Any,
        *,
        consistent: bool,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        """
        Run ``local`` on the leader once its read barrier allows, or call
        ``method`` on the leader over RPC when that is another server.
        """
        assert self.router is not None and self.raft is not None
        raft = self.raft

        def on_leader() -> Deferred[Any]:
            barrier = raft.read_barrier(consistent=consistent)
            barrier.addErrback(_no_leader)
            return barrier.addCallback(lambda _: local())

        return self.router.route(
            on_leader,
            lambda host, port: self._rpc().call(host, port, method, args, timeout=timeout),
        )

    # -- Raft configuration (operator) ------------------------------------------

    def raft_configuration(self, stale: bool = False) -> Deferred[dict[str, Any]]:
        """``/v1/operator/raft/configuration``: the voters, which leads, the entry's index."""
        if self.raft is None:
            return self._ask_a_server("Operator.RaftGetConfiguration", {"stale": stale})
        if stale:
            return succeed(self._raft_configuration())
        return self._on_leader(
            self._raft_configuration,
            "Operator.RaftGetConfiguration",
            {"stale": False},
            consistent=False,
        )

    def _raft_configuration(self) -> dict[str, Any]:
        status = self.raft_status()
        assert status is not None
        names = {m.tags.get("id"): m.name for m in self.lan.members() if m.tags.get("id")}
        return {
            "Servers": [
                {
                    "ID": server.id,
                    "Node": names.get(server.id, ""),
                    "Address": server.address,
                    "Leader": server.address == status.leader_address,
                    "ProtocolVersion": "3",
                    "Voter": True,
                }
                for server in status.voters
            ],
            "Index": status.configuration_index,
        }

    def remove_raft_peer(self, *, peer_id: str | None, address: str | None) -> Deferred[None]:
        """``DELETE /v1/operator/raft/peer``: the leader drops one server from Raft."""
        if self.raft is None:
            args = {"id": peer_id, "address": address}
            return self._ask_a_server("Operator.RaftRemovePeer", args)
        raft = self.raft

        def remove() -> Deferred[None]:
            voters = raft.describe().voters
            match = [s for s in voters if s.id == peer_id or (address and s.address == address)]
            if not match:
                what = f"id {peer_id!r}" if peer_id else f"address {address!r}"
                return fail(PeerNotFound(f"{what} was not found in the Raft configuration"))
            return raft.remove_server(match[0].id).addCallback(lambda _: None)

        return self._on_leader(
            remove,
            "Operator.RaftRemovePeer",
            {"id": peer_id, "address": address},
            consistent=False,
        )

    def _local_read(
        self, name: str, args: dict[str, Any], options: ReadOptions
    ) -> Deferred[ReadResult]:
        assert self.store is not None
        reader = Reader(
            store=self.store,
            known_leader=lambda: bool(self.leader_address()),
            last_contact_ms=self.last_contact_ms,
            wait_for_change=self.watches.wait,
            seconds=self.clock.seconds,
            rng=self.rng,
        )
        try:
            return reader.read(name, args, options)
        except UnknownRead as e:
            return fail(e)

    def _rpc(self) -> RpcCaller:
        assert self.rpc is not None, "client agents are built with an RPC client"
        return self.rpc

    def _pick_server(self) -> tuple[str, int] | None:
        """A random live server of our datacenter, from the LAN pool's tags."""
        servers = [
            m
            for m in self.lan.members()
            if m.status is MemberStatus.ALIVE
            and is_consul_server(m)
            and m.tags.get("dc") == self.config.datacenter
        ]
        if not servers:
            return None
        chosen = self.rng.choice(servers)
        return chosen.addr, int(chosen.tags["port"])

    # -- writes --------------------------------------------------------------

    def write(self, command: Command) -> Deferred[Any]:
        """Commit a catalog command through Raft, or forward it to a server (clients)."""
        if self.raft is None:
            server = self._pick_server() if self.rpc is not None else None
            if server is None:
                return fail(AgentNotServer("No known Consul servers"))
            return self._rpc().call(*server, "Catalog.Apply", encode_command(command))

        assert self.router is not None
        raft, encoded = self.raft, encode_command(command)
        return self.router.route(
            lambda: raft.apply(encoded).addErrback(_no_leader),
            lambda host, port: self._rpc().call(host, port, "Catalog.Apply", encoded),
        )

    # -- membership actions -----------------------------------------------------

    def join(self, addresses: list[str], *, wan: bool = False) -> Deferred[int]:
        """Join the pool through ``host[:port]`` seeds; fires with how many were contacted."""
        pool = self.wan if wan else self.lan
        if pool is None:
            return fail(AgentNotServer("WAN join is only available on servers"))
        default_port = self.config.ports.serf_wan if wan else self.config.ports.serf_lan
        try:
            seeds = [parse_join_address(a, default_port) for a in addresses]
        except ValueError as e:
            return fail(e)
        pool_name = "WAN" if wan else "LAN"
        key = "wan_addresses" if wan else "lan_addresses"
        self.logger.info(f"({pool_name}) joining", **{key: list(addresses)})

        def joined(count: int) -> int:
            self.logger.info(f"({pool_name}) joined", number_of_nodes=count)
            return count

        return pool.join(seeds).addCallback(joined)

    def force_leave(self, node: str, *, prune: bool = False, wan: bool = False) -> Deferred[None]:
        pool = self.wan if wan else self.lan
        if pool is None:
            return fail(AgentNotServer("WAN force-leave is only available on servers"))
        return pool.force_leave(node, prune=prune)

    # -- leave ---------------------------------------------------------------

    def leave(self) -> Deferred[None]:
        """
        Consul's graceful leave: leave the WAN then the LAN pool, drain RPC
        traffic (servers), then shut the agent's actors down.  The endpoints
        stay up so the caller gets its answer; the caller then calls
        ``leave_answered`` and the process exits 0.
        """
        if not self._left.fired and not self._leaving:
            self._leaving = True
            self._left.follow(self._leave())
        return self._left.when_fired()

    def _leave(self) -> Deferred[None]:
        role = "server" if self.config.server else "client"
        self.logger.named(role).info(f"{role} starting leave")
        leaving = self._hand_over_leadership()
        leaving.addCallback(lambda _: self.wan.leave() if self.wan is not None else None)
        leaving.addCallback(lambda _: self.lan.leave())
        leaving.addCallback(lambda _: self._await_raft_removal())

        def drain(_: object) -> Deferred[None]:
            if not self.config.server:
                return succeed(None)
            self.logger.named(role).info(
                "Waiting to drain RPC traffic",
                drain_time=format_duration(self.config.leave_drain_time),
            )
            return deferLater(self.clock, self.config.leave_drain_time)

        return leaving.addCallback(drain).addCallback(lambda _: self.shutdown())

    def _hand_over_leadership(self) -> Deferred[None]:
        """A leaving leader first hands leadership to the most up-to-date peer."""
        status = self.raft_status()
        if self.raft is None or status is None or status.state != "Leader":
            return succeed(None)
        if len(status.voters) < 2:
            return succeed(None)
        log = self.logger.named("server")
        log.info("transferring leadership before leaving")

        def failed(failure: Failure) -> None:
            log.warn("leadership transfer failed", error=failure.getErrorMessage())

        return self.raft.transfer_leadership().addErrback(failed)

    def _await_raft_removal(self) -> Deferred[None]:
        """
        A leaving server waits (up to 5 s, as Consul's raftRemoveGracePeriod)
        for the leader to take it out of the Raft configuration, so the
        cluster's quorum shrinks with it instead of counting a dead voter.
        """
        if self.raft is None:
            return succeed(None)
        raft = self.raft
        deadline = self.clock.seconds() + 5.0

        def check(_: object = None) -> Deferred[None] | None:
            status = raft.describe()
            gone = all(s.id != status.node_id for s in status.voters) or len(status.voters) < 2
            if gone:
                return None
            if self.clock.seconds() >= deadline:
                self.logger.named("server").warn(
                    "failed to leave raft configuration gracefully, timeout"
                )
                return None
            return deferLater(self.clock, 0.1, lambda: None).addCallback(check)

        return maybeDeferred(check)

    def leave_answered(self) -> None:
        """The leave's caller has its answer: the process may now exit 0."""
        self.request_exit(0)

    def shutdown(self) -> Deferred[None]:
        """Stop the agent's own actors, not the endpoints ("Requesting shutdown"); once."""
        if not self._down.fired and not self._shutting_down:
            self._shutting_down = True
            self.logger.info("Requesting shutdown")
            if self.sync is not None:
                self.sync.stop()
            if self.rpc is not None and hasattr(self.rpc, "close"):
                self.rpc.close()
            role = "server" if self.config.server else "client"
            self.logger.named(role).info(f"shutting down {role}")

            def down(_: object) -> None:
                self.logger.info(f"consul {role} down")
                self.logger.info("shutdown complete")

            self._down.follow(self.shutdown_server().addCallback(down))
        return self._down.when_fired()

    # -- membership log lines ---------------------------------------------------

    def _server_label(self, member: Member) -> str:
        return (
            f"{member.name} (Addr: tcp/{member.addr}:{member.tags.get('port', '')}) "
            f"(DC: {member.tags.get('dc', '')})"
        )

    def _lan_event(self, event: MemberEvent) -> None:
        if not self.config.server:
            self._client_lan_event(event)
            return
        log = self.logger.named("server")
        for member in event.members:
            if not member.is_server:
                continue
            if event.type is EventType.MEMBER_JOIN:
                log.info("Adding LAN server", server=self._server_label(member))
            elif event.type in (EventType.MEMBER_LEAVE, EventType.MEMBER_FAILED):
                log.info("Removing LAN server", server=self._server_label(member))

    def _client_lan_event(self, event: MemberEvent) -> None:
        """A client learns its servers from gossip; a new one is a reason to sync."""
        log = self.logger.named("client")
        for member in event.members:
            if not is_consul_server(member):
                continue
            if event.type is EventType.MEMBER_JOIN:
                log.info("adding server", server=self._server_label(member))
                if self.sync is not None:
                    self.sync.trigger()
            elif event.type in (EventType.MEMBER_LEAVE, EventType.MEMBER_FAILED):
                log.info("removing server", server=self._server_label(member))

    def _wan_event(self, event: MemberEvent) -> None:
        for member in event.members:
            self.logger.named("server").info(
                "Handled event for server in area",
                event=event.type.value,
                server=member.name,
                area="wan",
            )
