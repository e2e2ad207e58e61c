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
    try:
        from orchestrator import loader
    except ImportError:  # until the loader lands: YAML 1.2 booleans, no positions
        return _fallback_load(source, name)
    if isinstance(source, Path):
        return loader.load_flow(source)
    return loader.load_flow_text(source, name)


def _fallback_load(source: str | Path, name: str) -> object:
    import hashlib
    import re
    import types

    import yaml

    from orchestrator.schema import decode_flow

    text = source.read_text() if isinstance(source, Path) else source

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in value if tag != "tag:yaml.org,2002:bool"]
        for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    flow = decode_flow(yaml.load(text, Loader=_Loader))
    return types.SimpleNamespace(
        flow=flow, source=text, revision=hashlib.sha256(text.encode()).hexdigest()[:12],
        filename=str(source) if isinstance(source, Path) else name, positions={},
    )


@pytest.fixture
def load_flow_text():  # type: ignore[no-untyped-def]
    return load_test_flow
