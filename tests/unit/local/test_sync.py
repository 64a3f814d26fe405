"""NodeInfoSync: the agent's own node entry kept in the catalog."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import HcLogger
from consul_tw.catalog.commands import Command, NodeSpec, Register
from consul_tw.catalog.store import StateStore
from consul_tw.local.sync import NodeInfoSync

SPEC = NodeSpec(
    id="i",
    node="n1",
    address="10.0.0.1",
    datacenter="dc1",
    tagged_addresses={"lan": "10.0.0.1"},
    meta={"consul-network-segment": ""},
)


class SyncTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = StateStore()
        self.fail_next = 0
        self.writes = 0
        self.sync = NodeInfoSync(
            node=SPEC,
            read_node=self.store.get_node,
            write=self.write,
            clock=self.clock,
            logger=HcLogger("agent"),
        )

    def write(self, command: Command) -> Deferred[Any]:
        self.writes += 1
        if self.fail_next:
            self.fail_next -= 1
            return fail(RuntimeError("No cluster leader"))
        assert isinstance(command, Register)
        self.store.register(self.writes, command)
        return succeed(True)

    def test_syncs_then_stays_in_sync(self) -> None:
        self.sync.start()
        self.assertEqual(self.writes, 1)
        self.clock.advance(self.sync.interval)
        self.assertEqual(self.writes, 1, "in sync: nothing written")
        self.sync.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_retries_after_failure(self) -> None:
        self.fail_next = 1
        self.sync.start()
        self.assertIsNone(self.store.get_node("n1"))
        self.clock.advance(self.sync.retry_interval)
        self.assertIsNotNone(self.store.get_node("n1"))
        self.sync.stop()

    def test_server_waits_for_a_trigger(self) -> None:
        self.sync.start(sync_now=False)
        self.assertEqual(self.writes, 0)
        self.sync.trigger()
        self.assertEqual(self.writes, 1)
        self.sync.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_repairs_drift(self) -> None:
        self.sync.start()
        self.store.register(
            50, Register(node=NodeSpec(id="i", node="n1", address="10.0.0.1", datacenter="dc1"))
        )
        self.clock.advance(self.sync.interval)
        row = self.store.get_node("n1")
        assert row is not None
        self.assertEqual(dict(row.tagged_addresses), {"lan": "10.0.0.1"})
        self.sync.stop()
