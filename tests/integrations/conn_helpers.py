"""Helpers and fixtures of the connector tests: times in a zone, a call context on a fixed clock,
constants. Fixtures live in conftest.py; import helpers from here, never from `conftest`
(every test directory's conftest is imported as the module `conftest`: ambiguous)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.flow.schema import BusinessHours, Settings
from orchestrator.plugins.connectors import CallContext

NY = "America/New_York"
ROOT = Path(__file__).resolve().parents[2]
FLOWS_DIR = ROOT / "flows"
# Wed 25 Nov 2026, noon in New York: the fixed clock of the shipped flows' tests.
FIXED_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo(NY)).timestamp()
WEEKDAYS_8_TO_6 = BusinessHours(
    mon="08:00-18:00", tue="08:00-18:00", wed="08:00-18:00", thu="08:00-18:00", fri="08:00-18:00",
    sat="09:00-13:00", sun=None,
)


def at(text: str, tz: str = NY) -> datetime:
    """`"2026-11-26 10:00"` in `tz` -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def make_ctx(
    now: datetime | str = "2026-11-25 12:00",
    tz: str = NY,
    session_id: str = "biz:+15550001111",
    contact: str = "+15550001111",
    **settings: Any,
) -> CallContext:
    when = at(now, tz) if isinstance(now, str) else now
    settings.setdefault("business_hours", WEEKDAYS_8_TO_6)
    flow_settings = Settings(timezone=tz, **settings)
    return CallContext(
        session_id=session_id, flow="dental_booking", contact=contact, timezone=tz, language="en-US",
        now=when.timestamp(), settings=flow_settings,
    )


CtxFactory = Callable[..., CallContext]
