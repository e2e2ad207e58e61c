"""Fixtures of the connector tests: a call context on a fixed clock, a fresh SQLite calendar."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conn_helpers import make_ctx

from integrations.embedded_calendar import EmbeddedCalendar
from orchestrator.connectors import CallContext

CtxFactory = Callable[..., CallContext]


@pytest.fixture
def ctx_factory() -> CtxFactory:
    return make_ctx


@pytest.fixture
def calendar(tmp_path: Path) -> EmbeddedCalendar:
    return EmbeddedCalendar(path=tmp_path / "calendar.sqlite3")
