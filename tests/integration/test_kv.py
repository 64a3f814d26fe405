"""
The KV store end to end on a real ``twistd consul-agent --dev``: py-consul
(a real third-party Consul client), raw HTTP as curl would send it, and the
``consul-tw kv`` commands.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import consul
import pytest

from tests.integration.harness import REPO_ROOT, run_cli

pytestmark = pytest.mark.integration

NODE = "kv-node"


@pytest.fixture(scope="module")
def agent(module_agents):
    return module_agents.start(NODE)


@pytest.fixture
def client(agent):
    return consul.Consul(host="127.0.0.1", port=agent.ports.http)


def http(agent, method: str, path: str, body: bytes | None = None) -> tuple[int, Any, bytes]:
    """One raw request (as curl would send it): status, headers, body; errors included."""
    request = urllib.request.Request(agent.url(path), data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def cli(agent, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {"CONSUL_HTTP_ADDR": agent.http_addr}
    if stdin is None:
        return run_cli(["kv", *args], env=env)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    return subprocess.run(
        [sys.executable, "-m", "consul_tw", "kv", *args],
        env={**clean, "PYTHONPATH": str(REPO_ROOT), **env},
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_py_consul_put_get_delete(client):
    assert client.kv.put("py/greeting", "hello") is True
    index, data = client.kv.get("py/greeting")
    assert data["Value"] == b"hello"
    assert data["Key"] == "py/greeting"
    assert int(index) == data["ModifyIndex"]
    assert client.kv.put("py/flagged", b"\x00\xff", flags=42) is True
    assert client.kv.get("py/flagged")[1]["Flags"] == 42
    assert client.kv.get("py/flagged")[1]["Value"] == b"\x00\xff"
    assert client.kv.delete("py/greeting") is True
    index_after, missing = client.kv.get("py/greeting")
    assert missing is None
    assert int(index_after) > int(index)


def test_py_consul_cas(client):
    assert client.kv.put("cas/key", "one", cas=0) is True
    assert client.kv.put("cas/key", "two", cas=0) is False
    _, data = client.kv.get("cas/key")
    assert client.kv.put("cas/key", "three", cas=data["ModifyIndex"] + 1000) is False
    assert client.kv.put("cas/key", "three", cas=data["ModifyIndex"]) is True
    _, data = client.kv.get("cas/key")
    assert data["Value"] == b"three"
    assert client.kv.delete("cas/key", cas=data["ModifyIndex"] + 1) is False
    assert client.kv.delete("cas/key", cas=data["ModifyIndex"]) is True
    assert client.kv.get("cas/key")[1] is None


def test_py_consul_recurse_and_keys(client):
    for key in ("tree/a", "tree/b/c", "tree/b/d", "treetop"):
        assert client.kv.put(key, key) is True
    _, entries = client.kv.get("tree/", recurse=True)
    assert [e["Key"] for e in entries] == ["tree/a", "tree/b/c", "tree/b/d"]
    assert [e["Value"] for e in entries] == [b"tree/a", b"tree/b/c", b"tree/b/d"]
    _, keys = client.kv.get("tree/", keys=True, separator="/")
    assert keys == ["tree/a", "tree/b/"]
    assert client.kv.delete("tree/", recurse=True) is True
    _, gone = client.kv.get("tree/", recurse=True)
    assert gone is None
    assert client.kv.get("treetop")[1]["Value"] == b"treetop"


def test_py_consul_blocking_get_wakes_on_write(client, agent):
    client.kv.put("block/key", "v1")
    index, _ = client.kv.get("block/key")
    result: dict[str, Any] = {}

    def wait() -> None:
        blocking = consul.Consul(host="127.0.0.1", port=agent.ports.http)
        result["answer"] = blocking.kv.get("block/key", index=index, wait="20s")

    waiter = threading.Thread(target=wait)
    waiter.start()
    client.kv.put("block/unrelated", "x")
    client.kv.put("block/key", "v2")
    waiter.join(timeout=15)
    assert not waiter.is_alive(), "the blocking query did not wake"
    new_index, data = result["answer"]
    assert data["Value"] == b"v2"
    assert int(new_index) > int(index)


def test_raw_http_shapes_and_codes(agent):
    assert http(agent, "PUT", "/v1/kv/raw/one?flags=7", b"bytes")[::2] == (200, b"true\n")
    status, headers, body = http(agent, "GET", "/v1/kv/raw/one")
    assert status == 200
    (entry,) = json.loads(body)
    assert list(entry) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
    assert (entry["Flags"], base64.b64decode(entry["Value"])) == (7, b"bytes")
    assert headers["X-Consul-Index"] == str(entry["ModifyIndex"])
    assert headers["X-Consul-KnownLeader"] == "true"

    status, headers, body = http(agent, "GET", "/v1/kv/raw/one?raw")
    assert (status, body, headers["Content-Type"]) == (200, b"bytes", "text/plain")

    status, headers, body = http(agent, "GET", "/v1/kv/raw/missing")
    assert (status, body) == (404, b"")
    assert int(headers["X-Consul-Index"]) >= 1

    assert http(agent, "GET", "/v1/kv/")[::2] == (400, b"Missing key name")
    assert http(agent, "PUT", "/v1/kv/raw/x?cas=1&acquire=s")[::2] == (
        400,
        b"Conflicting flags: acquire=s&cas=1",
    )
    assert http(agent, "PUT", "/v1/kv/raw/x?flags=abc", b"")[::2] == (
        500,
        b'strconv.ParseUint: parsing "abc": invalid syntax',
    )
    assert http(agent, "PUT", "/v1/kv/raw/x?acquire=nope", b"")[::2] == (
        500,
        b'invalid session "nope"',
    )
    status, headers, _ = http(agent, "POST", "/v1/kv/raw/x", b"")
    assert (status, headers["Allow"]) == (405, "OPTIONS,GET,PUT,DELETE")

    status, _, body = http(agent, "PUT", "/v1/kv/raw/big", b"x" * (512 * 1024 + 1))
    assert status == 413
    assert body.startswith(b"Request body(524289 bytes) too large, max size: 524288 bytes.")
    assert http(agent, "PUT", "/v1/kv/raw/max", b"x" * (512 * 1024))[::2] == (200, b"true\n")

    assert http(agent, "PUT", "/v1/kv/raw%2Fslash%20key", b"s")[0] == 200
    assert http(agent, "GET", "/v1/kv/raw/slash key?raw".replace(" ", "%20"))[2] == b"s"
    assert http(agent, "DELETE", "/v1/kv/raw/?recurse")[::2] == (200, b"true\n")
    assert http(agent, "GET", "/v1/kv/raw/?keys")[0] == 404


def test_cli_put_get_delete(agent):
    put = cli(agent, "put", "cli/key", "value one")
    assert (put.returncode, put.stdout, put.stderr) == (
        0,
        "Success! Data written to: cli/key\n",
        "",
    )
    got = cli(agent, "get", "cli/key")
    assert (got.returncode, got.stdout) == (0, "value one\n")

    detailed = cli(agent, "get", "-detailed", "cli/key").stdout.splitlines()
    assert [line.split()[0] for line in detailed] == [
        "CreateIndex",
        "Flags",
        "Key",
        "LockIndex",
        "ModifyIndex",
        "Session",
        "Value",
    ]
    index = detailed[4].split()[1]

    failed = cli(agent, "put", "-cas", "-modify-index=1", "cli/key", "nope")
    assert (failed.returncode, failed.stderr) == (
        1,
        "Error! Did not write to cli/key: CAS failed\n",
    )
    assert (
        cli(agent, "put", "-cas", f"-modify-index={index}", "cli/key", "-", stdin=b"two").returncode
        == 0
    )
    assert cli(agent, "get", "cli/key").stdout == "two\n"

    cli(agent, "put", "cli/sub/a", "1")
    assert cli(agent, "get", "-recurse", "cli/").stdout == "cli/key:two\ncli/sub/a:1\n"
    assert cli(agent, "get", "-keys", "cli/").stdout == "cli/key\ncli/sub/\n"

    deleted = cli(agent, "delete", "cli/key")
    assert (deleted.returncode, deleted.stdout) == (0, "Success! Deleted key: cli/key\n")
    missing = cli(agent, "get", "cli/key")
    assert (missing.returncode, missing.stderr) == (1, "Error! No key exists at: cli/key\n")
    tree = cli(agent, "delete", "-recurse", "cli/")
    assert (tree.returncode, tree.stdout) == (0, "Success! Deleted keys with prefix: cli/\n")
    assert cli(agent, "get", "-recurse", "cli/").stdout == ""
