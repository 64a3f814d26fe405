# -*- test-case-name: tests.unit.test_build -*-
"""
The start-up banner, in Consul 1.8's layout.

Labels are right-aligned on the colon in an 18-character column; string
values are single-quoted.  It ends with the line that tells the user log
output follows, after which the buffered log is released.
"""

from __future__ import annotations

import attrs

from consul_tw import __version__
from consul_tw.config import AgentConfig

#: Consul pads every label on the left to this width (command/agent/agent.go).
LABEL_WIDTH = 18


def banner_lines(config: AgentConfig) -> list[str]:
    ports = attrs.asdict(config.ports)
    segment = "<all>" if config.server else ""
    rows = [
        ("Version", f"'{__version__}'"),
        ("Node ID", f"'{config.node_id}'"),
        ("Node name", f"'{config.node_name}'"),
        ("Datacenter", f"'{config.datacenter}' (Segment: '{segment}')"),
        ("Server", f"{_bool(config.server)} (Bootstrap: {_bool(config.bootstrap)})"),
        (
            "Client Addr",
            (
                f"[{config.client_addr}] (HTTP: {ports['http']}, HTTPS: {ports['https']}, "
                f"gRPC: {ports['grpc']}, DNS: {ports['dns']})"
            ),
        ),
        (
            "Cluster Addr",
            f"{config.advertise_addr} (LAN: {ports['serf_lan']}, WAN: {ports['serf_wan']})",
        ),
        (
            "Encrypt",
            f"Gossip: {_bool(config.encrypt is not None)}, TLS-Outgoing: false, "
            "TLS-Incoming: false, Auto-Encrypt-TLS: false",
        ),
    ]
    lines = ["==> Starting Consul agent..."]
    lines += [f"{label.rjust(LABEL_WIDTH)}: {value}" for label, value in rows]
    lines += ["", "==> Log data will now stream in as it occurs:", ""]
    return lines


def _bool(value: bool) -> str:
    return "true" if value else "false"
