# -*- test-case-name: tests.unit.http.test_api -*-
"""``/v1/health/node/:node``: a node's checks (``serfHealth`` shows gossip's verdict)."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from consul_tw.http._request import ApiCall, HTTPError, Reply
from consul_tw.http.catalog_endpoints import read
from consul_tw.http.root import Route


def node_checks(call: ApiCall) -> Deferred[Reply]:
    if not call.suffix:
        raise HTTPError(400, "Missing node name")
    return read(call, "Health.NodeChecks", {"node": call.suffix})


ROUTES = [Route("/v1/health/node/", {"GET": node_checks}, prefix=True)]
