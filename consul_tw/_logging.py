# -*- test-case-name: tests.unit.test_logging -*-
"""
hclog-style logging on top of :mod:`twisted.logger`.

Consul writes lines such as::

    2020-08-07T13:43:09.554+0800 [INFO]  agent.server.raft: election won: tally=1

Project code logs through :class:`HcLogger`, which emits ordinary
twisted.logger events carrying the logger name as the namespace and the
message and key/value pairs as event fields.  :class:`HclogObserver` renders
those events in hclog's text format; it also holds the console banner (Consul
buffers log output until the banner has been printed) and quietens Twisted's
own chatter, which Consul users would not expect to see.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import attrs
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from zope.interface import implementer

from consul_tw.durations import format_duration

#: hclog level names in severity order; TRACE sits below twisted's DEBUG.
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
_TWISTED_TO_HCLOG = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARN",
    LogLevel.error: "ERROR",
    LogLevel.critical: "ERROR",
}
_HCLOG_TO_TWISTED = {
    "TRACE": LogLevel.debug,
    "DEBUG": LogLevel.debug,
    "INFO": LogLevel.info,
    "WARN": LogLevel.warn,
    "ERROR": LogLevel.error,
}

#: Event key marking console output that is not a log line (banner, "==> ...").
CONSOLE_KEY = "consul_console"


def parse_level(name: str) -> str:
    """Normalise a ``-log-level`` value the way Consul accepts it; ValueError if unknown."""
    upper = name.strip().upper()
    if upper == "WARNING":
        upper = "WARN"
    if upper == "ERR":
        upper = "ERROR"
    if upper not in LEVELS:
        raise ValueError(f"Invalid log level: {name}")
    return upper


def format_value(value: object) -> str:
    """
    Render one value as hclog does: bare when every character is between
    ``-`` and ``~``, otherwise double-quoted with Go-style escapes.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, timedelta):
        text = format_duration(value.total_seconds())
    elif isinstance(value, (list, tuple)):
        # hclog prints slices as Go does, elements quoted, never the whole.
        return "[" + ", ".join(_quote(v) if isinstance(v, str) else str(v) for v in value) + "]"
    elif value is None:
        return ""
    else:
        text = str(value)
    if isinstance(value, str) and text == "":
        return '""'
    if all("-" <= ch <= "~" for ch in text):
        return text
    return _quote(text)


def _quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def format_timestamp(epoch: float) -> str:
    """Go layout ``2006-01-02T15:04:05.000Z0700`` in local time (``Z`` for UTC)."""
    offset = timedelta(
        seconds=-(time.altzone if time.localtime(epoch).tm_isdst > 0 else time.timezone)
    )
    moment = datetime.fromtimestamp(epoch, timezone(offset))
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(moment.microsecond / 1000):03d}"
    if offset == timedelta(0):
        return stamp + "Z"
    return stamp + moment.strftime("%z")


def format_line(
    epoch: float, level: str, name: str, message: str, pairs: Iterable[tuple[str, Any]]
) -> str:
    """One hclog line, without the trailing newline."""
    bracket = f"[{level}]".ljust(7)
    text = f"{format_timestamp(epoch)} {bracket} "
    text += f"{name}: {message}" if name else message
    rendered = [f"{key}={format_value(value)}" for key, value in pairs]
    if rendered:
        text += ": " + " ".join(rendered)
    return text


@attrs.frozen
class HcLogger:
    """
    A named hclog logger.  ``log.info("election won", tally=1)`` emits a
    twisted.logger event that :class:`HclogObserver` renders as an hclog line;
    other observers (tests' ``EventLoggingObserver``) see the same fields.
    """

    name: str

    def named(self, child: str) -> HcLogger:
        """A sub-logger, as hclog's ``Named``: ``agent`` → ``agent.server``."""
        return HcLogger(f"{self.name}.{child}" if self.name else child)

    def _emit(self, level: str, message: str, pairs: dict[str, Any]) -> None:
        Logger(namespace=self.name).emit(
            _HCLOG_TO_TWISTED[level],
            "{hclog_name}: {hclog_message}",
            hclog_name=self.name,
            hclog_message=message,
            hclog_level=level,
            hclog_pairs=tuple(pairs.items()),
        )

    def trace(self, message: str, **pairs: Any) -> None:
        self._emit("TRACE", message, pairs)

    def debug(self, message: str, **pairs: Any) -> None:
        self._emit("DEBUG", message, pairs)

    def info(self, message: str, **pairs: Any) -> None:
        self._emit("INFO", message, pairs)

    def warn(self, message: str, **pairs: Any) -> None:
        self._emit("WARN", message, pairs)

    def error(self, message: str, **pairs: Any) -> None:
        self._emit("ERROR", message, pairs)


def console(*lines: str) -> None:
    """
    Write console output (the banner, ``==> Consul agent running!``) through
    the logging system, so it reaches stdout in order with the log lines.
    """
    Logger(namespace="consul_tw.console").info(
        "{consul_console_text}", consul_console=True, consul_console_text="\n".join(lines)
    )


def event_level(event: dict[str, Any]) -> str:
    """The hclog level of any twisted.logger event."""
    if "hclog_level" in event:
        return str(event["hclog_level"])
    level = event.get("log_level", LogLevel.info)
    foreign = _TWISTED_TO_HCLOG.get(level, "INFO")
    # Twisted's own informational chatter ("twistd starting up", "Site
    # starting on 8500") is not part of Consul's story: show it only at TRACE.
    if LEVELS.index(foreign) < LEVELS.index("WARN") and "log_failure" not in event:
        return "TRACE"
    return "ERROR" if "log_failure" in event else foreign


def render_event(event: dict[str, Any]) -> str:
    """The text of one event as an hclog line (tracebacks become extra lines)."""
    level = event_level(event)
    epoch = event.get("log_time", time.time())
    if "hclog_message" in event:
        return format_line(
            epoch, level, event["hclog_name"], event["hclog_message"], event["hclog_pairs"]
        )
    message = formatEvent(event) or ""
    failure = event.get("log_failure")
    if failure is not None:
        message = (message + "\n" if message else "") + failure.getTraceback().rstrip()
    return format_line(epoch, level, event.get("log_namespace", ""), message, ())


@implementer(ILogObserver)
@attrs.define
class HclogObserver:
    """
    Writes events at or above ``level`` as hclog lines to ``out``.

    Until the first console event (the banner) arrives, log lines are held
    back, as Consul's gated writer does, so the banner is the first thing a
    user sees; ``buffer_until_banner=False`` writes straight away (tests,
    the CLI).
    """

    out: IO[str]
    level: str = "INFO"
    buffer_until_banner: bool = True
    _held: list[str] = attrs.field(factory=list)
    _open: bool = False

    def __attrs_post_init__(self) -> None:
        self._open = not self.buffer_until_banner

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get(CONSOLE_KEY):
            self._write(event["consul_console_text"] + "\n")
            if not self._open:
                self._open = True
                held, self._held = self._held, []
                self._write("".join(held))
            return
        if LEVELS.index(event_level(event)) < LEVELS.index(self.level):
            return
        line = render_event(event) + "\n"
        if self._open:
            self._write(line)
        else:
            self._held.append(line)

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
