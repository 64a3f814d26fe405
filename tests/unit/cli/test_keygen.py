"""Tests for ``consul-tw keygen``."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from consul_tw.gossip.memberlist.keyring import Keyring
from tests.unit.cli.test_support import FakeAgent, run_cli


class KeygenTests(SynchronousTestCase):
    def test_prints_a_usable_32_byte_key(self) -> None:
        agent = FakeAgent()
        result = run_cli(["keygen"], agent)
        self.assertEqual((result.code, result.err), (0, ""))
        key = result.out.strip()
        self.assertEqual(len(base64.b64decode(key)), 32)
        keyring = Keyring.from_base64([key])
        self.assertEqual(keyring.decrypt_packet(keyring.encrypt_packet(b"hello")), b"hello")
        self.assertEqual(agent.requests, [])

    def test_keys_differ(self) -> None:
        self.assertNotEqual(run_cli(["keygen"]).out, run_cli(["keygen"]).out)

    def test_takes_no_arguments(self) -> None:
        self.assertEqual(run_cli(["keygen", "extra"]).code, 1)
