"""Fixtures of the connector tests (helpers to import are in conn_helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conn_helpers import CtxFactory, make_ctx
from fake_google import FakeGoogleCalendar
from test_dental_backends import _service_account

from integrations.calendar_base import CalendarConnector
from integrations.embedded_calendar import EmbeddedCalendar
from integrations.google_calendar import GoogleCalendar


@pytest.fixture
def ctx_factory() -> CtxFactory:
    return make_ctx


@pytest.fixture
def calendar(tmp_path: Path) -> EmbeddedCalendar:
    return EmbeddedCalendar(path=tmp_path / "calendar.sqlite3")


@pytest.fixture(params=["embedded", "google"])
async def salon(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[CalendarConnector, Any]]:
    """A salon's calendar on each backend: (connector, the fake Google server or None)."""
    if request.param == "embedded":
        yield EmbeddedCalendar(path=tmp_path / "cal.sqlite3"), None
        return
    fake = FakeGoogleCalendar().start()
    try:
        yield GoogleCalendar("front@salon.test", _service_account(tmp_path, fake.token_uri), api_base=fake.api_base,
                             timeout_seconds=2.0, retry_base_seconds=0.01), fake
    finally:
        fake.stop()
