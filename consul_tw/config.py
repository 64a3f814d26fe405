# -*- test-case-name: tests.unit.test_config -*-
"""
The agent's runtime configuration, built from flags and Consul JSON files.

Sources merge as in Consul: built-in defaults, then ``-dev`` defaults, then
each ``-config-file`` in order, then command-line flags.  Everything is
validated here, before any service exists, so a bad setting stops the agent
with one ``==> ...`` line instead of a half-started process.  No I/O happens
in this module except reading the config files named on the command line.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from consul_tw._logging import parse_level
from consul_tw.config_keys import BUILT, KNOWN_NOT_BUILT, NESTED_BUILT, NESTED_KNOWN
from consul_tw.durations import parse_duration
from consul_tw.gossip.memberlist.keyring import decode_key

_DATACENTER = re.compile(r"^[a-z0-9_-]+$")
_DNS_LABEL = re.compile(r"[^A-Za-z0-9\-]+")

#: Flag name (as on the command line) → config-file path.
FLAG_KEYS: dict[str, tuple[str, ...]] = {
    "node": ("node_name",),
    "node-id": ("node_id",),
    "datacenter": ("datacenter",),
    "bind": ("bind_addr",),
    "advertise": ("advertise_addr",),
    "client": ("client_addr",),
    "data-dir": ("data_dir",),
    "log-level": ("log_level",),
    "domain": ("domain",),
    "http-port": ("ports", "http"),
    "dns-port": ("ports", "dns"),
    "serf-lan-port": ("ports", "serf_lan"),
    "serf-wan-port": ("ports", "serf_wan"),
    "server-port": ("ports", "server"),
    "grpc-port": ("ports", "grpc"),
    "raft-multiplier": ("performance", "raft_multiplier"),
    "encrypt": ("encrypt",),
    "retry-interval": ("retry_interval",),
    "retry-max": ("retry_max",),
    "bootstrap-expect": ("bootstrap_expect",),
}

#: Repeatable flags: each use adds one entry to a list key.
LIST_FLAG_KEYS: dict[str, str] = {"join": "start_join", "retry-join": "retry_join"}


class ConfigError(ValueError):
    """A configuration the agent refuses to start with; the text is one line."""


@attrs.frozen(kw_only=True)
class Ports:
    """Listening ports; -1 disables a listener, 0 picks a free one (tests)."""

    http: int = 8500
    https: int = -1
    grpc: int = -1
    dns: int = 8600
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300


@attrs.frozen(kw_only=True)
class AgentConfig:
    """Everything the agent needs to build its service tree."""

    dev: bool = False
    server: bool = False
    bootstrap: bool = False
    node_name: str
    node_id: str
    node_id_is_random: bool = True
    datacenter: str = "dc1"
    domain: str = "consul."
    bind_addr: str = "0.0.0.0"
    #: The address other agents and the catalog see for this node: the bind
    #: address, unless that is unspecified (0.0.0.0) or ``advertise_addr`` is set.
    advertise_addr: str = "127.0.0.1"
    client_addr: str = "127.0.0.1"
    data_dir: str | None = None
    log_level: str = "INFO"
    node_meta: Mapping[str, str] = attrs.field(factory=dict)
    ports: Ports = attrs.field(factory=Ports)
    raft_multiplier: int = 5
    leave_drain_time: float = 5.0
    #: Servers to wait for before bootstrapping Raft (``-bootstrap-expect``); 0: none.
    bootstrap_expect: int = 0
    #: How long a follower holds a request while no leader is known (Consul: 7 s).
    rpc_hold_timeout: float = 7.0
    #: Snapshot after this many applied entries; keep this many behind it.
    raft_snapshot_threshold: int = 16384
    raft_trailing_logs: int = 10240
    #: Autopilot: remove failed servers from Raft when a new server joins.
    cleanup_dead_servers: bool = True
    #: Seeds to join at start (``-join``), and to keep retrying (``-retry-join``).
    start_join: tuple[str, ...] = ()
    retry_join: tuple[str, ...] = ()
    retry_interval: float = 30.0
    #: 0: retry forever.
    retry_max: int = 0
    #: Base64 gossip key (``-encrypt``); None: gossip in the clear.
    encrypt: str | None = None
    #: How long a failed member is retried before it is reaped (Consul: 72h, minimum 8h).
    reconnect_timeout: float = 72 * 3600.0
    leave_on_terminate: bool = False
    skip_leave_on_interrupt: bool = True
    pretty_json: bool = False
    warnings: tuple[str, ...] = ()
    #: Other start-up WARN lines about the configuration, as Consul words them.
    notices: tuple[str, ...] = ()

    @property
    def dns_name_warning(self) -> str | None:
        """Consul's start-up WARN for a node name DNS cannot serve, or None."""
        if _DNS_LABEL.search(self.node_name):
            return (
                f'Node name "{self.node_name}" will not be discoverable via DNS due to '
                "invalid characters. Valid characters include all alpha-numerics and dashes."
            )
        if len(self.node_name.encode()) > 63:
            return (
                f'Node name "{self.node_name}" will not be discoverable via DNS due to it '
                "being too long. Valid lengths are between 1 and 63 bytes."
            )
        return None


