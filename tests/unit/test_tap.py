"""The twistd plugin: discovery, option parsing, and one-line failures."""

from __future__ import annotations

import io
import shutil
import sys
import tempfile

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from consul_tw import tap


class PluginTests(SynchronousTestCase):
    def test_twistd_finds_consul_agent(self) -> None:
        import twisted.plugins

        makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("consul-agent", makers)
        self.assertEqual(makers["consul-agent"].module, "consul_tw.tap")


class OptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_consul_single_dash_flags(self) -> None:
        options = self.parse(
            "-dev",
            "-node=web-1",
            "-http-port",
            "9500",
            "--dns-port=9600",
            "-config-file=a.json",
            "-config-file",
            "b.json",
        )
        self.assertTrue(options["dev"])
        self.assertEqual(
            (options["node"], options["http-port"], options["dns-port"]), ("web-1", "9500", "9600")
        )
        self.assertEqual(options["config-file"], ["a.json", "b.json"])

    def test_unknown_option_is_one_line_and_exit_1(self) -> None:
        error = self.assertRaises(SystemExit, self.parse, "--frobnicate")
        self.assertEqual(error.code, 1)
        self.assertEqual(self.stderr.getvalue().count("\n"), 1)
        self.assertTrue(self.stderr.getvalue().startswith("==> "))

    def test_invalid_config_is_one_line_and_exit_1(self) -> None:
        options = self.parse("--dev", "--log-level", "LOUD")
        error = self.assertRaises(SystemExit, tap.makeService, options)
        self.assertEqual(error.code, 1)
        self.assertEqual(self.stderr.getvalue(), "==> Invalid log level: LOUD\n")

    def test_missing_config_file(self) -> None:
        options = self.parse("--dev", "--config-file", "/nonexistent/consul.json")
        self.assertRaises(SystemExit, tap.makeService, options)
        self.assertEqual(
            self.stderr.getvalue(),
            "==> Error reading /nonexistent/consul.json: No such file or directory\n",
        )

    def test_installs_its_log_observer_in_twistd(self) -> None:
        from twisted.scripts.twistd import ServerOptions

        server_options = ServerOptions()
        server_options.parseOptions(["-n", "consul-agent", "-dev"])
        self.assertIs(server_options["logger"], tap.make_observer)

    def test_explicit_logger_wins(self) -> None:
        from twisted.scripts.twistd import ServerOptions

        server_options = ServerOptions()
        server_options.parseOptions(
            ["--logger", "twisted.logger.textFileLogObserver", "consul-agent"]
        )
        self.assertIsNot(server_options["logger"], tap.make_observer)

    def test_node_id_persists_in_data_dir(self) -> None:
        data_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, data_dir, True)
        first = tap.config_from_options(self.parse("--server", "--data-dir", data_dir))
        tap._persist_node_id(first)
        second = tap.config_from_options(self.parse("--server", "--data-dir", data_dir))
        self.assertEqual(first.node_id, second.node_id)
        self.assertFalse(second.node_id_is_random)
