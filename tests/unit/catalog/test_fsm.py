"""The catalog FSM and the command codec kept in the Raft log."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from consul_tw.catalog.commands import (
    CheckSpec,
    CommandDecodeError,
    Deregister,
    NodeSpec,
    Register,
    ServiceSpec,
    decode_command,
    encode_command,
)
from consul_tw.catalog.fsm import CatalogFSM
from consul_tw.catalog.store import RegistrationError, StateStore

FULL = Register(
    node=NodeSpec(
        id="i",
        node="n",
        address="1.2.3.4",
        datacenter="dc1",
        tagged_addresses={"lan": "1.2.3.4"},
        meta={"a": "b"},
    ),
    service=ServiceSpec(id="web", service="web", tags=("x", "y"), port=80, meta={"m": "1"}),
    checks=(CheckSpec(check_id="c", name="C", status="passing", service_id="web"),),
    skip_node_update=True,
)


class CodecTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        for command in (
            FULL,
            Register(node=FULL.node),
            Deregister(node="n"),
            Deregister(node="n", service_id="web"),
            Deregister(node="n", check_id="c"),
        ):
            self.assertEqual(decode_command(encode_command(command)), command)

    @given(st.binary(max_size=200))
    def test_garbage_is_a_decode_error(self, data: bytes) -> None:
        try:
            decode_command(data)
        except CommandDecodeError:
            pass

    def test_unknown_tag_and_version(self) -> None:
        import msgpack

        for raw in (msgpack.packb(["evict", 1, {}]), msgpack.packb(["register", 99, {}])):
            self.assertRaises(CommandDecodeError, decode_command, raw)


class FSMTests(SynchronousTestCase):
    def test_applies_at_the_log_index(self) -> None:
        store = StateStore()
        fsm = CatalogFSM(store)
        self.assertTrue(fsm.apply(7, encode_command(FULL)))
        self.assertEqual(store.max_index(), 7)
        fsm.apply(8, encode_command(Deregister(node="n", check_id="c")))
        self.assertEqual(store.node_checks("n"), [])
        fsm.apply(9, encode_command(Deregister(node="n", service_id="web")))
        self.assertEqual(store.node_services("n"), [])
        fsm.apply(10, encode_command(Deregister(node="n")))
        self.assertEqual(store.nodes(), [])

    def test_rejected_command_raises(self) -> None:
        fsm = CatalogFSM(StateStore())
        bad = Register(node=NodeSpec(id="i", node="", address="1.1.1.1", datacenter="dc1"))
        self.assertRaises(RegistrationError, fsm.apply, 1, encode_command(bad))
        self.assertRaises(CommandDecodeError, fsm.apply, 2, b"\x00junk")
