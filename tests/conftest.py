"""Shared fixtures. Keep it small and additive: other test modules add their own here too.

Plain helpers live in `tests/flowkit.py` (import them with `from flowkit import ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest
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
