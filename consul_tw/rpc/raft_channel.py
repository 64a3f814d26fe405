# -*- test-case-name: tests.unit.rpc.test_protocol,tests.unit.rpc.test_raft_transport -*-
"""
The receiving end of Raft traffic on the server RPC port (protocol byte 0x02).

:func:`raft_receiver` is what the agent registers: every frame is turned
into a :mod:`consul_tw.raft.messages` record by
:func:`consul_tw.rpc.raft_codec.decode_message` and handed to a callable
(``RaftNode.receive``).  :func:`raft_handler` is the same hook one level
down, delivering the bare maps (only checked to be a map with a text
``type``).  No Raft logic lives here; the sending end is
:class:`consul_tw.rpc.raft_transport.RaftTransport`.

Peers are untrusted: a frame that does not decode closes its connection
with the server's one WARN line (the sender reconnects and Raft resends),
while an exception from the node is logged and the stream kept, since the
next message may well be fine.

The encoding (implemented by :mod:`consul_tw.rpc.raft_codec`):

* A Raft connection is one-way.  The sender opens a TCP connection to the
  peer's server RPC port, writes the byte ``0x02``, then frames
  (:mod:`consul_tw.rpc.framing`), each holding one message.  Nothing is
  ever written back: replies (``RequestVoteResponse``,
  ``AppendEntriesResponse``...) are messages too, sent on the replier's
  own connection to the sender, exactly as the machine's ``Send(peer,
  msg)`` effects describe them.  Raft tolerates the loss and reordering
  this allows; within one connection frames arrive in order.
* A message is a map: ``"type"`` is the record's class name
  (``"AppendEntries"``, ``"RequestVote"``, ``"InstallSnapshot"``...), the
  other keys are its attrs fields by name (``"term"``, ``"leader_id"``,
  ``"prev_log_index"``...).  Nested records (``LogEntry``, ``Server``) are
  maps of their fields; tuples are arrays; ``bytes`` (entry data) are msgpack
  ``bin``; enums (``EntryType``) are their string value.  Example::

      {"type": "AppendEntries", "term": 7, "leader_id": "5e4f...",
       "leader_address": "10.0.0.1:8300", "prev_log_index": 41,
       "prev_log_term": 7, "leader_commit": 41, "seq": 12,
       "entries": [{"index": 42, "term": 7, "type": "command", "data": b"...",
                    "servers": []}]}

  Fields with a default may be left out; unknown keys, wrong types, negative
  or over-uint64 integers close the connection.
* Snapshots larger than a frame (8 MiB) go as ``InstallSnapshot`` chunks
  with ``offset``/``done`` fields, each in its own frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from consul_tw._logging import HcLogger
from consul_tw.raft.messages import Message
from consul_tw.rpc.framing import FrameError
from consul_tw.rpc.protocol import Channel, ChannelFactory, Connection
from consul_tw.rpc.raft_codec import decode_message

RaftDeliver = Callable[[dict[str, Any]], None]
"""Receives each Raft message as a bare map (a map with a text ``"type"``)."""

MessageDeliver = Callable[[Message], None]
"""Receives each Raft message as its record (``RaftNode.receive``)."""


def _bare_map(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise FrameError("raft message must be a map with a text type")
    return value


def _type_name(message: Any) -> str:
    return message["type"] if isinstance(message, dict) else type(message).__name__


@attrs.define(eq=False)
class _RaftChannel:
    #: Frame value → message; raises FrameError for junk, which closes the connection.
    decode: Callable[[Any], Any]
    deliver: Callable[[Any], None]
    connection: Connection
    logger: HcLogger

    def frame_received(self, value: Any) -> None:
        message = self.decode(value)
        try:
            self.deliver(message)
        except Exception as e:  # a bug in the node must not close the stream
            self.logger.error(
                "failed to handle Raft message",
                type=_type_name(message),
                error=repr(e),
                conn=f"from={self.connection.peer}",
            )

    def busy(self) -> bool:
        return False

    def connection_lost(self) -> None:
        pass


def raft_handler(deliver: RaftDeliver, logger: HcLogger) -> ChannelFactory:
    """The channel factory for protocol byte 0x02: bare message maps go to ``deliver``."""

    def build(connection: Connection) -> Channel:
        return _RaftChannel(_bare_map, deliver, connection, logger)

    return build


def raft_receiver(deliver: MessageDeliver, logger: HcLogger) -> ChannelFactory:
    """
    The channel factory for protocol byte 0x02: decoded
    :mod:`consul_tw.raft.messages` records go to ``deliver``.
    """

    def build(connection: Connection) -> Channel:
        return _RaftChannel(decode_message, deliver, connection, logger)

    return build
