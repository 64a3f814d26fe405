# -*- test-case-name: tests.unit.test_tap -*-
"""
``twistd consul-agent``: command-line options and ``makeService``.

Options mirror ``consul agent``'s flags; Consul's single-dash spelling
(``-dev``, ``-node=web1``) is accepted as well as ``--dev``.  Parsing does
no I/O and builds nothing; ``makeService`` turns the options into an
:class:`~consul_tw.config.AgentConfig` and hands it to
:func:`~consul_tw.build.build_agent` with the global reactor, the only place
in the package that imports it.  A bad option or config ends the process
with one ``==> ...`` line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

from twisted.python import usage

from consul_tw._logging import HclogObserver
from consul_tw.config import FLAG_KEYS, AgentConfig, ConfigError, build_config
from consul_tw.goflags import normalise_argv


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Runs a Consul-compatible agent. `twistd -n consul-agent --dev` starts a "
        "single in-memory server, like `consul agent -dev`. Consul's single-dash "
        "flags (-dev, -node=NAME) are accepted too."
    )

    optFlags = [
        ["dev", None, "Development mode: in-memory server on 127.0.0.1 that elects itself."],
        ["server", None, "Run in server mode (default: client)."],
        ["bootstrap", None, "Let this server elect itself without peers."],
    ]
    optParameters = [
        ["node", None, None, "Node name (default: the host name)."],
        ["node-id", None, None, "Node ID, a UUID (default: random)."],
        ["datacenter", None, None, "Datacenter name (default: dc1)."],
        ["bind", None, None, "Address for cluster traffic (gossip, RPC)."],
        ["advertise", None, None, "Address to advertise to other agents (default: bind)."],
        ["client", None, None, "Address for client interfaces (HTTP, DNS)."],
        ["data-dir", None, None, "Directory for agent state (required outside --dev)."],
        ["log-level", None, None, "TRACE, DEBUG, INFO, WARN or ERROR."],
        ["domain", None, None, "DNS domain (default: consul.)."],
        ["http-port", None, None, "HTTP API port (default 8500; -1 disables)."],
        ["dns-port", None, None, "DNS port (default 8600; -1 disables)."],
        ["serf-lan-port", None, None, "Serf LAN port (default 8301)."],
        ["serf-wan-port", None, None, "Serf WAN port (default 8302; -1 disables)."],
        ["server-port", None, None, "Server RPC port (default 8300)."],
        ["grpc-port", None, None, "gRPC port shown in the banner (default -1, 8502 in --dev)."],
        ["raft-multiplier", None, None, "Raft timing multiplier, 1-10 (default 5)."],
        ["encrypt", None, None, "Gossip encryption key (base64, 16/24/32 bytes)."],
        ["retry-interval", None, None, "Time to wait between -retry-join attempts (default 30s)."],
        ["retry-max", None, None, "Maximum -retry-join attempts (default 0: forever)."],
        ["bootstrap-expect", None, None, "Servers to wait for before bootstrapping Raft."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["config-file"] = []
        self["join"] = []
        self["retry-join"] = []

    def opt_join(self, address: str) -> None:
        """Address of an agent to join at start-up; may be given more than once."""
        self["join"].append(address)

    def opt_retry_join(self, address: str) -> None:
        """Like --join, but keep retrying until it succeeds; may be repeated."""
        self["retry-join"].append(address)

    def opt_config_file(self, path: str) -> None:
        """A Consul JSON config file; may be given more than once."""
        self["config-file"].append(path)

    def parseOptions(self, options: list[str] | None = None) -> None:
        argv = sys.argv[1:] if options is None else list(options)
        try:
            super().parseOptions(normalise_argv(argv, self.longOpt))
        except usage.UsageError as e:
            _fail(str(e))

    def postOptions(self) -> None:
        # twistd picks its log observer before the service exists; give it
        # ours (hclog lines on stdout), unless --logger chose another.
        parent = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger"):
            parent["logger"] = f"{__name__}.make_observer"


#: The level the agent's config settles on.  twistd resolves its log
#: observer factory by name and calls it after makeService, so the level is
#: handed over here: this module is the twistd entry glue, and the only
#: place such process-wide state lives.
_console_level = ["INFO"]


def make_observer() -> HclogObserver:
    """twistd's ``--logger`` factory: hclog lines on stdout, banner first."""
    return HclogObserver(out=sys.stdout, level=_console_level[0])


def _fail(message: str) -> None:
    sys.stderr.write(f"==> {message}\n")
    raise SystemExit(1)


def _read_node_id(data_dir: str) -> str | None:
    try:
        with open(os.path.join(data_dir, "node-id"), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _persist_node_id(config: AgentConfig) -> None:
    """Outside -dev the node ID survives restarts, in ``<data_dir>/node-id`` as Consul's."""
    if config.dev or config.data_dir is None:
        return
    try:
        os.makedirs(config.data_dir, exist_ok=True)
        path = os.path.join(config.data_dir, "node-id")
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as f:
                f.write(config.node_id)
    except OSError as e:
        _fail(f"Error starting agent: data_dir {config.data_dir}: {e.strerror}")


def _private_ipv4() -> str:
    """
    The address to advertise when bound to 0.0.0.0: the host's first private
    IPv4 address, as Consul picks, else loopback.
    """
    try:
        _, _, addresses = socket.gethostbyname_ex(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    for address in addresses:
        if ipaddress.ip_address(address).is_private and not address.startswith("127."):
            return address
    return "127.0.0.1"


def config_from_options(options: Options) -> AgentConfig:
    flags = {name: options[name] for name in FLAG_KEYS}
    return build_config(
        dev=bool(options["dev"]),
        server=bool(options["server"]),
        bootstrap=bool(options["bootstrap"]),
        flags=flags,
        config_files=list(options["config-file"]),
        list_flags={"join": list(options["join"]), "retry-join": list(options["retry-join"])},
        hostname=socket.gethostname(),
        private_ip=_private_ipv4,
        read_node_id=_read_node_id,
    )


def makeService(options: Options) -> Any:
    try:
        config = config_from_options(options)
    except ConfigError as e:
        _fail(str(e))
    _console_level[0] = config.log_level
    _persist_node_id(config)
    from twisted.internet import reactor

    from consul_tw.build import build_agent
    from consul_tw.raft.storage.sqlite import StorageError

    try:
        return build_agent(config, reactor, install_signal_handlers=True)
    except StorageError as e:
        _fail(f"Error starting agent: Failed to start Consul server: {e}")
