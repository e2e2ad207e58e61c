"""Helpers for flow authoring tests: load + validate a YAML text in one step."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import Diagnostic, FlowError
from orchestrator.flow.loader import load_flow_text
from orchestrator.flow.validate import validate
from orchestrator.plugins.connectors import ConnectorRegistry

REPO = Path(__file__).resolve().parents[2]
FLOWS = sorted((REPO / "flows").glob("*.yaml"))


def problems(text: str, connectors: ConnectorRegistry | None = None) -> list[Diagnostic]:
    """Every diagnostic of a flow text: the loader's if it cannot load, else the validator's."""
    try:
        loaded = load_flow_text(textwrap.dedent(text).lstrip("\n"), "t.yaml")
    except FlowError as exc:
        return exc.diagnostics
    return validate(loaded, connectors)


@pytest.fixture
def shipped_flows() -> list[Path]:
    return FLOWS
