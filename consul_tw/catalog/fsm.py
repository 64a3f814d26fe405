# -*- test-case-name: tests.unit.catalog.test_fsm -*-
"""
The catalog as Raft's replicated state machine.

Raft hands every committed command here with its log index; the index
becomes the rows' CreateIndex/ModifyIndex, which is why catalog indexes are
Raft indexes in Consul too.  A command that fails validation raises, and the
Raft node delivers that failure to whoever wrote it; the store is unchanged.
"""

from __future__ import annotations

import attrs

from consul_tw.catalog.commands import Deregister, Register, decode_command
from consul_tw.catalog.store import StateStore


@attrs.define
class CatalogFSM:
    store: StateStore

    def apply(self, index: int, data: bytes) -> bool:
        command = decode_command(data)
        if isinstance(command, Register):
            self.store.register(index, command)
        elif isinstance(command, Deregister):
            if command.service_id is not None:
                self.store.deregister_service(index, command.node, command.service_id)
            elif command.check_id is not None:
                self.store.deregister_check(index, command.node, command.check_id)
            else:
                self.store.deregister_node(index, command.node)
        return True
