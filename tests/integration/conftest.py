"""
Fixtures for the end-to-end tests: pools of real agent processes.

``agents`` is per test, for tests that change an agent's state (leave,
signals, bad starts); ``module_agents`` is per module, for a shared agent
that tests only read from.  Either way every process started is reaped when
the scope ends, whether the tests passed or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import AgentPool
from tests.integration.serf_agents import SerfPool


@pytest.fixture
def agents(tmp_path) -> Iterator[AgentPool]:
    pool = AgentPool(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def module_agents(tmp_path_factory, request) -> Iterator[AgentPool]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    pool = AgentPool(tmp_path_factory.mktemp(name))
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def serf_pool(tmp_path: Path) -> Iterator[SerfPool]:
    """Real ``serf agent`` processes, all killed at the end of the test."""
    pool = SerfPool(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
