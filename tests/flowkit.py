"""Helpers shared by tests of flows (importable from any test directory: `from flowkit import ...`).

A plain module, not `conftest`: several directories have a conftest.py, so `from conftest
import ...` would pick whichever was imported last."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
FLOWS_DIR = ROOT / "flows"
# Wed 25 Nov 2026, noon in New York: the fixed clock of the shipped flows' tests.
FIXED_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()


def load_test_flow(source: str | Path, name: str = "<test>") -> object:
    """A flow file (path) or YAML text -> the loader's LoadedFlow."""
    from orchestrator.flow import loader

    if isinstance(source, Path):
        return loader.load_flow(source)
    return loader.load_flow_text(source, name)