def load_config_file(path: str) -> dict[str, Any]:
    """Read one Consul JSON config file; every failure is a ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigError(f"Error reading {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"Error parsing {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Error parsing {path}: top level must be a JSON object")
    return data


def _merge(into: dict[str, Any], data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _check_keys(path: str, data: Mapping[str, Any], warnings: list[str]) -> None:
    """Refuse keys Consul does not know; warn once for each known-but-unbuilt key."""
    for key, value in data.items():
        if key in NESTED_BUILT:
            if not isinstance(value, Mapping):
                raise ConfigError(f"Error parsing {path}: {key} must be an object")
            for sub in value:
                if sub in NESTED_BUILT[key]:
                    continue
                if sub in NESTED_KNOWN[key]:
                    warnings.append(f"{key}.{sub}")
                    continue
                raise ConfigError(f"Error parsing {path}: invalid config key {key}.{sub}")
        elif key in BUILT:
            continue
        elif key in KNOWN_NOT_BUILT:
            warnings.append(key)
        else:
            raise ConfigError(f"Error parsing {path}: invalid config key {key}")


def _int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    try:
        number = int(str(value), 10)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} cannot be {number}. Must be between {low} and {high}")
    return number


def _str_list(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings")
    return tuple(value)


def _duration(value: object, name: str) -> float:
    try:
        seconds = parse_duration(_str(value, name))
    except ValueError as e:
        raise ConfigError(f"{name}: {e}") from None
    if seconds < 0:
        raise ConfigError(f"{name} cannot be negative")
    return seconds


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{name} must be a boolean, got {value!r}")


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def _ip(value: object, name: str) -> str:
    text = _str(value, name)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"{name} must be a valid IP address, got {text!r}") from None
    return text


def build_config(
    *,
    dev: bool,
    server: bool,
    flags: Mapping[str, str | None],
    bootstrap: bool = False,
    list_flags: Mapping[str, list[str]] | None = None,
    config_files: list[str],
    hostname: str,
    private_ip: Callable[[], str] = lambda: "127.0.0.1",
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
    read_file: Callable[[str], dict[str, Any]] = load_config_file,
    read_node_id: Callable[[str], str | None] = lambda data_dir: None,
) -> AgentConfig:
    """
    Merge defaults, dev defaults, config files and flags into an AgentConfig.

    ``read_node_id`` returns the node ID persisted under a data dir, if any,
    so that a restarted non-dev agent keeps its identity as Consul's does.
    """
    merged: dict[str, Any] = {}
    if dev:
        merged.update(
            server=True,
            bind_addr="127.0.0.1",
            client_addr="127.0.0.1",
            log_level="DEBUG",
            ports={"grpc": 8502},
            performance={"raft_multiplier": 1},
        )
    warnings: list[str] = []
    for path in config_files:
        data = read_file(path)
        _check_keys(path, data, warnings)
        _merge(merged, data)
    flag_data: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        keys = FLAG_KEYS[flag]
        target = flag_data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    for flag, values in (list_flags or {}).items():
        if values:
            flag_data[LIST_FLAG_KEYS[flag]] = list(values)
    _merge(merged, flag_data)
    if server:
        merged["server"] = True
    if bootstrap:
        merged["bootstrap"] = True
    return _validate(
        merged,
        dev=dev,
        hostname=hostname,
        private_ip=private_ip,
        new_uuid=new_uuid,
        read_node_id=read_node_id,
        warnings=warnings,
    )


def _validate(
    merged: dict[str, Any],
    *,
    dev: bool,
    hostname: str,
    private_ip: Callable[[], str],
    new_uuid: Callable[[], str],
    read_node_id: Callable[[str], str | None],
    warnings: list[str],
) -> AgentConfig:
    server = _bool(merged.get("server", False), "server")
    bootstrap = _bool(merged.get("bootstrap", False), "bootstrap")
    if bootstrap and not server:
        raise ConfigError("Bootstrap mode requires Server mode (-server)")

    node_name = _str(merged.get("node_name", hostname), "node_name")
    if not node_name:
        raise ConfigError("node_name cannot be empty")

    datacenter = _str(merged.get("datacenter", "dc1"), "datacenter").lower()
    if not _DATACENTER.match(datacenter):
        raise ConfigError("datacenter can only contain lowercase alphanumeric, - or _ characters.")

    data_dir = merged.get("data_dir")
    if data_dir is not None:
        data_dir = _str(data_dir, "data_dir") or None
    if not dev and data_dir is None:
        raise ConfigError("data_dir cannot be empty")

    node_id_raw = merged.get("node_id")
    random_id = node_id_raw is None
    if node_id_raw is None and data_dir is not None and not dev:
        node_id_raw = read_node_id(data_dir)
        random_id = node_id_raw is None
    node_id = _str(node_id_raw, "node_id") if node_id_raw is not None else new_uuid()
    try:
        node_id = str(uuid.UUID(node_id)).lower()
    except ValueError:
        raise ConfigError(f"node_id: invalid node ID {node_id!r}: must be a UUID") from None

    try:
        log_level = parse_level(_str(merged.get("log_level", "INFO"), "log_level"))
    except ValueError as e:
        raise ConfigError(str(e)) from None

    ports_in = merged.get("ports", {})
    defaults = Ports()
    ports = Ports(
        **{
            name: _int(ports_in.get(name, getattr(defaults, name)), f"ports.{name}", -1, 65535)
            for name in attrs.fields_dict(Ports)
        }
    )
    if ports.server < 0 or ports.serf_lan < 0:
        raise ConfigError("ports.server and ports.serf_lan cannot be disabled")

    performance = merged.get("performance", {})
    multiplier = _int(performance.get("raft_multiplier", 5), "performance.raft_multiplier", 1, 10)
    try:
        drain = parse_duration(
            _str(performance.get("leave_drain_time", "5s"), "performance.leave_drain_time")
        )
    except ValueError as e:
        raise ConfigError(f"performance.leave_drain_time: {e}") from None
    if drain < 0:
        raise ConfigError("performance.leave_drain_time cannot be negative")
    hold = _duration(performance.get("rpc_hold_timeout", "7s"), "performance.rpc_hold_timeout")

    notices: list[str] = []
    expect = merged.get("bootstrap_expect", 0)
    if isinstance(expect, int) and not isinstance(expect, bool) and expect < 0:
        raise ConfigError(
            f"bootstrap_expect cannot be {expect}. Must be greater than or equal to zero"
        )
    expect = _int(expect, "bootstrap_expect", 0, 1 << 16)
    if expect > 0 and not server:
        raise ConfigError("'bootstrap_expect > 0' requires 'server = true'")
    if expect > 0 and dev:
        raise ConfigError("'bootstrap_expect > 0' not allowed in dev mode")
    if expect > 0 and bootstrap:
        raise ConfigError("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive")
    if expect == 1:
        notices.append("BootstrapExpect is set to 1; this is the same as Bootstrap mode.")
        bootstrap, expect = True, 0
    autopilot = merged.get("autopilot", {})
    if not isinstance(autopilot, Mapping):
        raise ConfigError("autopilot must be an object")
    cleanup = _bool(autopilot.get("cleanup_dead_servers", True), "autopilot.cleanup_dead_servers")

    node_meta = merged.get("node_meta", {})
    if not isinstance(node_meta, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in node_meta.items()
    ):
        raise ConfigError("node_meta must be an object of string values")

    bind_addr = _ip(merged.get("bind_addr", "0.0.0.0"), "bind_addr")
    if "advertise_addr" in merged:
        advertise_addr = _ip(merged["advertise_addr"], "advertise_addr")
    elif ipaddress.ip_address(bind_addr).is_unspecified:
        # Consul advertises the host's private IPv4 when bound to every address.
        advertise_addr = private_ip()
    else:
        advertise_addr = bind_addr

    joins = {key: _str_list(merged.get(key, []), key) for key in ("start_join", "retry_join")}
    retry_interval = _duration(merged.get("retry_interval", "30s"), "retry_interval")
    retry_max = _int(merged.get("retry_max", 0), "retry_max", 0, 1 << 31)
    reconnect_timeout = _duration(merged.get("reconnect_timeout", "72h"), "reconnect_timeout")
    if reconnect_timeout < 8 * 3600:
        raise ConfigError("reconnect_timeout must be >= 8h")
    encrypt = merged.get("encrypt")
    if encrypt is not None:
        encrypt = _str(encrypt, "encrypt")
        try:
            decode_key(encrypt)
        except ValueError as e:
            raise ConfigError(f"encrypt: {e}") from None

    domain = _str(merged.get("domain", "consul."), "domain").lower()
    if not domain.endswith("."):
        domain += "."

    return AgentConfig(
        dev=dev,
        server=server,
        bootstrap=bootstrap,
        node_name=node_name,
        node_id=node_id,
        node_id_is_random=random_id,
        datacenter=datacenter,
        domain=domain,
        bind_addr=bind_addr,
        advertise_addr=advertise_addr,
        client_addr=_ip(merged.get("client_addr", "127.0.0.1"), "client_addr"),
        data_dir=data_dir,
        log_level=log_level,
        node_meta=dict(node_meta),
        ports=ports,
        raft_multiplier=multiplier,
        leave_drain_time=drain,
        bootstrap_expect=expect,
        rpc_hold_timeout=hold,
        raft_snapshot_threshold=_int(
            merged.get("raft_snapshot_threshold", 16384), "raft_snapshot_threshold", 1, 1 << 40
        ),
        raft_trailing_logs=_int(
            merged.get("raft_trailing_logs", 10240), "raft_trailing_logs", 0, 1 << 40
        ),
        cleanup_dead_servers=cleanup,
        start_join=joins["start_join"],
        retry_join=joins["retry_join"],
        retry_interval=retry_interval,
        retry_max=retry_max,
        encrypt=encrypt,
        reconnect_timeout=reconnect_timeout,
        leave_on_terminate=_bool(
            merged.get("leave_on_terminate", not server), "leave_on_terminate"
        ),
        skip_leave_on_interrupt=_bool(
            merged.get("skip_leave_on_interrupt", server), "skip_leave_on_interrupt"
        ),
        pretty_json=dev,
        warnings=tuple(dict.fromkeys(warnings)),
        notices=tuple(notices),
    )
