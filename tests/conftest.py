"""Shared fixtures. Keep it small and additive: other test modules add their own here too.

Plain helpers live in `tests/flowkit.py` (import them with `from flowkit import ...`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.graph import FakeGraph
from fakes.twilio import FakeTwilio
from flowkit import FIXED_NOW, FLOWS_DIR, ROOT, load_test_flow

__all__ = ["FIXED_NOW", "FLOWS_DIR", "ROOT", "load_test_flow"]


@pytest.fixture
def flows_dir() -> Path:
    return FLOWS_DIR


@pytest.fixture
def fixed_now() -> float:
    return FIXED_NOW


@pytest.fixture
def load_flow_text():  # type: ignore[no-untyped-def]
    return load_test_flow


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A fake Twilio REST API on 127.0.0.1 recording every request."""
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    """A fake Meta Graph API on 127.0.0.1 recording every WhatsApp send."""
    with FakeGraph() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[object]:
    """One private 3-master Redis Cluster for the whole run (clusterkit.py), started on first use."""
    from clusterkit import RedisClusterKit

    with RedisClusterKit(3) as cluster:
        yield cluster
