"""The acceptance suite's fixtures with the store on a private 3-master Redis Cluster: `settings` names
the cluster (`redis+cluster://...`) and a fresh key prefix, whose keys are dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acceptance.conftest import client, flows_copy, make_settings, private_calendar  # noqa: F401  (fixtures used here)
from fakes.graph import FakeGraph
from fakes.twilio import FakeTwilio

from orchestrator.settings import AppSettings


@pytest.fixture
def cluster_prefix(redis_cluster: Any) -> Iterator[str]:
    prefix = f"qa-{uuid.uuid4().hex[:10]}"
    yield prefix
    redis_cluster.drop(f"{prefix}:*")


@pytest.fixture
def settings(flows_copy: Path, fake_twilio: FakeTwilio, graph: FakeGraph, redis_cluster: Any,  # noqa: F811
             cluster_prefix: str) -> AppSettings:
    return make_settings(flows_copy, fake_twilio, graph, redis_url=redis_cluster.url, key_prefix=cluster_prefix)
