"""Fixtures of the connector tests (helpers to import are in conn_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conn_helpers import CtxFactory, make_ctx

from integrations.embedded_calendar import EmbeddedCalendar


@pytest.fixture
def ctx_factory() -> CtxFactory:
    return make_ctx


@pytest.fixture
def calendar(tmp_path: Path) -> EmbeddedCalendar:
    return EmbeddedCalendar(path=tmp_path / "calendar.sqlite3")
