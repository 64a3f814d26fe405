# -*- test-case-name: tests.unit.rpc.test_endpoints -*-
"""
The RPC methods a consul-tw server answers on its RPC port.

Client agents forward their catalog reads (``Catalog.Read``: the same named
reads as :mod:`consul_tw.catalog.reads`) and writes (``Catalog.Apply``: a
catalog command in the Raft log's own encoding) here, so a client answers
HTTP exactly as a server would.  Expected failures ("No cluster leader")
go back as their text without an ERROR line.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from consul_tw.agent import Agent, AgentNotServer, NoClusterLeader, PeerNotFound
from consul_tw.catalog.commands import CommandDecodeError, decode_command
from consul_tw.catalog.reads import MAX_WAIT, ReadOptions, UnknownRead
from consul_tw.catalog.store import RegistrationError
from consul_tw.raft.core import ConfigurationBusy, ConfigurationError, NotLeader, TransferFailed
from consul_tw.rpc.protocol import HandlerError, RpcDispatcher

_EXPECTED = (
    NoClusterLeader,
    AgentNotServer,
    RegistrationError,
    UnknownRead,
    CommandDecodeError,
    PeerNotFound,
    NotLeader,
    ConfigurationBusy,
    ConfigurationError,
    TransferFailed,
)


def _expected(failure: Failure) -> Failure:
    if failure.check(*_EXPECTED):
        return Failure(HandlerError(failure.getErrorMessage()))
    return failure


def _read(agent: Agent, args: Any) -> Deferred[Any]:
    if not isinstance(args, dict) or not isinstance(args.get("name"), str):
        raise HandlerError("Catalog.Read: malformed request")
    try:
        raw = args.get("options") or {}
        options = ReadOptions(
            stale=bool(raw.get("stale")),
            consistent=bool(raw.get("consistent")),
            index=int(raw.get("index") or 0),
            wait=float(raw.get("wait") or 300.0),
            max_stale=float(raw.get("max_stale") or 0.0),
        )
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise HandlerError("Catalog.Read: malformed options") from None
    if not (
        0 <= options.index < 2**64
        and 0 < options.wait <= MAX_WAIT
        and 0 <= options.max_stale < 10**9
    ):
        raise HandlerError("Catalog.Read: malformed options")
    read_args = args.get("args") or {}
    if not isinstance(read_args, dict):
        raise HandlerError("Catalog.Read: malformed arguments")
    return (
        agent.read(args["name"], read_args, options)
        .addCallback(lambda result: result.to_wire())
        .addErrback(_expected)
    )


def _apply(agent: Agent, args: Any) -> Deferred[Any]:
    if not isinstance(args, bytes):
        raise HandlerError("Catalog.Apply: expected an encoded command")
    try:
        command = decode_command(args)
    except CommandDecodeError as e:
        raise HandlerError(str(e)) from None
    return agent.write(command).addErrback(_expected)


def _raft_stats(agent: Agent) -> dict[str, int]:
    """What -bootstrap-expect asks a peer: does it hold Raft state already?"""
    status = agent.raft_status()
    if status is None:
        raise HandlerError("Status.RaftStats: not a server")
    return {"LastIndex": status.last_log_index, "LastTerm": status.last_log_term}


def _raft_configuration(agent: Agent, args: Any) -> Deferred[Any]:
    stale = bool(args.get("stale")) if isinstance(args, dict) else False
    return agent.raft_configuration(stale=stale).addErrback(_expected)


def _remove_peer(agent: Agent, args: Any) -> Deferred[Any]:
    if not isinstance(args, dict):
        raise HandlerError("Operator.RaftRemovePeer: malformed request")
    peer_id, address = args.get("id"), args.get("address")
    if not isinstance(peer_id, str | None) or not isinstance(address, str | None):
        raise HandlerError("Operator.RaftRemovePeer: malformed request")
    return agent.remove_raft_peer(peer_id=peer_id, address=address).addErrback(_expected)


def build_dispatcher(agent: Agent) -> RpcDispatcher:
    dispatcher = RpcDispatcher()
    dispatcher.register("Catalog.Read", lambda args: _read(agent, args))
    dispatcher.register("Catalog.Apply", lambda args: _apply(agent, args))
    dispatcher.register("Status.Leader", lambda args: agent.leader_address())
    dispatcher.register("Status.Peers", lambda args: agent.peers())
    dispatcher.register("Status.RaftStats", lambda args: _raft_stats(agent))
    dispatcher.register(
        "Operator.RaftGetConfiguration", lambda args: _raft_configuration(agent, args)
    )
    dispatcher.register("Operator.RaftRemovePeer", lambda args: _remove_peer(agent, args))
    return dispatcher
