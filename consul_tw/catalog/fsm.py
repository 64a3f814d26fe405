# -*- test-case-name: tests.unit.catalog.test_fsm,tests.unit.catalog.test_kv -*-
"""
The catalog as Raft's replicated state machine.

Raft hands every committed command here with its log index; the index
becomes the rows' CreateIndex/ModifyIndex, which is why catalog indexes are
Raft indexes in Consul too.  A command that fails validation raises, and the
Raft node delivers that failure to whoever wrote it; the store is unchanged.
Otherwise the return value goes to the writer: True, or for a KV write the
answer of Consul's ``KVS.Apply`` (False when a CAS does not hold).

Raft compacts its log behind :meth:`CatalogFSM.snapshot` and brings a
lagging follower up to date with :meth:`CatalogFSM.restore`.
"""

from __future__ import annotations

import attrs

from consul_tw.catalog.commands import KVS, Deregister, Register, TombstoneReap, decode_command
from consul_tw.catalog.store import StateStore


@attrs.define
class CatalogFSM:
    store: StateStore

    def apply(self, index: int, data: bytes) -> bool:
        command = decode_command(data)
        if isinstance(command, KVS):
            return self.store.kv_apply(index, command)
        if isinstance(command, Register):
            self.store.register(index, command)
        elif isinstance(command, Deregister):
            if command.service_id is not None:
                self.store.deregister_service(index, command.node, command.service_id)
            elif command.check_id is not None:
                self.store.deregister_check(index, command.node, command.check_id)
            else:
                self.store.deregister_node(index, command.node)
        elif isinstance(command, TombstoneReap):
            self.store.reap_tombstones(command.reap_index)
        return True

    def snapshot(self) -> bytes:
        """The whole state, for Raft to keep in place of the log it covers."""
        return self.store.snapshot()

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's (SnapshotError, unchanged, on junk)."""
        self.store.restore(data)
