"""Merging flags and Consul JSON config files into an AgentConfig, and refusing bad ones."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from consul_tw.config import AgentConfig, ConfigError, build_config


def config(
    *,
    dev: bool = True,
    server: bool = False,
    files: dict[str, dict[str, Any]] | None = None,
    **flags: str,
) -> AgentConfig:
    files = files or {}
    return build_config(
        dev=dev,
        server=server,
        flags={k.replace("_", "-"): v for k, v in flags.items()},
        config_files=list(files),
        hostname="host",
        new_uuid=lambda: "7a82fb12-a621-004b-a8cd-98861b80d64c",
        read_file=lambda path: files[path],
    )


class DevDefaultsTests(SynchronousTestCase):
    def test_dev_is_a_loopback_debug_server(self) -> None:
        c = config()
        self.assertEqual(
            (c.server, c.bind_addr, c.client_addr, c.log_level, c.datacenter, c.node_name),
            (True, "127.0.0.1", "127.0.0.1", "DEBUG", "dc1", "host"),
        )
        self.assertEqual((c.ports.grpc, c.raft_multiplier, c.pretty_json), (8502, 1, True))
        self.assertTrue(c.node_id_is_random)

    def test_production_defaults(self) -> None:
        c = config(dev=False, data_dir="/tmp/x")
        self.assertEqual(
            (c.server, c.log_level, c.raft_multiplier, c.ports.grpc), (False, "INFO", 5, -1)
        )
        self.assertEqual((c.leave_on_terminate, c.skip_leave_on_interrupt), (True, False))
        s = config(dev=False, server=True, data_dir="/tmp/x")
        self.assertEqual((s.leave_on_terminate, s.skip_leave_on_interrupt), (False, True))

    def test_flags_beat_files_beat_defaults(self) -> None:
        c = config(
            files={"a.json": {"datacenter": "east", "ports": {"http": 9500, "dns": 9600}}},
            http_port="7500",
        )
        self.assertEqual((c.datacenter, c.ports.http, c.ports.dns), ("east", 7500, 9600))

    def test_later_files_win(self) -> None:
        c = config(files={"a.json": {"node_name": "a"}, "b.json": {"node_name": "b"}})
        self.assertEqual(c.node_name, "b")


class AdvertiseTests(SynchronousTestCase):
    def test_advertise_follows_bind_unless_unspecified(self) -> None:
        self.assertEqual(config().advertise_addr, "127.0.0.1")
        self.assertEqual(config(bind="10.1.2.3").advertise_addr, "10.1.2.3")
        chosen = build_config(
            dev=False,
            server=False,
            flags={"data-dir": "/d"},
            config_files=[],
            hostname="h",
            private_ip=lambda: "192.168.7.7",
        )
        self.assertEqual((chosen.bind_addr, chosen.advertise_addr), ("0.0.0.0", "192.168.7.7"))
        self.assertEqual(config(bind="10.1.2.3", advertise="10.9.9.9").advertise_addr, "10.9.9.9")


class GossipSettingsTests(SynchronousTestCase):
    def test_joins_encrypt_and_reconnect(self) -> None:
        c = build_config(
            dev=True,
            server=False,
            flags={},
            config_files=["f.json"],
            hostname="h",
            read_file=lambda path: {
                "retry_join": ["10.0.0.1", "10.0.0.2:8301"],
                "retry_interval": "5s",
                "reconnect_timeout": "8h",
                "encrypt": "MFGEKa64Dz/VEzW1NgiE4Kw69YFOn98xAr9JcWGuXXs=",
            },
            list_flags={"join": ["10.0.0.9"]},
        )
        self.assertEqual(
            (c.start_join, c.retry_join), (("10.0.0.9",), ("10.0.0.1", "10.0.0.2:8301"))
        )
        self.assertEqual((c.retry_interval, c.reconnect_timeout), (5.0, 8 * 3600.0))
        self.assertIsNotNone(c.encrypt)

    def test_bad_gossip_settings(self) -> None:
        for data, text in [
            ({"encrypt": "not base64!"}, "encrypt: key is not valid base64"),
            ({"encrypt": "YWJj"}, "encrypt:"),
            ({"reconnect_timeout": "1h"}, "reconnect_timeout must be >= 8h"),
            ({"retry_join": "10.0.0.1"}, None),
            ({"retry_join": [1]}, "retry_join must be a list of strings"),
        ]:
            kwargs = dict(
                dev=True,
                server=False,
                flags={},
                config_files=["f.json"],
                hostname="h",
                read_file=lambda path, data=data: data,
            )
            if text is None:
                self.assertEqual(build_config(**kwargs).retry_join, ("10.0.0.1",))
                continue
            error = self.assertRaises(ConfigError, build_config, **kwargs)
            self.assertIn(text, str(error))


class RefusalTests(SynchronousTestCase):
    def assert_refused(self, text: str, **kwargs: Any) -> None:
        error = self.assertRaises(ConfigError, config, **kwargs)
        self.assertIn(text, str(error))
        self.assertNotIn("\n", str(error))

    def test_unknown_keys_are_errors(self) -> None:
        self.assert_refused("invalid config key bogus", files={"f.json": {"bogus": 1}})
        self.assert_refused(
            "invalid config key ports.bogus", files={"f.json": {"ports": {"bogus": 1}}}
        )

    def test_known_unbuilt_keys_warn_once(self) -> None:
        c = config(
            files={
                "a.json": {"acl": {"enabled": True}, "ports": {"grpc_tls": 8503}},
                "b.json": {"acl": {}},
            }
        )
        self.assertEqual(c.warnings, ("acl", "ports.grpc_tls"))

    def test_bad_values(self) -> None:
        self.assert_refused("Invalid log level: LOUD", log_level="LOUD")
        self.assert_refused("ports.http must be an integer", http_port="abc")
        self.assert_refused("ports.dns cannot be 70000", dns_port="70000")
        self.assert_refused("performance.raft_multiplier cannot be 11", raft_multiplier="11")
        self.assert_refused("must be a valid IP address", bind="localhost")
        self.assert_refused("invalid node ID", node_id="not-a-uuid")
        self.assert_refused("node_name cannot be empty", node="")
        self.assert_refused("datacenter can only contain", datacenter="d c")

    def test_contradictions(self) -> None:
        self.assert_refused("data_dir cannot be empty", dev=False)
        self.assert_refused(
            "Bootstrap mode requires Server mode",
            dev=False,
            data_dir="/d",
            files={"f.json": {"bootstrap": True}},
        )

    def test_leave_drain_time_is_a_go_duration(self) -> None:
        self.assertEqual(
            config(
                files={"f.json": {"performance": {"leave_drain_time": "1m30s"}}}
            ).leave_drain_time,
            90.0,
        )
        self.assert_refused(
            "leave_drain_time", files={"f.json": {"performance": {"leave_drain_time": "5"}}}
        )
        self.assert_refused(
            "leave_drain_time cannot be negative",
            files={"f.json": {"performance": {"leave_drain_time": "-5s"}}},
        )


class DnsNameWarningTests(SynchronousTestCase):
    def test_warns_like_consul(self) -> None:
        self.assertIsNone(config(node="web-1").dns_name_warning)
        self.assertEqual(
            config(node="Judiths-MBP.local").dns_name_warning,
            'Node name "Judiths-MBP.local" will not be discoverable via DNS due to invalid '
            "characters. Valid characters include all alpha-numerics and dashes.",
        )
        self.assertIn("being too long", config(node="a" * 64).dns_name_warning or "")


class RaftSettingsTests(SynchronousTestCase):
    def test_bootstrap_expect_and_raft_keys(self) -> None:
        c = config(
            dev=False,
            server=True,
            data_dir="/d",
            bootstrap_expect="3",
            files={
                "f.json": {
                    "performance": {"rpc_hold_timeout": "3s"},
                    "raft_snapshot_threshold": 100,
                    "raft_trailing_logs": 10,
                    "autopilot": {"cleanup_dead_servers": False},
                }
            },
        )
        self.assertEqual(
            (
                c.bootstrap_expect,
                c.rpc_hold_timeout,
                c.raft_snapshot_threshold,
                c.raft_trailing_logs,
                c.cleanup_dead_servers,
                c.warnings,
            ),
            (3, 3.0, 100, 10, False, ()),
        )
        self.assertEqual(config(server=True, dev=False, data_dir="/d").bootstrap_expect, 0)

    def test_bootstrap_expect_of_one_is_bootstrap(self) -> None:
        c = config(dev=False, server=True, data_dir="/d", bootstrap_expect="1")
        self.assertEqual((c.bootstrap, c.bootstrap_expect), (True, 0))
        self.assertEqual(
            c.notices, ("BootstrapExpect is set to 1; this is the same as Bootstrap mode.",)
        )

    def test_consul_refusals(self) -> None:
        for kwargs, text in [
            (dict(dev=False, server=False, data_dir="/d"), "'bootstrap_expect > 0' requires"),
            (dict(dev=True, server=True), "'bootstrap_expect > 0' not allowed in dev mode"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                config(bootstrap_expect="3", **kwargs)  # type: ignore[arg-type]
            self.assertIn(text, str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            config(dev=False, server=True, data_dir="/d", files={"f": {"bootstrap_expect": -1}})
        self.assertEqual(
            str(caught.exception),
            "bootstrap_expect cannot be -1. Must be greater than or equal to zero",
        )
        with self.assertRaises(ConfigError) as caught:
            config(
                dev=False,
                server=True,
                data_dir="/d",
                files={"f": {"bootstrap": True, "bootstrap_expect": 3}},
            )
        self.assertEqual(
            str(caught.exception),
            "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive",
        )

    def test_unbuilt_autopilot_keys_warn(self) -> None:
        c = config(files={"f": {"autopilot": {"max_trailing_logs": 250}}})
        self.assertEqual(c.warnings, ("autopilot.max_trailing_logs",))
