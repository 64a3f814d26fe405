"""
The server RPC port (8300): length-prefixed msgpack frames over TCP, one
port for forwarded RPC calls (first byte 0x01) and Raft messages (0x02).

* :mod:`consul_tw.rpc.framing` -- the wire format (pure);
* :mod:`consul_tw.rpc.protocol` -- the server: :class:`RpcDispatcher` and
  :func:`rpc_server_factory`;
* :mod:`consul_tw.rpc.client` -- :class:`RpcClient`, a pool of pipelined
  connections to servers;
* :mod:`consul_tw.rpc.raft_channel` -- the 0x02 hook for Raft
  (:func:`raft_receiver`);
* :mod:`consul_tw.rpc.raft_codec` -- Raft messages ↔ wire maps (pure);
* :mod:`consul_tw.rpc.raft_transport` -- :class:`RaftTransport`, sending
  Raft messages to peers.
"""

from consul_tw.rpc.client import CallTimeout, ConnectError, RemoteError, RpcClient, RpcError
from consul_tw.rpc.framing import MAX_FRAME_SIZE, PROTOCOL_RAFT, PROTOCOL_RPC, FrameError
from consul_tw.rpc.protocol import (
    HandlerError,
    RpcDispatcher,
    RpcServerFactory,
    rpc_server_factory,
)
from consul_tw.rpc.raft_channel import raft_handler, raft_receiver
from consul_tw.rpc.raft_codec import decode_message, encode_message
from consul_tw.rpc.raft_transport import RaftTransport

__all__ = [
    "MAX_FRAME_SIZE",
    "PROTOCOL_RAFT",
    "PROTOCOL_RPC",
    "CallTimeout",
    "ConnectError",
    "FrameError",
    "HandlerError",
    "RemoteError",
    "RpcClient",
    "RpcDispatcher",
    "RpcError",
    "RaftTransport",
    "RpcServerFactory",
    "decode_message",
    "encode_message",
    "raft_handler",
    "raft_receiver",
    "rpc_server_factory",
]
