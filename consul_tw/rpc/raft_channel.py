# -*- test-case-name: tests.unit.rpc.test_protocol -*-
"""
The hook for Raft traffic on the server RPC port (protocol byte 0x02).

Only the receiving end exists so far: :func:`raft_handler` registers a
channel that hands every decoded message to a callable, which the Raft
issue will make ``RaftNode.receive`` (after turning the map into a
:mod:`consul_tw.raft.messages` record).  No Raft logic lives here.

Intended encoding (for the Raft issue to implement, not enforced beyond
"a map with a text ``type``"):

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
       "prev_log_term": 7, "leader_commit": 41,
       "entries": [{"index": 42, "term": 7, "type": "command", "data": b"...",
                    "servers": []}]}

* Snapshots larger than a frame (8 MiB) go as ``InstallSnapshot`` chunks
  with ``offset``/``done`` fields, each in its own frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from consul_tw._logging import HcLogger
from consul_tw.rpc.framing import FrameError
from consul_tw.rpc.protocol import Channel, ChannelFactory, Connection

RaftDeliver = Callable[[dict[str, Any]], None]
"""Receives each decoded Raft message (a map with a text ``"type"``)."""


@attrs.define(eq=False)
class _RaftChannel:
    deliver: RaftDeliver
    connection: Connection
    logger: HcLogger

    def frame_received(self, value: Any) -> None:
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            raise FrameError("raft message must be a map with a text type")
        try:
            self.deliver(value)
        except Exception as e:  # a bug in the node must not close the stream
            self.logger.error(
                "failed to handle Raft message",
                type=value["type"],
                error=repr(e),
                conn=f"from={self.connection.peer}",
            )

    def busy(self) -> bool:
        return False

    def connection_lost(self) -> None:
        pass


def raft_handler(deliver: RaftDeliver, logger: HcLogger) -> ChannelFactory:
    """The channel factory for protocol byte 0x02: messages go to ``deliver``."""

    def build(connection: Connection) -> Channel:
        return _RaftChannel(deliver, connection, logger)

    return build
