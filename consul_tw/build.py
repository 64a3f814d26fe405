# -*- test-case-name: tests.unit.test_build -*-
"""
``build_agent``: the one place where the agent's parts are made and wired.

Everything that does I/O or keeps time is passed in (reactor, clock, rng),
so tests build a whole agent on a ``MemoryReactorClock`` and the twistd
entry point passes the real reactor.  The order of the children is the
start order: gossip, Raft and RPC (the server side), then DNS and HTTP
(the endpoints).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import attrs
from twisted.application.internet import TCPServer
from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime

from consul_tw._logging import HcLogger
from consul_tw.agent import Agent
from consul_tw.catalog.commands import NodeSpec
from consul_tw.catalog.fsm import CatalogFSM
from consul_tw.catalog.store import StateStore
from consul_tw.config import AgentConfig
from consul_tw.dns import ConsulAuthority, DNSService
from consul_tw.gossip.joiner import RetryJoin
from consul_tw.gossip.memberlist.config import MemberlistConfig
from consul_tw.gossip.memberlist.keyring import Keyring
from consul_tw.gossip.members import client_tags, server_tags
from consul_tw.gossip.merge import lan_merge_check, wan_merge_check
from consul_tw.gossip.net import GossipNet
from consul_tw.gossip.serf.config import SerfConfig
from consul_tw.gossip.serf.serf import Serf
from consul_tw.gossip.service import GossipService
from consul_tw.http.root import build_site
from consul_tw.http.server import HTTPService
from consul_tw.local.sync import NodeInfoSync
from consul_tw.raft.messages import Server
from consul_tw.raft.node import RaftNode, SnapshotPolicy
from consul_tw.raft.timings import RaftTimings
from consul_tw.rpc.client import RpcClient
from consul_tw.rpc.endpoints import build_dispatcher
from consul_tw.rpc.protocol import ChannelFactory, rpc_server_factory
from consul_tw.rpc.raft_channel import raft_receiver
from consul_tw.rpc.raft_transport import RaftTransport
from consul_tw.server.bootstrap import BootstrapExpect
from consul_tw.server.leader import LeaderDuties
from consul_tw.server.raft_peers import RaftPeerReconciler
from consul_tw.server.raft_storage import open_raft_storage
from consul_tw.service import AgentService, RaftService


def node_spec(config: AgentConfig) -> NodeSpec:
    """What this agent registers about its own node ("Synced node info")."""
    address = config.advertise_addr
    return NodeSpec(
        id=config.node_id,
        node=config.node_name,
        address=address,
        datacenter=config.datacenter,
        tagged_addresses={"lan": address, "lan_ipv4": address, "wan": address, "wan_ipv4": address},
        meta={"consul-network-segment": "", **dict(config.node_meta)},
    )


def log_startup_notes(config: AgentConfig, logger: HcLogger) -> None:
    """The lines Consul logs before anything starts."""
    if config.node_id_is_random:
        logger.debug("Using random ID as node ID", id=config.node_id)
    warning = config.dns_name_warning
    if warning:
        logger.warn(warning)
    for key in config.warnings:
        logger.warn("config key accepted but not supported by consul-tw yet, ignored", key=key)
    for notice in config.notices:
        logger.warn(notice)


@attrs.frozen
class Pool:
    """One gossip pool: its Serf and its sockets."""

    membership: Serf
    net: GossipNet


def _pool(
    config: AgentConfig,
    reactor: Any,
    clock: IReactorTime,
    rng: random.Random,
    logger: HcLogger,
    *,
    wan: bool,
) -> Pool:
    """One gossip pool (Serf over memberlist over GossipNet), this agent its local member."""
    ports = config.ports
    if config.server:
        tags = server_tags(
            datacenter=config.datacenter,
            node_id=config.node_id,
            server_port=ports.server,
            wan_port=ports.serf_wan,
            bootstrap=config.bootstrap,
            wan=wan,
            expect=config.bootstrap_expect,
        )
    else:
        tags = client_tags(datacenter=config.datacenter, node_id=config.node_id)
    port = ports.serf_wan if wan else ports.serf_lan
    area = "wan" if wan else "lan"
    keyring = Keyring.from_base64([config.encrypt]) if config.encrypt else None
    memberlist_logger = logger.named("memberlist").named(area)
    net = GossipNet(reactor, config.bind_addr, port, memberlist_logger, keyring=keyring)
    if config.dev:
        memberlist_config, serf_config = MemberlistConfig.dev(), SerfConfig.dev()
    elif wan:
        memberlist_config, serf_config = MemberlistConfig.wan(), SerfConfig.wan()
    else:
        memberlist_config, serf_config = MemberlistConfig.lan(), SerfConfig.lan()
    serf_config = attrs.evolve(serf_config, reconnect_timeout=config.reconnect_timeout)
    name = f"{config.node_name}.{config.datacenter}" if wan else config.node_name
    members: list[Serf] = []
    merge_check = (
        wan_merge_check()
        if wan
        else lan_merge_check(
            node_name=config.node_name,
            node_id=config.node_id,
            datacenter=config.datacenter,
            known=lambda: members[0].members() if members else (),
        )
    )
    serf = Serf(
        serf_config,
        memberlist_config,
        name=name,
        addr=config.advertise_addr,
        port=port,
        tags=tags,
        clock=clock,
        rng=rng,
        transport=net,
        logger=logger.named("serf").named(area),
        keyring=keyring,
        merge_check=merge_check,
        memberlist_logger=memberlist_logger,
    )
    members.append(serf)
    return Pool(serf, net)


def _gossip_service(
    config: AgentConfig, pool: Pool, agent: Agent, clock: IReactorTime, *, wan: bool
) -> GossipService:
    """The pool's service, with the start-up joins Consul's flags ask for."""
    cluster = "WAN" if wan else "LAN"

    def join(addresses: list[str]) -> Any:
        return agent.join(addresses, wan=wan)

    def give_up(reason: str) -> None:
        agent.logger.error("failed to join", cluster=cluster, error=reason)
        agent.request_exit(1)

    joiners = []
    if not wan and config.start_join:
        joiners.append(
            RetryJoin(
                join=join,
                addresses=config.start_join,
                clock=clock,
                logger=agent.logger,
                cluster=cluster,
                max_attempts=1,
                on_give_up=give_up,
            )
        )
    if not wan and config.retry_join:
        joiners.append(
            RetryJoin(
                join=join,
                addresses=config.retry_join,
                clock=clock,
                logger=agent.logger,
                cluster=cluster,
                interval=config.retry_interval,
                max_attempts=config.retry_max,
                on_give_up=give_up,
            )
        )
    return GossipService(pool.membership, pool.net, joiners=joiners)


def build_agent(
    config: AgentConfig,
    reactor: Any,
    *,
    clock: IReactorTime | None = None,
    rng: random.Random | None = None,
    install_signal_handlers: bool = False,
) -> AgentService:
    clock = clock if clock is not None else reactor
    rng = rng if rng is not None else random.Random()
    root = HcLogger("agent")
    log_startup_notes(config, root)
    side = root.named("server" if config.server else "client")
    has_wan = config.server and config.ports.serf_wan >= 0
    lan = _pool(config, reactor, clock, rng, side, wan=False)
    wan = _pool(config, reactor, clock, rng, side, wan=True) if has_wan else None
    agent = Agent(
        config=config,
        clock=clock,
        logger=root,
        lan=lan.membership,
        wan=wan.membership if wan else None,
        rng=rng,
    )
    if not config.server:
        _add_client_parts(config, reactor, clock, agent)

    # Start order is Consul's: Raft first, then the WAN and LAN pools, then RPC.
    server_side: list[IService] = []
    raft_handler = None
    if config.server:
        raft_service, raft_handler = _raft_service(config, reactor, clock, rng, agent, side)
        server_side.append(raft_service)
    if wan is not None:
        server_side.append(_gossip_service(config, wan, agent, clock, wan=True))
    server_side.append(_gossip_service(config, lan, agent, clock, wan=False))
    if config.server:
        server_side.append(
            TCPServer(
                config.ports.server,
                rpc_server_factory(
                    build_dispatcher(agent),
                    raft_handler=raft_handler,
                    clock=clock,
                    logger=side.named("rpc"),
                ),
                interface=config.bind_addr,
                reactor=reactor,
            )
        )

    endpoints: list[IService] = []
    if config.ports.dns >= 0:
        authority = ConsulAuthority(
            agent.store,
            datacenter=config.datacenter,
            clock=clock,
            domain=config.domain,
            logger=root.named("dns"),
        )
        endpoints.append(
            DNSService(
                authority,
                interface=config.client_addr,
                port=config.ports.dns,
                reactor=reactor,
                logger=root,
            )
        )
    if config.ports.http >= 0:
        endpoints.append(
            HTTPService(
                build_site(agent, logger=root.named("http"), rng=rng),
                interface=config.client_addr,
                port=config.ports.http,
                reactor=reactor,
                logger=root,
            )
        )
    return AgentService(
        agent,
        reactor=reactor,
        server_side=server_side,
        endpoints=endpoints,
        install_signal_handlers=install_signal_handlers,
    )


def _add_client_parts(config: AgentConfig, reactor: Any, clock: IReactorTime, agent: Agent) -> None:
    """A client keeps no catalog: it forwards to servers and syncs its node through them."""
    agent.rpc = _rpc_client(reactor, clock, agent.logger.named("client").named("rpc"), None)
    agent.sync = NodeInfoSync(
        node=node_spec(config),
        read_node=lambda name: None,  # no local catalog: compare by writing
        write=agent.write,
        clock=clock,
        logger=agent.logger,
    )


def _raft_service(
    config: AgentConfig,
    reactor: Any,
    clock: IReactorTime,
    rng: random.Random,
    agent: Agent,
    side: HcLogger,
) -> tuple[RaftService, ChannelFactory]:
    """
    The state store, its Raft node (storage, transport) and the leader's
    duties, wired to the agent; also the handler for Raft traffic on the
    server RPC port.
    """
    store = StateStore()
    raft_logger = side.named("raft")
    raft_address = f"{config.advertise_addr}:{config.ports.server}"
    storage = open_raft_storage(config, raft_logger)
    raft = RaftNode.create(
        node_id=config.node_id,
        address=raft_address,
        timings=RaftTimings.dev() if config.dev else RaftTimings.production(config.raft_multiplier),
        clock=clock,
        fsm=CatalogFSM(store),
        log_store=storage.log,
        stable_store=storage.stable,
        snapshot_store=storage.snapshots,
        snapshot_policy=SnapshotPolicy(
            threshold=config.raft_snapshot_threshold, trailing_logs=config.raft_trailing_logs
        ),
        logger=raft_logger,
        rng=rng,
        group_commit=True,
    )
    bind = None if ipaddress.ip_address(config.bind_addr).is_unspecified else config.bind_addr
    transport = RaftTransport(reactor, raft_logger.named("net"), bind_address=bind)
    raft.send_to = lambda peer_id, address, message: transport.send(address, message)
    raft.push_sends = transport.push
    agent.attach_catalog(store, raft)
    agent.rpc = _rpc_client(reactor, clock, side.named("rpc"), bind)
    sync = NodeInfoSync(
        node=node_spec(config),
        read_node=store.get_node,
        write=agent.write,
        clock=clock,
        logger=agent.logger,
    )
    agent.sync = sync
    duties = LeaderDuties(
        node_name=config.node_name,
        datacenter=config.datacenter,
        store=store,
        lan=agent.lan,
        write=agent.write,
        server_logger=side,
        leader_logger=agent.logger.named("leader"),
    )
    peers = RaftPeerReconciler(
        raft=raft,
        lan=agent.lan,
        datacenter=config.datacenter,
        clock=clock,
        logger=side,
        cleanup_dead_servers=config.cleanup_dead_servers,
    )
    raft.leadership_observers.append(duties.leadership_changed)
    raft.leadership_observers.append(peers.leadership_changed)
    raft.leadership_observers.append(lambda leader: sync.trigger() if leader else None)
    lone = config.dev or config.bootstrap
    bootstrap = (Server(id=config.node_id, address=raft_address),) if lone else ()
    on_start = []
    if config.bootstrap_expect:
        expect = BootstrapExpect(
            raft=raft,
            lan=agent.lan,
            rpc=agent.rpc,
            expect=config.bootstrap_expect,
            datacenter=config.datacenter,
            logger=side,
        )
        on_start.append(expect.start)
    service = RaftService(
        raft,
        bootstrap_servers=bootstrap,
        on_start=on_start,
        on_stop=[transport.close, storage.close],
    )
    return service, raft_receiver(raft.receive, raft_logger.named("net"))


def _rpc_client(reactor: Any, clock: IReactorTime, logger: HcLogger, bind: str | None) -> RpcClient:
    return RpcClient(
        reactor,
        clock,
        connect_timeout=10.0,
        request_timeout=30.0,
        logger=logger,
        bind_address=bind,
    )
