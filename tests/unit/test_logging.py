"""hclog line format, value quoting, and the banner gate."""

from __future__ import annotations

import io
import time

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from consul_tw._logging import (
    HcLogger,
    HclogObserver,
    console,
    format_line,
    format_timestamp,
    format_value,
    parse_level,
)
from consul_tw.durations import format_duration, parse_duration

LINE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}) (\[TRACE\]|\[DEBUG\]|\[INFO\] |\[WARN\] |\[ERROR\]) "


class FormatTests(SynchronousTestCase):
    def test_line_layout(self) -> None:
        line = format_line(
            0.0,
            "INFO",
            "agent.server.raft",
            "entering leader state",
            [("leader", "Node at 127.0.0.1:8300 [Leader]")],
        )
        self.assertRegex(line, LINE)
        self.assertTrue(
            line.endswith(
                '[INFO]  agent.server.raft: entering leader state: leader="Node at 127.0.0.1:8300 [Leader]"'
            )
        )
        self.assertIn("[DEBUG] agent: x", format_line(0.0, "DEBUG", "agent", "x", []))
        self.assertIn("[WARN]  agent: x", format_line(0.0, "WARN", "agent", "x", []))

    def test_values(self) -> None:
        self.assertEqual(format_value("bare-value_1.2:3/x"), "bare-value_1.2:3/x")
        self.assertEqual(format_value("has space"), '"has space"')
        self.assertEqual(format_value(""), '""')
        self.assertEqual(format_value(None), "")
        self.assertEqual(format_value(True), "true")
        self.assertEqual(format_value(12), "12")
        self.assertEqual(format_value(["a", "b"]), '["a", "b"]')
        self.assertEqual(format_value('say "hi"'), '"say \\"hi\\""')

    def test_timestamp_has_milliseconds_and_zone(self) -> None:
        self.assertRegex(
            format_timestamp(time.time()), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})$"
        )

    def test_levels(self) -> None:
        self.assertEqual(
            [parse_level(x) for x in ("debug", "Warning", "err", "TRACE")],
            ["DEBUG", "WARN", "ERROR", "TRACE"],
        )
        self.assertRaises(ValueError, parse_level, "LOUD")

    def test_go_durations(self) -> None:
        self.assertEqual(
            [parse_duration(x) for x in ("5s", "1m30s", "100ms", "0", "1h")],
            [5.0, 90.0, 0.1, 0.0, 3600.0],
        )
        for bad in ("5", "", "s", "1x", "1s2"):
            self.assertRaises(ValueError, parse_duration, bad)
        self.assertEqual(
            [format_duration(x) for x in (5.0, 11.05, 0.0012, 0.0)], ["5s", "11.05s", "1.2ms", "0s"]
        )


class ObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.observer = HclogObserver(self.out, level="INFO")
        globalLogPublisher.addObserver(self.observer)
        self.addCleanup(globalLogPublisher.removeObserver, self.observer)

    def test_log_waits_for_the_banner(self) -> None:
        HcLogger("agent").info("before banner")
        self.assertEqual(self.out.getvalue(), "")
        console(
            "==> Starting Consul agent...", "", "==> Log data will now stream in as it occurs:", ""
        )
        HcLogger("agent").info("after banner", k="v")
        text = self.out.getvalue().splitlines()
        self.assertEqual(
            text[:4],
            [
                "==> Starting Consul agent...",
                "",
                "==> Log data will now stream in as it occurs:",
                "",
            ],
        )
        self.assertTrue(text[4].endswith("[INFO]  agent: before banner"))
        self.assertTrue(text[5].endswith("[INFO]  agent: after banner: k=v"))

    def test_level_filter_and_foreign_events(self) -> None:
        console("==> banner")
        HcLogger("agent").debug("hidden at INFO")
        from twisted.logger import Logger

        Logger(namespace="twisted.web").info("Site starting on 8500")
        Logger(namespace="twisted.web").emit(LogLevel.warn, "disk is slow")
        lines = self.out.getvalue().splitlines()[1:]
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].endswith("[WARN]  twisted.web: disk is slow"))

    def test_failures_become_error_lines(self) -> None:
        console("==> banner")
        from twisted.logger import Logger

        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            Logger(namespace="x").failure("boom")
        self.flushLoggedErrors(ZeroDivisionError)
        self.assertIn("[ERROR] x: boom", self.out.getvalue())
