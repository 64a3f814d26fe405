"""State store: rows, per-table indexes, case-insensitive names, validation."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from consul_tw.catalog.commands import CheckSpec, NodeSpec, Register, ServiceSpec
from consul_tw.catalog.store import CHECKS, NODES, SERVICES, RegistrationError, StateStore
from consul_tw.catalog.structs import CRITICAL, PASSING, WARNING


def node(name: str = "web1", address: str = "10.0.0.1", **extra: object) -> NodeSpec:
    return NodeSpec(id=f"id-{name}", node=name, address=address, datacenter="dc1", **extra)  # type: ignore[arg-type]


class IndexTests(SynchronousTestCase):
    def test_new_store_reports_zero(self) -> None:
        self.assertEqual(StateStore().max_index(), 0)

    def test_create_and_modify_index_come_from_raft(self) -> None:
        store = StateStore()
        store.register(5, Register(node=node()))
        store.register(9, Register(node=node(address="10.0.0.2")))
        row = store.get_node("web1")
        assert row is not None
        self.assertEqual((row.create_index, row.modify_index, row.address), (5, 9, "10.0.0.2"))
        self.assertEqual(store.max_index(NODES), 9)

    def test_unchanged_write_keeps_indexes(self) -> None:
        store = StateStore()
        store.register(5, Register(node=node()))
        store.register(6, Register(node=node()))
        row = store.get_node("web1")
        assert row is not None
        self.assertEqual(row.modify_index, 5)
        self.assertEqual(store.max_index(NODES), 5)

    def test_tables_are_indexed_separately(self) -> None:
        store = StateStore()
        store.register(3, Register(node=node(), service=ServiceSpec(id="web", service="web")))
        store.register(4, Register(node=node(), checks=(CheckSpec(check_id="c", name="c"),)))
        self.assertEqual(
            (store.max_index(NODES), store.max_index(SERVICES), store.max_index(CHECKS)), (3, 3, 4)
        )
        self.assertEqual(store.max_index(NODES, SERVICES), 3)
        self.assertEqual(store.max_index(), 4)

    def test_deletion_moves_the_index_forward(self) -> None:
        """An index never goes backwards: deleting the newest row still bumps it."""
        store = StateStore()
        store.register(
            3,
            Register(
                node=node(),
                service=ServiceSpec(id="web", service="web"),
                checks=(CheckSpec(check_id="c", name="c", service_id="web"),),
            ),
        )
        store.deregister_node(7, "WEB1")
        self.assertEqual(store.nodes(), [])
        self.assertEqual(
            (store.max_index(NODES), store.max_index(SERVICES), store.max_index(CHECKS)), (7, 7, 7)
        )

    def test_deleting_unknown_rows_changes_nothing(self) -> None:
        store = StateStore()
        store.deregister_node(4, "nobody")
        store.deregister_service(4, "nobody", "x")
        store.deregister_check(4, "nobody", "x")
        self.assertEqual(store.max_index(), 0)

    def test_listeners_hear_changes_only(self) -> None:
        store = StateStore()
        heard: list[int] = []
        store.listeners.append(lambda: heard.append(store.max_index()))
        store.register(2, Register(node=node()))
        store.register(3, Register(node=node()))
        self.assertEqual(heard, [2])


class LookupTests(SynchronousTestCase):
    def test_nodes_sorted_and_case_insensitive(self) -> None:
        store = StateStore()
        for index, name in enumerate(["zeta", "Alpha", "mid"], start=1):
            store.register(index, Register(node=node(name)))
        self.assertEqual([n.node for n in store.nodes()], ["Alpha", "mid", "zeta"])
        row = store.get_node("ALPHA")
        assert row is not None
        self.assertEqual(row.node, "Alpha")

    def test_services_union_of_tags(self) -> None:
        store = StateStore()
        store.register(
            1, Register(node=node("a"), service=ServiceSpec(id="w1", service="web", tags=("v1",)))
        )
        store.register(
            2,
            Register(
                node=node("b"), service=ServiceSpec(id="w2", service="web", tags=("primary", "v1"))
            ),
        )
        self.assertEqual(store.services(), {"web": ["primary", "v1"]})

    def test_service_instances_carry_node_and_service_checks(self) -> None:
        store = StateStore()
        store.register(
            1,
            Register(
                node=node("a"),
                service=ServiceSpec(id="w1", service="web"),
                checks=(
                    CheckSpec(check_id="serfHealth", name="Serf", status=PASSING),
                    CheckSpec(check_id="svc", name="svc", status=WARNING, service_id="w1"),
                ),
            ),
        )
        store.register(
            2,
            Register(
                node=node("b"),
                service=ServiceSpec(id="w2", service="web", tags=("x",)),
                checks=(CheckSpec(check_id="serfHealth", name="Serf", status=CRITICAL),),
            ),
        )
        instances = store.service_instances("WEB")
        self.assertEqual(
            [(i.node.node, i.status) for i in instances], [("a", WARNING), ("b", CRITICAL)]
        )
        self.assertEqual([i.node.node for i in store.service_instances("web", tag="X")], ["b"])

    def test_skip_node_update_keeps_synced_fields(self) -> None:
        store = StateStore()
        store.register(
            1, Register(node=node(tagged_addresses={"lan": "10.0.0.1"}, meta={"k": "v"}))
        )
        store.register(
            2,
            Register(
                node=node(), checks=(CheckSpec(check_id="c", name="c"),), skip_node_update=True
            ),
        )
        row = store.get_node("web1")
        assert row is not None
        self.assertEqual((dict(row.meta), row.modify_index), ({"k": "v"}, 1))


class ValidationTests(SynchronousTestCase):
    def test_refused_writes_leave_no_trace(self) -> None:
        store = StateStore()
        bad = [
            Register(node=NodeSpec(id="i", node="", address="1.1.1.1", datacenter="dc1")),
            Register(node=NodeSpec(id="i", node="n", address="", datacenter="dc1")),
            Register(node=node(), service=ServiceSpec(id="s", service="")),
            Register(node=node(), checks=(CheckSpec(check_id="c", name="c", service_id="nope"),)),
        ]
        for request in bad:
            self.assertRaises(RegistrationError, store.register, 1, request)
        self.assertEqual((store.nodes(), store.max_index()), ([], 0))

    def test_node_id_cannot_change_for_a_name(self) -> None:
        store = StateStore()
        store.register(1, Register(node=node()))
        other = NodeSpec(id="another", node="web1", address="10.0.0.1", datacenter="dc1")
        error = self.assertRaises(RegistrationError, store.register, 2, Register(node=other))
        self.assertIn("aliases existing node", str(error))
