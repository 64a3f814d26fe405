"""Helpers shared by the multi-agent end-to-end tests."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.integration.harness import AgentPool, AgentProcess


def get_json(agent: AgentProcess, path: str) -> Any:
    with urllib.request.urlopen(agent.url(path), timeout=10) as response:
        return json.loads(response.read())


def statuses(agent: AgentProcess) -> dict[str, int]:
    """Member name → Serf status code, as the agent's HTTP API lists them ({} if down)."""
    try:
        return {m["Name"]: m["Status"] for m in get_json(agent, "/v1/agent/members")}
    except OSError:
        return {}


def joiner(pool: AgentPool, name: str, seed: AgentProcess, *extra: str) -> AgentProcess:
    """A non-dev agent (client unless ``--server`` is in ``extra``) that joins ``seed``."""
    assert seed.ports is not None
    return pool.new(
        name,
        dev=False,
        extra_args=(
            "--data-dir",
            "data",
            "--log-level",
            "DEBUG",
            "--join",
            f"127.0.0.1:{seed.ports.serf_lan}",
            *extra,
        ),
    )
