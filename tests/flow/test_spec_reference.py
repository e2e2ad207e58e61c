"""docs/SPEC.md §13 (the flow language reference) stays true: every example that is a whole
flow validates cleanly, and every key of the schema is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.cli.main import main as cli_main
from orchestrator.flow.jsonschema import flow_json_schema
from orchestrator.flow.loader import load_flow_text, yaml_data
from orchestrator.flow.validate import default_connectors, validate

from .conftest import REPO

SPEC = REPO / "docs" / "SPEC.md"
HEADING = "## 13. Flow language reference"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
FRAGMENT = "# fragment"


def reference() -> str:
    text = SPEC.read_text()
    assert HEADING in text, f"docs/SPEC.md has no section '{HEADING}'"
    section = text.split(HEADING, 1)[1]
    following = re.search(r"^## ", section, re.M)  # the next top-level section, if any
    return section[: following.start()] if following else section


def blocks() -> list[str]:
    return _BLOCK.findall(reference())


def whole_flows() -> list[str]:
    return [b for b in blocks() if b.startswith("flow:")]


def _id(block: str) -> str:
    return block.split("\n", 1)[0].removeprefix("flow:").split("#", 1)[0].strip()


def test_every_yaml_block_is_a_flow_or_marked_fragment() -> None:
    found = blocks()
    assert len(whole_flows()) >= 10, "the reference lost its examples"
    for block in found:
        if block.startswith(FRAGMENT):
            assert isinstance(yaml_data(block), dict), f"fragment is not a YAML mapping:\n{block}"
            continue
        assert block.startswith("flow:"), (
            f"a ```yaml block in §13 neither starts with 'flow:' nor with '{FRAGMENT}':\n{block[:200]}"
        )


@pytest.mark.parametrize("block", whole_flows(), ids=_id)
def test_reference_flow_validates_without_errors_or_warnings(block: str) -> None:
    loaded = load_flow_text(block, f"SPEC-13-{_id(block)}.yaml")
    problems = validate(loaded, default_connectors())
    assert [d.format() for d in problems] == []


def test_reference_flows_pass_the_cli_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for block in whole_flows():
        path = tmp_path / f"{_id(block)}.yaml"
        assert not path.exists(), f"two examples in §13 use the flow id {_id(block)!r}"
        path.write_text(block)
        files.append(str(path))
    code = cli_main(["validate", "--strict", *files])
    assert code == 0, capsys.readouterr()


def test_a_broken_example_would_fail() -> None:
    """The check bites: an example with a typo'd state is refused."""
    block = whole_flows()[0].replace("next: thanks", "next: thank_you", 1)
    assert block != whole_flows()[0]
    problems = validate(load_flow_text(block, "broken.yaml"), default_connectors())
    assert any(d.is_error for d in problems)


def _schema_keys() -> list[tuple[str, str]]:
    defs = flow_json_schema()["$defs"]
    return [(name, key) for name, d in sorted(defs.items()) for key in d.get("properties", {})]


def test_every_schema_key_appears_in_spec_section_13() -> None:
    text = reference()
    missing = [f"{name}.{key}" for name, key in _schema_keys() if f"`{key}`" not in text]
    assert missing == [], f"document these keys in docs/SPEC.md §13: {missing}"


def test_every_setting_has_a_row_in_the_settings_table() -> None:
    text = reference()
    settings = flow_json_schema()["$defs"]["Settings"]["properties"]
    missing = [key for key in settings if not re.search(rf"^\| `{re.escape(key)}` \|", text, re.M)]
    assert missing == [], f"add a row to the settings table of docs/SPEC.md §13 for: {missing}"


def test_every_top_level_key_and_state_kind_has_a_subsection() -> None:
    headings = re.findall(r"^### 13\.\d+ (.*)$", reference(), re.M)
    keys = [*flow_json_schema()["$defs"]["Flow"]["properties"], "say", "ask", "call", "branch", "handoff",
            "record", "end"]
    missing = [k for k in keys if not any(h.startswith(f"`{k}`") for h in headings)]
    assert missing == [], f"add a '### 13.N `key`' subsection for: {missing}"
