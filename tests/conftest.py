"""Shared fixtures. Keep it small and additive: other test modules add their own here too."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOWS_DIR = ROOT / "flows"
# Wed 25 Nov 2026, noon in New York: the fixed clock of the shipped flows' tests.
FIXED_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()


@pytest.fixture
def flows_dir() -> Path:
    return FLOWS_DIR


@pytest.fixture
def fixed_now() -> float:
    return FIXED_NOW


def load_test_flow(source: str | Path, name: str = "<test>") -> object:
    """A flow file (path) or YAML text -> the loader's LoadedFlow (H1's orchestrator.loader)."""
    from orchestrator import loader

    if isinstance(source, Path):
        return loader.load_flow(source)
    return loader.load_flow_text(source, name)


@pytest.fixture
def load_flow_text():  # type: ignore[no-untyped-def]
    return load_test_flow
