"""Fixtures for the fault tests: a private redis-server (never 6379), fake Twilio and Graph
servers in this process, and two orchestrator server processes sharing that Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.graph import FakeGraph
from fakes.twilio import FakeTwilio
from faultkit import Cluster, RedisServer, ServerProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ServerProcess, ServerProcess]]:
    with RedisServer() as redis, FakeGraph() as graph, FakeTwilio() as twilio:
        c = Cluster(redis, graph, twilio, tmp_path_factory.mktemp("cluster"))
        try:
            a, b = c.spawn(), c.spawn()
            yield c, a, b
        finally:
            c.close()
